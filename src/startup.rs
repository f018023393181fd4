//! Builds the HTTP application from settings and a listener (port 0 in tests).

use crate::auth::CorsOrigin;
use crate::config::Settings;
use crate::db::models::instance_key::InstanceKey;
use crate::db::{self, DbError};
use crate::error::{problem_response, ApiError};
use crate::routes;
use crate::state::{AppState, TokenKeys};
use crate::workers::webhooks;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpMessage, HttpRequest, HttpResponse};
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

/// Raises this process's soft limit on open files (`RLIMIT_NOFILE`) to its hard limit, and
/// returns (the soft limit before, after); `None` where there is no such limit (not Unix) or it
/// could not be read.
///
/// The server holds a descriptor for every client connection, every database connection (two
/// on SQLite: the database and its write-ahead log) and its listener, and takes no part in
/// `select(2)`'s limit of 1,024 (Tokio waits with `epoll`, libpq with `poll`). A soft limit
/// left low (64 in some containers and service managers) kept it from starting at all (under
/// 57: 18 pooled connections, two files each, and the worker threads' sockets) and, once full,
/// left new clients unserved while actix's accept loop logged "Too many open files". The hard
/// limit is the administrator's ceiling, and raising up to it is what systemd recommends of
/// services that need many descriptors (systemd.exec(5), `LimitNOFILE=`) and what Go's
/// runtime does for every program.
pub fn raise_open_file_limit() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed by reference.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        let before = limit.rlim_cur;
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        #[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux, not everywhere
        Some((u64::from(before), u64::from(limit.rlim_cur)))
    }
    #[cfg(not(unix))]
    None
}

