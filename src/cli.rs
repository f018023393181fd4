//! The command line: `serve`, `migrate`, `ready`, `tenants`, `tokens`, `apply`, `openapi`, `ledger verify`, `ledger keys`,
//! `import`, `proof verify`, `receipts rotate-key`, `tokens rotate-key`, `retention run`. Every command that uses the database opens it
//! exactly as `serve` does (settings, `DATABASE_URL`); `proof verify` opens none.

use crate::auth::{issue_token, Scope};
use crate::config::Settings;
use crate::db::backend::write_transaction;
use crate::db::models::tenant::Tenant;
use crate::db::models::token::ApiToken;
use crate::startup::{open_state, Application};
use crate::state::AppState;
use chrono::Utc;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "consentry", version, about = "Consent and cookie preference-centre backend")]
pub struct Cli {
    /// A TOML settings file (default: ./consentry.toml when it exists).
    #[arg(long, global = true, env = "CONSENTRY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (the default command).
    Serve {
        /// Address and port, e.g. 127.0.0.1:8080 (default from settings).
        #[arg(long)]
        listen: Option<String>,
        /// Create the example tenant (examples/ntt-cloud-communications) on first start and
        /// log its admin token, for the tour and the demo page at /demo.
        #[arg(long)]
        demo: bool,
        /// Do not run migrations at start (e.g. on a read-only database, or when a deploy runs
        /// `consentry migrate` first); refuse to start if the schema lacks any. Same as the
        /// setting `migrate = false`.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Create or upgrade the database schema (under a lock: safe beside running instances),
    /// then exit.
    Migrate,
    /// Ask the running service whether it is ready (GET /readyz); exit 0 when it answers 200.
    /// For container health checks; does not open the database.
    Ready {
        /// The service's address (default: the `listen` setting, 0.0.0.0 asked as 127.0.0.1).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Manage tenants (data controllers).
    Tenants {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Issue and revoke management tokens.
    Tokens {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Create or update a tenant, its sites, purposes and policy revisions from a TOML file.
    Apply {
        /// The file, e.g. examples/ntt-cloud-communications/consentry.toml.
        file: PathBuf,
    },
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Check the consent ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Load historical consents from another platform (CSV with a header, or NDJSON): columns
    /// subject, purpose, decision (granted/denied), occurred_at (RFC 3339), optional
    /// policy_revision and region. Source `import`; importing a file twice adds nothing. Bad rows
    /// are reported on stderr as `line N: <reason>` and the good ones kept; a JSON summary goes to
    /// stdout; exit 1 when any row was refused.
    Import {
        #[arg(long, value_enum)]
        format: crate::service::import::Format,
        /// The tenant's slug (optional when there is one tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// The file.
        file: PathBuf,
    },
    /// Check a proof bundle (GET /v1/subjects/{subject}/proof) offline, with no database.
    Proof {
        #[command(subcommand)]
        command: ProofCommand,
    },
    /// Manage the keys that sign consent receipts.
    Receipts {
        #[command(subcommand)]
        command: ReceiptsCommand,
    },
    /// Prune what is kept no longer (each purpose's `retention_days`; completed opt-out requests
    /// after `retention.opt_out_requests_days`).
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Prune now, as the retention worker of `serve` does every `retention.interval`; prints a
    /// JSON summary of what was pruned. Each pruned subject gets a signed checkpoint, so
    /// `consentry ledger verify` still verifies its chain; exit 1 when a subject's chain did
    /// not verify (it is left alone and named in `broken_chains`).
    Run,
}

#[derive(Debug, Subcommand)]
pub enum ProofCommand {
    /// Verify the bundle's attestation, every event's hash and chain link, and every receipt;
    /// print a JSON report and exit 1 when anything is broken, naming it; exit 2 (with a
    /// warning) when it holds together but its keys were not pinned with `--jwks`.
    Verify {
        /// The bundle file.
        file: PathBuf,
        /// The keys to trust: a JWKS file (the service's `/.well-known/jwks.json`, fetched
        /// apart from the bundle). Every key of the bundle must be one of them. Without it the
        /// bundle's own keys are used, the report lists them (`keys`) to compare, and a bundle
        /// that holds together exits 2: anyone can re-sign a bundle with a key of their own.
        #[arg(long)]
        jwks: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReceiptsCommand {
    /// Retire the signing key of the key file and add a new one; prints the new key id. The
    /// retired public key stays in /.well-known/jwks.json (and its receipts verify) until
    /// `--publish-until`, or for ever. Restart the instances to sign with the new key.
    RotateKey {
        /// The last day (UTC, YYYY-MM-DD) the retired key is published.
        #[arg(long)]
        publish_until: Option<chrono::NaiveDate>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints {"tenant": "<slug>", "token": "<admin JWT>", "token_id": "<id>"}.
    Create { slug: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token; prints the JWT (its id goes to stderr).
    Issue {
        #[arg(long)]
        tenant: String,
        /// admin, consents:read, consents:write or consents:check (repeatable).
        #[arg(long = "scope", required = true, num_args = 1..)]
        scopes: Vec<String>,
        /// Lifetime, e.g. 30d, 12h (default: no expiry).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Revoke a token by its id (the JWT's jti).
    Revoke { token_id: String },
    /// Add a new HS256 key that signs management tokens from now on; prints its id (the JWT
    /// header's `kid`). Tokens signed with earlier keys stay valid until they expire or are
    /// revoked. Running instances accept tokens of the new key at once and sign with it after a
    /// restart; this command and instances started later sign with it at once.
    RotateKey,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recompute every event's hash and each subject's chain (from its signed checkpoint when
    /// events of it were pruned, checked with the receipt keys); exit 1 on any break.
    Verify,
    /// Print the ledger's key history as a JWKS: every receipt key, published or retired, and
    /// every key that signed a checkpoint. Hand it to auditors to pin proof bundles with
    /// `consentry proof verify --jwks` once a retired key has left /.well-known/jwks.json.
    Keys,
}

/// Runs the command line and returns the process's exit status (0, or 1 after an error written
/// to stderr), with stdout and stderr flushed.
pub fn run_to_status() -> i32 {
    let cli = Cli::parse();
    let status = match run(cli) {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(exit) => {
                eprintln!("{}", exit.message);
                exit.status
            }
            None => {
                eprintln!("error: {e}");
                1
            }
        },
    };
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let _ = std::io::Write::flush(&mut std::io::stderr());
    status
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

/// Ends a command with an exit status of its own (not 1) and a message printed as is.
#[derive(Debug)]
struct Exit {
    status: i32,
    message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

fn run(cli: Cli) -> CliResult {
    let mut settings = Settings::load(cli.config.as_deref())?;
    let command = cli.command.unwrap_or(Command::Serve { listen: None, demo: false, no_migrate: false });
    if !matches!(command, Command::Serve { .. } | Command::Ready { .. }) {
        // A tool whose output goes to a reader that stops early (`consentry ledger verify |
        // head`) ends quietly, as Unix tools do: SIGPIPE's default action. Rust ignores the
        // signal, and the next `println!` panicked with a backtrace. Not for `serve` (a client
        // that leaves must not end the server) nor `ready` (an HTTP client).
        #[cfg(unix)]
        // SAFETY: sets this signal's disposition before any thread of the command starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match command {
        Command::Serve { listen, demo, no_migrate } => {
            if let Some(listen) = listen {
                settings.listen = listen;
            }
            if no_migrate {
                settings.migrate = false;
            }
            serve(settings, demo)
        }
        Command::Ready { listen } => ready(listen.as_deref().unwrap_or(&settings.listen)),
        Command::Migrate => {
            // What it applies is logged (`db::run_migrations`), as `serve` logs it.
            init_logging(&settings.log);
            settings.migrate = true;
            open_state(&settings)?;
            eprintln!("migrated {}", crate::db::DatabaseUrl::parse(&settings.database_url)?.redacted());
            Ok(())
        }
        Command::Tenants { command: TenantCommand::Create { slug } } => {
            let state = open_state(&settings)?;
            let (tenant, token_id, token) = create_tenant(&state, &slug)?;
            println!("{}", serde_json::json!({"tenant": tenant.slug, "token": token, "token_id": token_id}));
            Ok(())
        }
        Command::Tokens { command: TokenCommand::Issue { tenant, scopes, ttl } } => {
            let mut scopes = scopes.iter().map(|s| Scope::parse(s)).collect::<Result<Vec<_>, _>>()?;
            scopes.sort_by_key(|s| s.as_str());
            scopes.dedup();
            let expires_at = match ttl {
                None => None,
                Some(ttl) => {
                    let d = humantime::parse_duration(&ttl).map_err(|e| format!("--ttl '{ttl}': {e}"))?;
                    let too_long =
                        || format!("--ttl '{ttl}' is too long; leave it out for a token that does not expire");
                    let d = chrono::Duration::from_std(d).map_err(|_| too_long())?;
                    if d < chrono::Duration::seconds(1) {
                        return Err(format!("--ttl '{ttl}' must be at least 1s").into());
                    }
                    Some(Utc::now().checked_add_signed(d).ok_or_else(too_long)?)
                }
            };
            let state = open_state(&settings)?;
            let mut conn = state.pool.get()?;
            let tenant = Tenant::find_by_slug(&mut conn, &tenant)?.ok_or_else(|| format!("no tenant '{tenant}'"))?;
            let (id, jwt) =
                issue_token(&mut conn, &state.keys, &tenant, &scopes, expires_at, None).map_err(|e| e.to_string())?;
            eprintln!("token id: {id}");
            println!("{jwt}");
            Ok(())
        }
        Command::Tokens { command: TokenCommand::Revoke { token_id } } => {
            let state = open_state(&settings)?;
            let mut conn = state.pool.get()?;
            if ApiToken::revoke(&mut conn, &token_id, Utc::now().naive_utc())? {
                println!("{}", serde_json::json!({"revoked": token_id}));
                Ok(())
            } else {
                Err(format!("no live token has the id '{token_id}'").into())
            }
        }
        Command::Tokens { command: TokenCommand::RotateKey } => {
            let state = open_state(&settings)?;
            let kid = crate::auth::ManagementKeys::rotate(&mut *state.pool.get()?, &state.secrets)?;
            println!("{kid}");
            Ok(())
        }
        Command::Apply { file } => {
            let state = open_state(&settings)?;
            let summary = crate::apply::apply_file(&state, &file)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Command::Openapi => {
            println!("{}", crate::routes::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::Import { format, tenant, file } => import(&settings, format, tenant.as_deref(), &file),
        Command::Proof { command: ProofCommand::Verify { file, jwks } } => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let trusted: Option<crate::receipts::Jwks> = match jwks {
                Some(path) => {
                    let raw = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                    Some(serde_json::from_str(&raw).map_err(|e| format!("{}: not a JWKS: {e}", path.display()))?)
                }
                None => None,
            };
            let report = crate::service::proof::verify(&text, trusted.as_ref());
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.valid {
                return Err("the proof bundle does not verify".into());
            }
            if !report.keys_pinned {
                // Whole and consistent, but with the keys it carries: a forger re-signs all of
                // it with a key of their own. Not a success until the keys are the service's.
                return Err(Box::new(Exit {
                    status: 2,
                    message: format!(
                        "warning: not pinned: the bundle holds together with the keys it carries ({}), and anyone \
                         can sign a bundle with a key of their own. Compare them with the service's \
                         /.well-known/jwks.json obtained apart from the bundle, or pass it with --jwks \
                         (exit status 2 until then)",
                        report.keys.join(", ")
                    ),
                }));
            }
            Ok(())
        }
        Command::Receipts { command: ReceiptsCommand::RotateKey { publish_until } } => {
            let path = crate::receipts::key_file_path(&settings);
            let kid = crate::receipts::rotate(&path, publish_until)?;
            println!("{kid}");
            Ok(())
        }
        Command::Retention { command: RetentionCommand::Run } => {
            let state = open_state(&settings)?;
            let retention = crate::service::retention::Retention {
                keys: &state.receipts,
                opt_out_requests_days: settings.retention.opt_out_requests_days,
            };
            let summary = crate::service::retention::run(&mut *state.pool.get()?, &retention, crate::service::now())?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            if summary.broken_chains.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} subjects' chains do not verify and were left alone (run consentry ledger verify)",
                    summary.broken_chains.len()
                )
                .into())
            }
        }
        Command::Ledger { command: LedgerCommand::Keys } => {
            let state = open_state(&settings)?;
            let jwks = crate::ledger::keys::history(&mut *state.pool.get()?, &state.receipts)?;
            println!("{}", serde_json::to_string_pretty(&jwks)?);
            Ok(())
        }
        Command::Ledger { command: LedgerCommand::Verify } => {
            let state = open_state(&settings)?;
            let mut conn = state.pool.get()?;
            // The ledger's key history: checkpoints signed by a retired key still verify.
            let jwks = crate::ledger::keys::history(&mut conn, &state.receipts)?;
            let report = crate::ledger::verify::verify(&mut conn, &jwks)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if report.broken.is_empty() {
                Ok(())
            } else {
                Err("the ledger has broken links".into())
            }
        }
    }
}

/// `consentry import`: the tenant named (or the only one), a progress bar on a terminal.
fn import(
    settings: &Settings,
    format: crate::service::import::Format,
    tenant: Option<&str>,
    file: &std::path::Path,
) -> CliResult {
    use std::io::IsTerminal;
    let state = open_state(settings)?;
    let mut conn = state.pool.get()?;
    let tenant = match tenant {
        Some(slug) => Tenant::find_by_slug(&mut conn, slug)?.ok_or_else(|| format!("no tenant '{slug}'"))?,
        None => {
            let all = Tenant::list(&mut conn)?;
            match <[Tenant; 1]>::try_from(all) {
                Ok([only]) => only,
                Err(none) if none.is_empty() => {
                    return Err("the database has no tenant: create one (`consentry tenants create <slug>` or \
                                `consentry apply <file>`), or make DATABASE_URL name the service's database (a \
                                relative SQLite path is taken from the current directory)"
                        .into());
                }
                Err(all) => {
                    return Err(format!("{} tenants: name one with --tenant <slug>", all.len()).into());
                }
            }
        }
    };
    let config = crate::service::directory::TenantConfig::load(&mut conn, &tenant.id)?
        .ok_or_else(|| format!("no tenant '{}'", tenant.slug))?;
    let input = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let size = input.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .map_err(|e| e.to_string())?,
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    // PostgreSQL: a second connection, for a second writer (see `service::import::import`).
    let mut second = match &*conn {
        crate::db::AnyConnection::Postgresql(_) => Some(state.pool.get()?),
        crate::db::AnyConnection::Sqlite(_) => None,
    };
    let summary = crate::service::import::import(
        &mut conn,
        second.as_deref_mut(),
        &config,
        format,
        std::io::BufReader::with_capacity(1 << 20, input),
        |line| bar.suspend(|| eprintln!("{line}")),
        |bytes| bar.set_position(bytes),
    )?;
    bar.finish_and_clear();
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if summary.failed > 0 {
        return Err(format!(
            "{} of {} rows were refused (listed above); the others are kept",
            summary.failed, summary.rows
        )
        .into());
    }
    Ok(())
}

/// Creates a tenant and its first admin token: (tenant, token id, JWT).
pub fn create_tenant(state: &AppState, slug: &str) -> Result<(Tenant, String, String), Box<dyn std::error::Error>> {
    Tenant::validate_slug(slug)?;
    let mut conn = state.pool.get()?;
    let result = write_transaction(&mut conn, |conn| {
        if Tenant::find_by_slug(conn, slug)?.is_some() {
            return Ok(Err(format!("a tenant '{slug}' exists already")));
        }
        let tenant = Tenant::new(slug, Utc::now().naive_utc());
        tenant.insert(conn)?;
        let (id, jwt) = issue_token(conn, &state.keys, &tenant, &[Scope::Admin], None, None)?;
        Ok::<_, crate::error::ApiError>(Ok((tenant, id, jwt)))
    })
    .map_err(|e| e.to_string())?;
    Ok(result?)
}

/// `serve --demo`: creates the example tenant on first start (its summary, with the admin token,
/// printed once on stdout), lets the demo page work on `port`, and prints a console sign-in link.
fn demo_tenant(state: &AppState, port: u16) -> CliResult {
    match crate::apply::apply_example(state)? {
        Some(summary) => {
            // Printed once, on stdout, so that the README's tour can pick it up.
            println!("{}", serde_json::to_string_pretty(&summary)?);
            tracing::info!("created the example tenant '{}'; its admin token is printed above, once", summary.tenant);
        }
        None => tracing::info!("the example tenant exists already (its token was printed when it was created)"),
    }
    crate::apply::allow_demo_origins(state, port)?;
    tracing::info!("demo: open http://127.0.0.1:{port}/demo");
    // On stdout, not in the log: the code signs in once, within 10 minutes.
    println!("console: http://127.0.0.1:{port}/console#code={}", demo_sign_in_code(state)?);
    Ok(())
}

/// A one-time console sign-in code for the example tenant (see `service::tokens`).
fn demo_sign_in_code(state: &AppState) -> Result<String, Box<dyn std::error::Error>> {
    let mut conn = state.pool.get()?;
    let tenant =
        Tenant::find_by_slug(&mut conn, crate::routes::sdk::DEMO_TENANT)?.ok_or("the example tenant is missing")?;
    Ok(crate::service::tokens::create_sign_in_code(&mut conn, &tenant.id)?)
}

/// `GET /readyz` on `listen` over plain HTTP/1.0 within 3 seconds; Ok when it answers 200.
fn ready(listen: &str) -> CliResult {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let target = match listen.rsplit_once(':') {
        Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => listen.to_owned(),
    };
    let timeout = std::time::Duration::from_secs(3);
    let addr = target.to_socket_addrs()?.next().ok_or_else(|| format!("'{target}' names no address"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("GET /readyz HTTP/1.0\r\nHost: {target}\r\n\r\n").as_bytes())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let status = String::from_utf8_lossy(&head[9..12]).into_owned();
    if status == "200" {
        println!("ready");
        Ok(())
    } else {
        Err(format!("not ready: GET http://{target}/readyz answered {status}").into())
    }
}

/// Logs to stderr: human-readable on a terminal, one JSON object a line otherwise (files,
/// journald, container logs), never with ANSI colour codes off a terminal.
///
/// actix-http logs every request it cannot parse (a malformed request line, oversized headers) at
/// ERROR: a client's mistake, answered with a problem body (`wire.rs`), that any client could
/// repeat to fill the error log. Its dispatcher is silenced unless `filter` names `actix_http`.
fn init_logging(filter: &str) {
    use std::io::IsTerminal;
    let filter = if filter.contains("actix_http") {
        filter.to_owned()
    } else {
        format!("{filter},actix_http::h1::dispatcher=off")
    };
    let filter = || {
        tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter());
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().with_current_span(true).with_span_list(false).init();
    }
}

fn serve(settings: Settings, demo: bool) -> CliResult {
    init_logging(&settings.log);
    if let Some((before, after)) = crate::startup::raise_open_file_limit() {
        let raised = if before == after { String::new() } else { format!(" (raised from {before})") };
        let needed = crate::startup::files_needed(&settings);
        if after < needed {
            return Err(format!(
                "this process may open only {after} files (RLIMIT_NOFILE, its hard limit), and serving with these \
                 settings takes about {needed}: {} database connections, {} and a few clients; raise the limit \
                 (ulimit -Hn, LimitNOFILE=, --ulimit nofile=) or lower pool_size and workers",
                settings.pool_size,
                match crate::startup::http_workers(&settings) {
                    1 => "1 HTTP worker".to_owned(),
                    n => format!("{n} HTTP workers"),
                },
            )
            .into());
        }
        if after < 1024 {
            tracing::warn!(
                "this process may open only {after} files{raised}, its hard limit (RLIMIT_NOFILE): each client \
                 connection takes one and each database connection one or two, and a client beyond that waits \
                 until another leaves; raise it (ulimit -Hn, LimitNOFILE=, --ulimit nofile=)"
            );
        } else {
            tracing::info!("open files: up to {after}{raised} (RLIMIT_NOFILE)");
        }
    }
    actix_web::rt::System::new().block_on(async move {
        let listen = settings.listen.clone();
        let app = Application::build(settings).await?;
        if demo {
            // On the server's own state: no second pool (it held as many files again as the
            // server's own, beyond what the limit on open files was checked against). Blocking
            // work, off the runtime's thread.
            let (state, port) = (app.state().clone(), app.port());
            actix_web::rt::task::spawn_blocking(move || demo_tenant(&state, port).map_err(|e| e.to_string()))
                .await
                .map_err(|e| e.to_string())??;
        }
        tracing::info!("consentry listening on http://{}", listen.replace(":0", &format!(":{}", app.port())));
        app.stop_on_signals()?;
        app.run_until_stopped().await?;
        Ok(())
    })
}
