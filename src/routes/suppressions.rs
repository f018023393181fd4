//! `GET /v1/purposes/{key}/suppressions`: every known subject for whom a purpose is not
//! allowed, streamed page by page.

use crate::auth::{Caller, Scope};
use crate::db::models::state::StateRow;
use crate::db::models::subject::DataSubject;
use crate::domain::PurposeKey;
use crate::error::{ApiError, Problem};
use crate::routes::parse_region;
use crate::state::AppState;
use actix_web::{get, web, HttpResponse};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(stream_suppressions);
}

/// Subjects read per database round trip: memory stays bounded whatever the list's length.
pub const PAGE: i64 = 1000;

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SuppressionFormat {
    /// `identifier,subject_id,status,reason`, one row per identifier (RFC 4180).
    Csv,
    /// One JSON object per line: `{subject_id, identifiers, status, reason}`.
    Ndjson,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuppressionQuery {
    /// `csv` (default) or `ndjson`.
    pub format: Option<SuppressionFormat>,
    /// Evaluate the consent model of this region (ISO 3166).
    #[param(value_type = Option<crate::domain::RegionCode>)]
    pub region: Option<String>,
}

#[derive(Serialize)]
struct NdjsonLine<'a> {
    subject_id: &'a str,
    identifiers: &'a [String],
    status: crate::domain::Status,
    reason: crate::domain::Reason,
}

/// Streams every known subject that is not allowed the purpose now, with its identifiers as
/// stored (`user:<id>`, `visitor:<uuid>`, `email:h:<hex>`, `phone:h:<hex>`: email and phone
/// are keyed hashes). Pages of 1,000 subjects, so memory does not grow with the list.
/// Requires `consents:read`.
#[utoipa::path(
    tag = "consents",
    security(("bearer" = [])),
    params(("key" = crate::domain::PurposeKey, Path, description = "The purpose"), SuppressionQuery),
    responses(
        (status = 200, description = "The list, streamed: CSV or NDJSON by `format`", content(
            (String = "text/csv"),
            (String = "application/x-ndjson")
        )),
        (status = 404, description = "No such purpose", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/purposes/{key}/suppressions")]
pub async fn stream_suppressions(
    state: web::Data<AppState>,
    caller: Caller,
    key: web::Path<String>,
    query: crate::extract::Query<SuppressionQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsRead)?;
    let key = PurposeKey::parse(&key).map_err(|m| ApiError::invalid("key", m))?;
    let region = parse_region(query.region.as_deref())?;
    let format = query.format.unwrap_or(SuppressionFormat::Csv);
    let rules = AppState::rules(&caller.config, None)?;
    if rules.purpose(key.as_str()).is_none() {
        return Err(ApiError::NotFound(format!("no purpose '{key}' is defined")));
    }
    let header = match format {
        SuppressionFormat::Csv => "identifier,subject_id,status,reason\n".as_bytes().to_vec(),
        SuppressionFormat::Ndjson => Vec::new(),
    };
    let rules = std::sync::Arc::new(rules);
    let state = state.into_inner();
    // The pages are read after the handler returned: in the request's routing context still
    // (its `Consentry-Read-After`), though `Consentry-Served-By` was sent with the head.
    let context = crate::service::read_route::current();
    // (cursor, done): each step reads one page and renders it; the stream ends after the last.
    let pages = stream::unfold((String::new(), false), move |(after, done)| {
        let (state, rules, key, region) = (state.clone(), rules.clone(), key.clone(), region.clone());
        let context = context.clone();
        crate::service::read_route::scope(context, async move {
            if done {
                return None;
            }
            let result = state
                .read_db(move |conn| {
                    let subjects = DataSubject::page(conn, &rules.tenant_id, &after, PAGE)?;
                    let last = subjects.last().cloned();
                    let ids: Vec<&str> = subjects.iter().map(String::as_str).collect();
                    let mut states: BTreeMap<String, StateRow> =
                        crate::db::backend::states_of(conn, &rules.tenant_id, Some(key.as_str()), &ids)?
                            .into_iter()
                            .map(|s| (s.subject_id.clone(), s))
                            .collect();
                    let page: Vec<(String, Option<StateRow>)> =
                        subjects.iter().map(|id| (id.clone(), states.remove(id))).collect();
                    let mut identifiers: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for (subject, identifier) in DataSubject::identifiers_of(conn, &rules.tenant_id, &ids)? {
                        identifiers.entry(subject).or_default().push(identifier);
                    }
                    let purpose = rules.purpose(key.as_str()).ok_or(diesel::result::Error::NotFound)?;
                    let mut out = Vec::new();
                    let mut csv = csv::Writer::from_writer(Vec::new());
                    for (subject_id, row) in &page {
                        let choice = row.as_ref().map(StateRow::to_choice).transpose()?;
                        let e = rules.status(purpose, choice.as_ref(), region.as_ref());
                        if e.allowed {
                            continue;
                        }
                        let ids = identifiers.get(subject_id).map(Vec::as_slice).unwrap_or_default();
                        match format {
                            SuppressionFormat::Csv => {
                                let status = crate::domain::Status::as_str(e.status);
                                let reason = e.reason.to_string();
                                for id in ids.iter().map(String::as_str).chain(ids.is_empty().then_some("")) {
                                    csv.write_record([id, subject_id.as_str(), status, reason.as_str()])
                                        .map_err(|err| ApiError::internal(std::io::Error::other(err.to_string())))?;
                                }
                            }
                            SuppressionFormat::Ndjson => {
                                let line =
                                    NdjsonLine { subject_id, identifiers: ids, status: e.status, reason: e.reason };
                                out.extend(serde_json::to_vec(&line).unwrap_or_default());
                                out.push(b'\n');
                            }
                        }
                    }
                    if format == SuppressionFormat::Csv {
                        out = csv
                            .into_inner()
                            .map_err(|err| ApiError::internal(std::io::Error::other(err.to_string())))?;
                    }
                    Ok((out, last, page.len() < PAGE as usize))
                })
                .await;
            match result {
                Ok((bytes, last, finished)) => {
                    let next = last.unwrap_or_default();
                    Some((Ok::<_, actix_web::Error>(web::Bytes::from(bytes)), (next, finished)))
                }
                // Headers are sent already: end the stream with an error, so the client sees a
                // broken transfer rather than a silently short list.
                Err(e) => Some((Err(actix_web::error::ErrorInternalServerError(e.to_string())), (String::new(), true))),
            }
        })
    });
    let body = stream::once(async move { Ok::<_, actix_web::Error>(web::Bytes::from(header)) }).chain(pages);
    let content_type = match format {
        SuppressionFormat::Csv => "text/csv; charset=utf-8",
        SuppressionFormat::Ndjson => "application/x-ndjson",
    };
    Ok(HttpResponse::Ok().content_type(content_type).streaming(body))
}

use futures_util::StreamExt;
