//! Bulk consent check: `POST /v1/consents/check` with 10,000 subjects against 100,000 stored
//! subjects, over real HTTP to the real server, on PostgreSQL (and SQLite for comparison).
//!
//!   CONSENTRY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench bulk_check
//!
//! Seeds subjects, identifiers and states with set-based SQL (the write path is not what is
//! measured), then times 30 checks after 3 warm-ups. Prints min, median and p95.

use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

mod common;

const STORED: usize = 100_000;
const PER_CHECK: usize = 10_000;
const RUNS: usize = 30;

/// Subjects `user:0` … `user:99999`; every third one granted `marketing_email`, the rest refused.
fn seed_sql(tenant_id: &str, series: &str) -> String {
    format!(
        "INSERT INTO data_subjects (id, tenant_id, last_event_hash, created_at)
           SELECT 'bench-' || g, '{tenant_id}', '{zeros}', CURRENT_TIMESTAMP FROM {series};
         INSERT INTO subject_identifiers (tenant_id, identifier, subject_id, created_at)
           SELECT '{tenant_id}', 'user:' || g, 'bench-' || g, CURRENT_TIMESTAMP FROM {series};
         INSERT INTO consent_states (tenant_id, purpose_key, subject_id, decision, event_id, policy_revision, source, occurred_at, recorded_at)
           SELECT '{tenant_id}', 'marketing_email', 'bench-' || g,
                  CASE WHEN g % 3 = 0 THEN 'granted' ELSE 'denied' END, 'e-' || g, NULL, 'import', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP
           FROM {series};",
        zeros = "0".repeat(64)
    )
}

async fn measure(label: &str, database_url: String, seed: impl FnOnce(&str)) {
    let common::Server { base, token, handle } = common::start(&database_url).await;
    let client = reqwest::Client::new();
    let res = client
        .put(format!("{base}/v1/purposes/marketing_email"))
        .bearer_auth(&token)
        .json(&json!({"title": "Marketing email", "description": "", "kind": "communication", "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let tenant_id: String = {
        let mut conn = consentry::db::connect(&database_url, 1).unwrap().get().unwrap();
        consentry::db::models::tenant::Tenant::find_by_slug(&mut conn, "bench").unwrap().unwrap().id
    };
    let t = Instant::now();
    seed(&tenant_id);
    eprintln!("{label}: seeded {STORED} subjects in {:.1} s", t.elapsed().as_secs_f64());

    // 10,000 subjects: 9,000 stored (spread over the whole range) and 1,000 never seen.
    let subjects: Vec<String> = (0..PER_CHECK)
        .map(|i| if i % 10 == 9 { format!("user:unknown-{i}") } else { format!("user:{}", (i * 11) % STORED) })
        .collect();
    let body = json!({"purpose": "marketing_email", "subjects": subjects});
    let mut times = Vec::with_capacity(RUNS);
    for run in 0..RUNS + 3 {
        let t = Instant::now();
        let res =
            client.post(format!("{base}/v1/consents/check")).bearer_auth(&token).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        let elapsed = t.elapsed();
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), PER_CHECK);
        assert_eq!(results[0]["status"], "granted", "user:0 was granted");
        assert_eq!(results[9]["status"], "not_asked");
        if run >= 3 {
            times.push(elapsed);
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times[times.len() / 2];
    let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
    println!(
        "{label}: check of {PER_CHECK} subjects against {STORED} stored, {RUNS} runs: min {:.1} ms, median {:.1} ms, p95 {:.1} ms ({:.2} µs per subject at the median)",
        ms(times[0]),
        ms(median),
        ms(p95),
        median.as_secs_f64() * 1e6 / PER_CHECK as f64
    );
    handle.stop(true).await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo test --all-targets` runs benches once without `--bench`: nothing to measure then.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("bulk_check: run with `cargo bench --bench bulk_check`");
        return;
    }
    if let Ok(admin) = std::env::var("CONSENTRY_TEST_POSTGRES_URL") {
        let name = format!("consentry_bench_{}", std::process::id());
        let mut conn = diesel::PgConnection::establish(&admin).expect("PostgreSQL for the benchmark");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        let seed_url = url.clone();
        measure("PostgreSQL", url, move |tenant| {
            let mut c = diesel::PgConnection::establish(&seed_url).unwrap();
            c.batch_execute(&seed_sql(tenant, &format!("generate_series(0, {}) AS s(g)", STORED - 1))).unwrap();
            c.batch_execute("ANALYZE").unwrap();
        })
        .await;
        diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)")).execute(&mut conn).unwrap();
    } else {
        eprintln!("set CONSENTRY_TEST_POSTGRES_URL to measure on PostgreSQL");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let url = format!("sqlite://{}", path.display());
    measure("SQLite", url, move |tenant| {
        let mut c = diesel::SqliteConnection::establish(&path.to_string_lossy()).unwrap();
        let series = format!(
            "(WITH RECURSIVE s(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM s WHERE g < {}) SELECT g FROM s)",
            STORED - 1
        );
        c.batch_execute(&format!("BEGIN; {} COMMIT; ANALYZE;", seed_sql(tenant, &series))).unwrap();
    })
    .await;
}