/// HTTP worker threads `serve` starts: `workers`, else one a core (actix's default).
pub fn http_workers(settings: &Settings) -> usize {
    settings.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

/// About how many files `serve` holds once it serves a few clients with `settings`: a floor
/// under which it would fail part-way through starting (a database connection refused as
/// "unable to open the database file", or an HTTP worker thread that cannot create its event
/// queue) instead of refusing with a reason.
///
/// Counted from `/proc/<pid>/fd` of started servers: about 16 for standard streams,
/// the log and the runtime's event queues; 4 an HTTP worker (its `epoll`, wake-up `eventfd`
/// and sockets); a database connection 2 on SQLite (the database file and its write-ahead log;
/// the pool's `pool_size` connections, the writer's, and the log kept open for syncing, plus one
/// shared-memory index) or 1 on PostgreSQL (its socket; the replica's pool too); and 8 clients.
pub fn files_needed(settings: &Settings) -> u64 {
    let workers = http_workers(settings) as u64;
    let pool = u64::from(settings.pool_size);
    let database = if matches!(db::DatabaseUrl::parse(&settings.database_url), Ok(db::DatabaseUrl::Postgres(_))) {
        let replica = settings
            .database_replica_url
            .as_ref()
            .map_or(0, |_| u64::from(settings.replica.pool_size.unwrap_or(settings.pool_size)));
        pool + replica
    } else {
        2 * (pool + 1) + 1
    };
    16 + 4 * workers + database + 8
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Keys(#[from] crate::receipts::KeyError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    /// A setting out of its range.
    #[error("{0}")]
    Setting(String),
}

/// The name of the instance key that signs management tokens.
pub use crate::auth::TOKEN_KEY;

/// Group-commit writer threads on PostgreSQL unless `writers` says otherwise: one batch gathers
/// while another commits. More threads make smaller batches; on 2 cores four cost PostgreSQL
/// 30% more CPU a write than two, for no more writes a second (BENCHMARKS.md, stop 21).
pub const DEFAULT_PG_WRITERS: usize = 2;

/// Grouped-read threads unless `readers` says otherwise.
///
/// PostgreSQL: one. While it waits for one query, every lookup that arrives meanwhile gathers
/// into the next. With two, batches were half the size and each cost PostgreSQL a round trip
/// and a plan of its own: single checks @32 ran at 23,000/s with two readers and 30,000–34,000/s
/// with one, @8 at 10,000/s and 15,000–16,000/s, p99 lower too (BENCHMARKS.md, stop 23).
/// SQLite: two. A read is CPU in this process, and two threads use both cores (checks @32:
/// 41,000/s with one, 46,000/s with two).
pub fn default_readers(url: &db::DatabaseUrl) -> usize {
    match url {
        db::DatabaseUrl::Postgres(_) => 1,
        db::DatabaseUrl::Sqlite(_) => 2,
    }
}

/// How many threads of a kind that each hold one connection while they work (`readers`,
/// `writers`): `set` when given, from 1 to `pool_size`, else `default`. Errors: a value out of
/// that range, named by `name`.
pub fn threads(name: &str, set: Option<usize>, default: usize, pool_size: u32) -> Result<usize, StartupError> {
    match set {
        None => Ok(default),
        Some(n) if n >= 1 && n <= pool_size as usize => Ok(n),
        Some(n) => Err(StartupError::Setting(format!(
            "{name} is {n}: it must be from 1 to pool_size ({pool_size}), as each one holds a connection"
        ))),
    }
}

/// The name of the instance key that signs one-click unsubscribe links.
pub const UNSUBSCRIBE_KEY: &str = "unsubscribe_link_hs256";

/// Opens the database (migrating it unless `settings.migrate` is off) and loads the
/// installation's keys.
pub fn open_state(settings: &Settings) -> Result<AppState, StartupError> {
    // Refused before the SQLite file is made.
    let url = db::DatabaseUrl::parse(&settings.database_url)?;
    if settings.database_replica_url.is_some() && matches!(url, db::DatabaseUrl::Sqlite(_)) {
        return Err(DbError::ReplicaOfSqlite.into());
    }
    let readers = threads("readers", settings.readers, default_readers(&url), settings.pool_size)?;
    // PostgreSQL: `writers` (default two). SQLite: one writer, whatever is set.
    let writers = match url {
        db::DatabaseUrl::Postgres(_) => threads("writers", settings.writers, DEFAULT_PG_WRITERS, settings.pool_size)?,
        db::DatabaseUrl::Sqlite(_) => 1,
    };
    let pool = db::open(&settings.database_url, &settings.db_options())?;
    let mut conn = pool.get().map_err(DbError::from)?;
    // A missing or wrong key stops start-up here, before anything is served.
    let secrets = crate::secrets::SecretBox::load(settings, &mut conn)?;
    if settings.migrate {
        // Secrets stored in clear by earlier releases are sealed with the migrations.
        let sealed = crate::secrets::seal_plaintext_rows(&mut conn, &secrets).map_err(DbError::from)?;
        if sealed > 0 {
            tracing::info!(sealed, "sealed secrets stored in clear by an earlier release");
        }
    }
    let keys = crate::auth::ManagementKeys::load(&mut conn, &secrets)?;
    let unsubscribe = InstanceKey::get_or_create(&mut conn, UNSUBSCRIBE_KEY, &secrets)?;
    // A missing receipt key file is made with a new key only on a first start.
    let receipt_key_file = crate::receipts::key_file_path(settings);
    if settings.receipts.signing_key.is_none() && !receipt_key_file.exists() {
        if let Some(what) = crate::receipts::signed_records(&mut conn).map_err(DbError::from)? {
            return Err(crate::receipts::KeyError::Missing(receipt_key_file, what).into());
        }
    }
    drop(conn);
    let unsubscribe_keys =
        TokenKeys::from_secret(&unsubscribe).map_err(|e| StartupError::Io(std::io::Error::other(e.to_string())))?;
    let webhook_wake = Arc::new(tokio::sync::Notify::new());
    let receipts = Arc::new(crate::receipts::ReceiptKeys::load(settings)?);
    let replica = settings
        .database_replica_url
        .as_ref()
        .map(|url| {
            db::replica::Replica::open(
                url,
                pool.clone(),
                settings.replica.pool_size.unwrap_or(settings.pool_size),
                settings.replica.max_lag,
            )
        })
        .transpose()?;
    let replica_reader = replica.as_ref().map(|r| {
        Arc::new(crate::service::reader::Reader::start_waiting(
            r.pool().clone(),
            readers,
            Some(crate::db::replica::CHECKOUT_WITHIN),
        ))
    });
    Ok(AppState {
        receipts,
        presentations: Arc::new(crate::service::presentation::Presentations::new(
            settings.receipts.presentation_max_age,
        )),
        directory: crate::service::directory::Directory::new(pool.clone()),
        writer: Arc::new(crate::service::writer::Writer::start(pool.clone(), writers, webhook_wake.clone())),
        reader: Arc::new(crate::service::reader::Reader::start(pool.clone(), readers)),
        replica,
        replica_reader,
        pool,
        keys: Arc::new(keys),
        secrets: Arc::new(secrets),
        unsubscribe_keys: Arc::new(unsubscribe_keys),
        max_body_bytes: settings.max_body_bytes,
        max_import_bytes: settings.max_import_bytes,
        calendar: Arc::new(crate::domain::deadline::BusinessCalendar::new(settings.holidays.iter().copied())),
        webhook_wake,
        limits: Arc::new(crate::limits::Limits::new(&settings.limits)),
        metrics_token: settings.metrics.token.clone(),
        public_url: settings.public_url.as_deref().map(parse_public_url).transpose()?,
        private_receivers: settings
            .webhooks
            .private_receivers
            .unwrap_or(matches!(db::DatabaseUrl::parse(&settings.database_url)?, db::DatabaseUrl::Sqlite(_))),
        draining: Arc::default(),
    })
}

/// Checks `public_url`: an origin, `http(s)://host[:port]` (a final `/` is allowed), as sites'
/// origins are checked; returned normalised, without the `/`.
fn parse_public_url(raw: &str) -> Result<String, StartupError> {
    crate::service::config::parse_origin(raw)
        .map_err(|why| StartupError::Io(std::io::Error::other(format!("public_url: {why}"))))
}

/// A bound, not yet running server, with its webhook dispatcher (unless disabled).
pub struct Application {
    port: u16,
    state: AppState,
    server: Server,
    dispatcher: Option<webhooks::Running>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    shutdown_grace: std::time::Duration,
    analytics: crate::workers::analytics::Running,
    retention: Option<crate::workers::retention::Running>,
}

impl Application {
    /// Opens the database and binds `settings.listen` (use port 0 for a free port).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let s = settings.clone();
        let state = actix_web::rt::task::spawn_blocking(move || open_state(&s))
            .await
            .map_err(|e| StartupError::Io(std::io::Error::other(e.to_string())))??;
        let listener =
            TcpListener::bind(&settings.listen).map_err(|e| StartupError::Bind(settings.listen.clone(), e))?;
        let port = listener.local_addr()?.port();
        state.directory.spawn_poller();
        let (pool, wake, private_receivers) = (state.pool.clone(), state.webhook_wake.clone(), state.private_receivers);
        let secrets = state.secrets.clone();
        let draining = state.draining.clone();
        let state_pool = state.pool.clone();
        let (retention_pool, receipt_keys) = (state.pool.clone(), state.receipts.clone());
        let app_state = state.clone();
        let server = run(listener, state, settings.workers)?;
        let dispatcher = if settings.webhooks.dispatch {
            let running = webhooks::spawn(pool, &settings.webhooks, private_receivers, wake, secrets)
                .map_err(|e| StartupError::Io(std::io::Error::other(format!("cannot start webhook delivery: {e}"))))?;
            Some(running)
        } else {
            None
        };
        let analytics = crate::workers::analytics::spawn(state_pool)
            .map_err(|e| StartupError::Io(std::io::Error::other(format!("cannot start analytics: {e}"))))?;
        let retention = if settings.retention.worker {
            let r = &settings.retention;
            let running =
                crate::workers::retention::spawn(retention_pool, receipt_keys, r.interval, r.opt_out_requests_days)
                    .map_err(|e| StartupError::Io(std::io::Error::other(format!("cannot start retention: {e}"))))?;
            Some(running)
        } else {
            None
        };
        Ok(Self {
            port,
            state: app_state,
            server,
            dispatcher,
            analytics,
            retention,
            draining,
            shutdown_grace: settings.shutdown_grace,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The state the server serves with (its pools, caches and keys): for work done beside the
    /// server in the same process, such as `serve --demo`'s example tenant.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A handle that stops the server (and so closes its database pool).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Stops the server on SIGTERM or SIGINT (`serve` calls it; tests stop servers by their
    /// handle): draining for `shutdown_grace` (still serving; `/readyz` 503, `Connection:
    /// close`), then the listener closes and the requests in flight finish. A second signal
    /// stops at once.
    pub fn stop_on_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
        let (handle, draining, grace) = (self.server.handle(), self.draining.clone(), self.shutdown_grace);
        actix_web::rt::spawn(async move {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            draining.store(true, Ordering::SeqCst);
            tracing::info!(grace_ms = grace.as_millis() as u64, "stop signal: draining, then stopping");
            tokio::select! {
                () = tokio::time::sleep(grace) => handle.stop(true).await,
                _ = term.recv() => handle.stop(false).await,
                _ = int.recv() => handle.stop(false).await,
            }
        });
        Ok(())
    }

    /// Serves until stopped (by [`Application::handle`] or, after
    /// [`Application::stop_on_signals`], a signal), then stops the webhook dispatcher after the
    /// attempts in flight.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        if let Some(dispatcher) = self.dispatcher {
            dispatcher.stop().await;
        }
        let analytics = self.analytics;
        let _ = actix_web::rt::task::spawn_blocking(move || analytics.stop()).await;
        if let Some(retention) = self.retention {
            let _ = actix_web::rt::task::spawn_blocking(move || retention.stop()).await;
        }
        served
    }
}

/// Starts serving on `listener`.
pub fn run(listener: TcpListener, state: AppState, workers: Option<usize>) -> Result<Server, StartupError> {
    crate::metrics::init();
    let limits = state.limits.clone();
    // Rate-limit keys back to a full quota are forgotten every minute; the task ends with the
    // runtime.
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            limits.prune();
        }
    });
    let data = web::Data::new(state);
    let openapi = routes::openapi();
    let known = web::Data::new(KnownRoutes::from_openapi(&openapi));
    // The document is served as serialised once, shared by the workers: with a copy of it in
    // each worker's `App` (as `SwaggerUi::url` keeps one), a worker cost 9.5 MiB of resident
    // memory instead of 2.3 (`/proc/<pid>/status`, RssAnon, with 1, 2 and 4 workers).
    let openapi_json = web::Bytes::from(serde_json::to_vec(&openapi).map_err(std::io::Error::other)?);
    drop(openapi);
    let make_app = move || {
        let openapi_json = openapi_json.clone();
        let (app, _) = App::new()
            .into_utoipa_app()
            .app_data(data.clone())
            .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::invalid("path", e.to_string()).into()))
            .configure(routes::configure)
            .split_for_parts();
        app.app_data(known.clone())
            .route(
                "/openapi.json",
                web::get().to(move || {
                    let body = openapi_json.clone();
                    async move { HttpResponse::Ok().content_type(header::ContentType::json()).body(body) }
                }),
            )
            .service(SwaggerUi::new("/docs/{_:.*}").config(utoipa_swagger_ui::Config::new(["/openapi.json"])))
            .route(
                "/docs",
                web::get().to(|| async {
                    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/docs/")).finish()
                }),
            )
            .route("/metrics", web::get().to(routes::health::metrics))
            .route(
                "/v1/sites/{site_key}/{tail:.*}",
                web::method(actix_web::http::Method::OPTIONS).to(routes::public::preflight),
            )
            .default_service(web::to(not_found))
            .wrap(ErrorHandlers::new().default_handler(into_problem))
            .wrap_fn(route_reads)
            .wrap_fn(|req: ServiceRequest, srv| {
                use actix_web::dev::Service;
                let fut = srv.call(req);
                async move {
                    let mut res = fut.await?;
                    add_cors_headers(&mut res);
                    // Draining: the client's next request opens a new connection (served here
                    // while the grace lasts, elsewhere after).
                    let draining = res
                        .request()
                        .app_data::<web::Data<AppState>>()
                        .is_some_and(|s| s.draining.load(Ordering::Relaxed));
                    if draining {
                        res.response_mut().head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
                    }
                    Ok(res)
                }
            })
            // HEAD is GET without the body (RFC 9110 §9.3.2): actix routes match GET, and the
            // HTTP layer drops the body of a response to a HEAD request.
            .wrap_fn(|mut req: ServiceRequest, srv| {
                use actix_web::dev::Service;
                use futures_util::future::{Either, FutureExt};
                // A NUL in the path or query is refused on both databases alike (PostgreSQL
                // text cannot hold it, SQLite would only never match it).
                let uri = req.uri().path_and_query().map_or("", |p| p.as_str());
                if uri.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0') {
                    let res = problem_response(
                        StatusCode::BAD_REQUEST,
                        "malformed-url",
                        "The URL is malformed",
                        crate::error::NUL_MESSAGE.to_owned(),
                    );
                    return Either::Left(std::future::ready(Ok(req.into_response(res).map_into_right_body())));
                }
                if req.method() == actix_web::http::Method::HEAD {
                    req.head_mut().method = actix_web::http::Method::GET;
                }
                Either::Right(srv.call(req).map(|r| r.map(|r| r.map_into_left_body())))
            })
            .wrap(actix_web::middleware::Compress::default())
            // Outermost: the request id is set for everything inside, and the access log sees
            // the final status. It logs the route pattern, never the path (identifiers, tokens).
            .wrap_fn(|req, srv| {
                use actix_web::dev::Service;
                let traced = crate::telemetry::Traced::begin(&req);
                let served = traced.enter(|| srv.call(req));
                traced.finish(served)
            })
    };
    // What `HttpServer` does, with each connection wrapped in `wire::ProblemIo`, so that the
    // errors actix-http answers by itself (431, 400 for a malformed head, 408) get problem
    // bodies; its defaults: 5 s keep-alive, 5 s for a request head, 1 s to close.
    let mut builder = actix_server::Server::build().shutdown_timeout(30);
    if let Some(n) = workers {
        builder = builder.workers(n.max(1));
    }
    let shutdown = builder.graceful_shutdown_signal();
    let local = listener.local_addr()?;
    let server = builder
        .listen("consentry", listener, move || {
            use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
            let shutdown = shutdown.clone();
            let app = make_app().into_factory().map_err(|err| err.error_response());
            let http = actix_http::HttpService::build()
                .graceful_shutdown_signal(move || {
                    let signal = shutdown.clone();
                    async move { signal.notified().await }
                })
                .keep_alive(actix_http::KeepAlive::default())
                .client_request_timeout(std::time::Duration::from_secs(5))
                .client_disconnect_timeout(std::time::Duration::from_secs(1))
                .h1_allow_half_closed(true)
                .local_addr(local)
                .h1(map_config(app, |_| actix_web::dev::AppConfig::default()));
            fn_service(|io: actix_rt::net::TcpStream| async move {
                let peer = io.peer_addr().ok();
                Ok::<_, actix_http::error::DispatchError>((crate::wire::ProblemIo::new(io), peer))
            })
            .and_then(http)
        })?
        // Signals are handled by `Application::run_until_stopped` (drain first, then stop).
        .disable_signals()
        .run();
    Ok(server)
}

