//! Webhooks, measured over real HTTP against the real server and a real local receiver:
//! - what the outbox adds to a write: `POST /v1/consents` (2 events) with no webhook, then with
//!   one subscribed to `consent.changed`;
//! - end to end: from the write's response to the receiver holding the delivery;
//! - throughput: how long until a burst of deliveries has all arrived.
//!
//!   CONSENTRY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench webhooks

use actix_web::{web, App, HttpResponse, HttpServer};
use diesel::{Connection, RunQueryDsl};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

const WRITES: usize = 300;
const END_TO_END: usize = 50;
/// Events of the burst: 8 writers × 100 writes × 2 events.
const BURST: usize = 1600;

/// A receiver that answers 200 and notes when each event id arrived.
async fn receiver() -> (u16, Arc<Mutex<Vec<(String, Instant)>>>) {
    let seen: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let data = web::Data::from(seen.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).default_service(web::to(
            |req: actix_web::HttpRequest, seen: web::Data<Mutex<Vec<(String, Instant)>>>| async move {
                let id = req.headers().get("Consentry-Event-Id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                seen.lock().unwrap().push((id, Instant::now()));
                HttpResponse::Ok().finish()
            },
        ))
    })
    .workers(2)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (port, seen)
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.2} ms, p95 {:.2} ms",
        ms(times[times.len() / 2]),
        ms(times[(times.len() * 95 / 100).min(times.len() - 1)])
    )
}

async fn measure(label: &str, database_url: String) {
    let common::Server { base, token, handle } = common::start(&database_url).await;
    let client = reqwest::Client::new();
    for key in ["analytics", "marketing_email"] {
        let res = client
            .put(format!("{base}/v1/purposes/{key}"))
            .bearer_auth(&token)
            .json(&json!({"title": key, "description": "", "kind": "communication", "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }
    let write = {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        move |n: usize, grant: bool| {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            async move {
                let t = Instant::now();
                let res = client
                .post(format!("{base}/v1/consents"))
                .bearer_auth(&token)
                .json(&json!({"subject": format!("user:{n}"), "choices": {"analytics": grant, "marketing_email": grant}, "source": "api"}))
                .send()
                .await
                .unwrap();
                assert_eq!(res.status(), 201);
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["event_ids"].as_array().unwrap().len(), 2);
                (t.elapsed(), Instant::now())
            }
        }
    };

    let mut without = Vec::new();
    for n in 0..WRITES {
        without.push(write(n, true).await.0);
    }
    let (port, seen) = receiver().await;
    let res = client
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["consent.changed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let mut with = Vec::new();
    for n in 0..WRITES {
        with.push(write(n, false).await.0);
    }
    println!("{label}: POST /v1/consents (2 events), {WRITES} sequential writes each");
    println!("  no webhook:             {}", summary(&mut without));
    println!("  one subscribed webhook: {}", summary(&mut with));

    // End to end: wait for each write's two deliveries before the next write.
    let wait_for = |count: usize| {
        let seen = seen.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(t) = seen.lock().unwrap().get(count - 1).map(|(_, t)| *t) {
                    return t;
                }
                assert!(Instant::now() < deadline, "deliveries did not arrive");
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    };
    wait_for(2 * WRITES).await;
    let mut end_to_end = Vec::new();
    for n in 0..END_TO_END {
        let (_, answered) = write(WRITES + n, true).await;
        let arrived = wait_for(2 * WRITES + 2 * (n + 1)).await;
        end_to_end.push(arrived.saturating_duration_since(answered));
    }
    println!("  write answered → both deliveries received, {END_TO_END} writes: {}", summary(&mut end_to_end));

    // Throughput: a burst of writes from 8 clients, then until every delivery arrived.
    let before = seen.lock().unwrap().len();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let write = write.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..BURST / 2 / 8 {
                write(100_000 + worker * 1000 + i, i % 2 == 0).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let written = t.elapsed();
    let last = wait_for(before + BURST).await;
    let all = last.duration_since(t);
    println!(
        "  burst of {BURST} events from 8 writers: written in {:.2} s, all delivered after {:.2} s ({:.0} deliveries/s)",
        written.as_secs_f64(),
        all.as_secs_f64(),
        BURST as f64 / all.as_secs_f64()
    );
    handle.stop(true).await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("webhooks: run with `cargo bench --bench webhooks`");
        return;
    }
    if let Ok(admin) = std::env::var("CONSENTRY_TEST_POSTGRES_URL") {
        let name = format!("consentry_bench_wh_{}", std::process::id());
        let mut conn = diesel::PgConnection::establish(&admin).expect("PostgreSQL for the benchmark");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        measure("PostgreSQL", url).await;
        diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)")).execute(&mut conn).unwrap();
    } else {
        eprintln!("set CONSENTRY_TEST_POSTGRES_URL to measure on PostgreSQL");
    }
    let dir = tempfile::tempdir().unwrap();
    measure("SQLite", format!("sqlite://{}", dir.path().join("bench.db").display())).await;
}
