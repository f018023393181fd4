//! `consentry apply <file>`: declares a tenant, its sites, purposes and policy revisions in
//! TOML and makes the database match. Safe to run again: existing sites (by name) and
//! revisions (by policy and date) are kept, purposes are replaced.

use crate::cli::create_tenant;
use crate::db::backend::write_transaction;
use crate::db::models::naive;
use crate::db::models::purpose::PurposeRow;
use crate::db::models::revision::RevisionRow;
use crate::db::models::site::Site;
use crate::db::models::tenant::Tenant;
use crate::error::ApiError;
use crate::service::config::{self, CreateRevision, CreateSite, PutPurpose};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    pub tenant: String,
    #[serde(default)]
    pub sites: Vec<SiteSpec>,
    /// Purpose key → definition (the body of `PUT /v1/purposes/{key}`).
    #[serde(default)]
    pub purposes: BTreeMap<String, PutPurpose>,
    #[serde(default)]
    pub revisions: Vec<RevisionSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    pub name: String,
    pub origins: Vec<String>,
    /// The purposes the site presents (default: all).
    #[serde(default)]
    pub purposes: Option<Vec<String>>,
    /// The share of page views (0 to 1) the tracker audit samples (default 0); also applied to
    /// a site that exists.
    #[serde(default)]
    pub audit_sample_rate: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevisionSpec {
    pub policy: String,
    pub revision_date: String,
    #[serde(default)]
    pub effective_at: Option<DateTime<Utc>>,
    pub url: String,
    /// A file holding the revision's text, relative to the TOML file: its SHA-256 is stored.
    #[serde(default)]
    pub text_file: Option<String>,
    #[serde(default)]
    pub requires_reconsent: bool,
    #[serde(default)]
    pub purposes: Option<Vec<String>>,
}

/// What `apply` did.
#[derive(Debug, Serialize)]
pub struct ApplySummary {
    pub tenant: String,
    /// The admin token, only when the tenant was created by this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Site name → site key.
    pub sites: BTreeMap<String, String>,
    pub purposes: Vec<String>,
    /// `policy revision_date sha256`.
    pub revisions: Vec<String>,
}

/// The example tenant (`examples/ntt-cloud-communications`), built into the binary for `serve --demo`.
pub const EXAMPLE_TOML: &str = include_str!("../examples/ntt-cloud-communications/consentry.toml");
const EXAMPLE_POLICY: &[u8] = include_bytes!("../examples/ntt-cloud-communications/privacy-policy-2021-02.txt");

type BoxError = Box<dyn std::error::Error>;

/// Applies a TOML file; `text_file`s are read relative to it.
pub fn apply_file(state: &AppState, path: &Path) -> Result<ApplySummary, BoxError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    apply_text(state, &text, |f| {
        std::fs::read(base.join(f)).map_err(|e| format!("{}: {e}", base.join(f).display()).into())
    })
    .map_err(|e| format!("{}: {e}", path.display()).into())
}

/// Creates the example tenant unless it exists; `None` when it did.
pub fn apply_example(state: &AppState) -> Result<Option<ApplySummary>, BoxError> {
    let exists = Tenant::find_by_slug(&mut *state.pool.get()?, crate::routes::sdk::DEMO_TENANT)?.is_some();
    if exists {
        return Ok(None);
    }
    apply_text(state, EXAMPLE_TOML, |f| match f {
        "privacy-policy-2021-02.txt" => Ok(EXAMPLE_POLICY.to_vec()),
        other => Err(format!("the built-in example has no file '{other}'").into()),
    })
    .map(Some)
}