/// The request header that carries a write's position to a read (see [`crate::db::replica`]).
pub const READ_AFTER: &str = "Consentry-Read-After";

/// The response header that names the database that served a routed read.
pub const SERVED_BY: &str = "Consentry-Served-By";

/// Read routing (issue 10; see [`crate::service::read_route`]): runs the request in a routing
/// context holding its `Consentry-Read-After`; then answers `Consentry-Served-By:
/// replica|primary` after a routed read, and, with a replica configured,
/// `Consentry-Read-After` after a successful write (any 2xx answer to a method other than GET,
/// HEAD or OPTIONS that made no routed read): the primary's position once it committed.
///
/// `Consentry-Read-After` is read on reads only (GET, HEAD, OPTIONS and the [`routes::ROUTED_READS`]
/// sent with another method, the check): there a malformed token is a 400 problem, and a header
/// sent more than once (or one holding several comma-separated tokens) stands for its highest
/// position ([`Lsn::latest_of`]), so that the read sees every write whose token it carries. A
/// write ignores the header, as it ignores any it has no use for.
fn route_reads<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<actix_web::body::EitherBody<B>>, actix_web::Error>>
where
    S: actix_web::dev::Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    use crate::db::replica::Lsn;
    use crate::service::read_route::{self, ReadContext};
    use actix_web::http::Method;
    use futures_util::future::Either;
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // Only a request that sends the header has its path matched against the routed reads (the
    // check is a POST): a write without it, the common case, pays nothing here.
    let ignored = !req.headers().contains_key(READ_AFTER)
        || (writes && !routes::is_routed_read(req.method().as_str(), req.path()));
    let after = if ignored {
        None
    } else {
        match Lsn::latest_of(req.headers().get_all(READ_AFTER).map(HeaderValue::as_bytes)) {
            Ok(after) => after,
            Err(why) => {
                let problem = ApiError::invalid(READ_AFTER, why);
                let res = actix_web::ResponseError::error_response(&problem);
                return Either::Left(std::future::ready(Ok(req.into_response(res).map_into_right_body())));
            }
        }
    };
    let replica = req.app_data::<web::Data<AppState>>().and_then(|s| s.replica.clone());
    let context = ReadContext::new(after);
    let served = read_route::scope(context.clone(), srv.call(req));
    Either::Right(async move {
        let mut res = served.await?;
        if let Some(target) = context.served_by() {
            res.headers_mut().insert(
                header::HeaderName::from_static("consentry-served-by"),
                HeaderValue::from_static(target.as_str()),
            );
        } else if let (true, true, Some(replica)) = (writes, res.status().is_success(), replica) {
            if let Some(value) =
                replica.commit_position().await.and_then(|lsn| HeaderValue::from_str(&lsn.token()).ok())
            {
                res.headers_mut().insert(header::HeaderName::from_static("consentry-read-after"), value);
            }
        }
        Ok(res.map_into_left_body())
    })
}

/// Adds `Access-Control-Allow-Origin` when the request's origin was accepted by
/// [`crate::auth::PublicSite`], and `Vary: Origin` on every public response.
fn add_cors_headers<B>(res: &mut ServiceResponse<B>) {
    let origin = res.request().extensions().get::<CorsOrigin>().map(|o| o.0.clone());
    let public = res.request().path().starts_with("/v1/sites/") && res.request().match_info().get("site_key").is_some();
    let headers = res.headers_mut();
    if let Some(origin) = origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        // the SDK writes with credentials, so that the visitor cookie the API sets on the
        // page's site (see routes::public::visitor_cookie) is stored
        headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "Idempotent-Replayed, X-Request-Id, Retry-After, RateLimit, RateLimit-Policy, Consentry-Read-After, \
                 Consentry-Served-By",
            ),
        );
    }
    if public {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The documented paths and their methods, to tell "no such path" (404) from "not this
/// method" (405 with `Allow`, RFC 9110 §15.5.6).
pub struct KnownRoutes(Vec<(actix_web::dev::ResourceDef, Vec<&'static str>)>);

/// Routes served beside the API document (see [`run`]); read-only.
const UNDOCUMENTED_ROUTES: [&str; 3] = ["/openapi.json", "/docs", "/docs/{_:.*}"];

impl KnownRoutes {
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        let mut doc = doc.clone();
        let undocumented =
            UNDOCUMENTED_ROUTES.into_iter().map(|path| (actix_web::dev::ResourceDef::new(path), vec!["GET", "HEAD"]));
        Self(
            doc.paths
                .paths
                .iter_mut()
                .map(|(path, item)| {
                    let mut methods: Vec<&'static str> =
                        routes::operations_mut(item).into_iter().map(|(m, _)| m).collect();
                    if let Some(i) = methods.iter().position(|m| *m == "GET") {
                        methods.insert(i + 1, "HEAD");
                    }
                    if path.starts_with("/v1/sites/{site_key}/") {
                        methods.push("OPTIONS");
                    }
                    (actix_web::dev::ResourceDef::new(path.as_str()), methods)
                })
                .chain(undocumented)
                .collect(),
        )
    }

    /// The route pattern that `path` matches, e.g. `/v1/subjects/{subject}/events`, and its methods.
    fn allowed(&self, path: &str) -> Option<(&str, &[&'static str])> {
        self.0
            .iter()
            .find(|(def, _)| def.is_match(path))
            .map(|(def, m)| (def.pattern().unwrap_or("this resource"), m.as_slice()))
    }
}

async fn not_found(req: HttpRequest, known: web::Data<KnownRoutes>) -> HttpResponse {
    if let Some((pattern, methods)) = known.allowed(req.path()) {
        let allow = methods.join(", ");
        // The pattern, not the path: a path may hold an identifier (an email) or a token.
        let mut res = problem_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "The method is not allowed on this resource",
            format!("{} is not allowed on {pattern}; use {allow}", req.method()),
        );
        if let Ok(value) = HeaderValue::from_str(&allow) {
            res.headers_mut().insert(header::ALLOW, value);
        }
        return res;
    }
    problem_response(
        StatusCode::NOT_FOUND,
        "not-found",
        "The resource does not exist",
        // Not the path: it may carry an identifier (an email) or a capability (a token).
        format!("no route for {} on this path; see /openapi.json", req.method()),
    )
}

/// Turns any error response that is not yet a problem body (from actix itself) into one.
fn into_problem<B: MessageBody + 'static>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem =
        res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem || res.status().as_u16() < 400 {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let detail = res
        .response()
        .error()
        .map(|e| e.to_string())
        .filter(|d| !d.is_empty() && status.as_u16() < 500)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let slug = match status.as_u16() {
        405 => "method-not-allowed",
        413 => "payload-too-large",
        s if s >= 500 => "internal",
        _ => "http-error",
    };
    let (req, _) = res.into_parts();
    let title = status.canonical_reason().unwrap_or("Error");
    let res = ServiceResponse::new(req, problem_response(status, slug, title, detail));
    Ok(ErrorHandlerResponse::Response(res.map_into_right_body()))
}

#[cfg(test)]
mod threads_tests {
    use super::{default_readers, threads};
    use crate::db::DatabaseUrl;

    #[test]
    fn readers_default_to_one_on_postgresql_and_two_on_sqlite() {
        assert_eq!(default_readers(&DatabaseUrl::Postgres("postgres://localhost/consentry".into())), 1);
        assert_eq!(default_readers(&DatabaseUrl::Sqlite("data/consentry.db".into())), 2);
    }

    #[test]
    fn reader_and_writer_threads_are_from_one_to_the_pool_size() {
        assert_eq!(threads("readers", None, 2, 8).unwrap(), 2);
        assert_eq!(threads("readers", Some(3), 1, 8).unwrap(), 3);
        assert_eq!(threads("writers", Some(8), 2, 8).unwrap(), 8);
        assert_eq!(threads("writers", Some(1), 2, 8).unwrap(), 1);
        for bad in [0, 9, 99_999] {
            let message = threads("writers", Some(bad), 2, 8).unwrap_err().to_string();
            assert_eq!(
                message,
                format!("writers is {bad}: it must be from 1 to pool_size (8), as each one holds a connection")
            );
        }
    }
}

#[cfg(test)]
mod public_url_tests {
    use super::parse_public_url;

    #[test]
    fn the_public_url_is_an_origin_without_a_path() {
        assert_eq!(parse_public_url("https://consent.example.com/").unwrap(), "https://consent.example.com");
        assert_eq!(parse_public_url("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        for bad in
            ["consent.example.com", "ftp://example.com", "https://example.com/consent", "https://example.com/?a=1"]
        {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
    }
}