/// Lets the demo page work on whatever port `serve --demo` listens on: adds
/// `http://127.0.0.1:<port>` and `http://localhost:<port>` to the example site's origins.
pub fn allow_demo_origins(state: &AppState, port: u16) -> Result<(), BoxError> {
    let mut conn = state.pool.get()?;
    let Some(tenant) = Tenant::find_by_slug(&mut conn, crate::routes::sdk::DEMO_TENANT)? else { return Ok(()) };
    let Some(site) = Site::list(&mut conn, &tenant.id)?.into_iter().find(|s| s.name == crate::routes::sdk::DEMO_SITE)
    else {
        return Ok(());
    };
    let mut origins = site.origins();
    let before = origins.len();
    for host in ["127.0.0.1", "localhost"] {
        let origin = format!("http://{host}:{port}");
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    if origins.len() != before {
        write_transaction(&mut conn, |conn| Site::set_origins(conn, &site.id, &origins))?;
        state.directory.invalidate(&tenant.id);
    }
    Ok(())
}

/// Applies a tenant file's text; `read` returns the bytes of a `text_file`.
pub fn apply_text(
    state: &AppState,
    text: &str,
    read: impl Fn(&str) -> Result<Vec<u8>, BoxError>,
) -> Result<ApplySummary, BoxError> {
    let spec: TenantFile = toml::from_str(text)?;

    let mut conn = state.pool.get()?;
    let (tenant, token) = match Tenant::find_by_slug(&mut conn, &spec.tenant)? {
        Some(t) => (t, None),
        None => {
            drop(conn);
            let (t, _, jwt) = create_tenant(state, &spec.tenant)?;
            conn = state.pool.get()?;
            (t, Some(jwt))
        }
    };
    let now = Utc::now();

    // The same rules as the API's (service::config), each error named by its place in the file.
    let mut purposes = Vec::new();
    for (key, body) in spec.purposes {
        let purpose = config::purpose(&key, body).map_err(|e| format!("purposes.{key}: {e}"))?;
        purposes.push(PurposeRow::from_domain(&tenant.id, &purpose, naive(now)));
    }
    let mut revisions = Vec::new();
    for (i, r) in spec.revisions.into_iter().enumerate() {
        let sha256 = match &r.text_file {
            Some(f) => Some(hex::encode(Sha256::digest(read(f)?))),
            None => None,
        };
        let body = CreateRevision {
            revision_date: r.revision_date,
            effective_at: r.effective_at,
            url: r.url,
            sha256,
            requires_reconsent: r.requires_reconsent,
            purposes: r.purposes,
        };
        revisions.push(config::revision(&tenant.id, &r.policy, body, now).map_err(|e| format!("revisions[{i}]: {e}"))?);
    }
    let mut sites = Vec::new();
    for (i, s) in spec.sites.into_iter().enumerate() {
        let body = CreateSite {
            name: s.name,
            origins: s.origins,
            purposes: s.purposes,
            audit_sample_rate: s.audit_sample_rate,
        };
        sites.push(config::site(&tenant.id, body, naive(now)).map_err(|e| format!("sites[{i}]: {e}"))?);
    }

    let summary = write_transaction(&mut conn, |conn| {
        // Purposes first: the sites and revisions below may name them.
        for p in &purposes {
            p.upsert(conn)?;
        }
        let mut site_keys = BTreeMap::new();
        let existing = Site::list(conn, &tenant.id)?;
        for new in &sites {
            match existing.iter().find(|e| e.name == new.site.name) {
                Some(e) => {
                    if e.audit_sample_rate != new.site.audit_sample_rate {
                        Site::set_audit_sample_rate(conn, &e.id, new.site.audit_sample_rate)?;
                    }
                    site_keys.insert(e.name.clone(), e.site_key.clone())
                }
                None => {
                    config::insert_site(conn, &state.secrets, new)?;
                    site_keys.insert(new.site.name.clone(), new.site.site_key.clone())
                }
            };
        }
        let mut applied = Vec::new();
        for new in &revisions {
            let r = &new.row;
            let known = RevisionRow::list_for_policy(conn, &tenant.id, &r.policy_key)?;
            let row = match known.into_iter().find(|k| k.revision_date == r.revision_date) {
                Some(k) => k,
                None => {
                    config::insert_revision(conn, new)?;
                    r.clone()
                }
            };
            applied.push(format!("{} {} {}", row.policy_key, row.revision_date, row.sha256.as_deref().unwrap_or("-")));
        }
        Ok::<_, ApiError>(ApplySummary {
            tenant: tenant.slug.clone(),
            token: token.clone(),
            sites: site_keys,
            purposes: purposes.iter().map(|p| p.key.clone()).collect(),
            revisions: applied,
        })
    })?;
    state.directory.invalidate(&tenant.id);
    Ok(summary)
}
