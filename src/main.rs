//! The `uplink` binary: parses the command line, loads and validates config, calls the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use uplink::config::{self, DatabaseUrl, RawDev, RawEdge, RawOrigin};

/// jemalloc: upload bodies are allocated on one thread and freed on another at a high rate;
/// glibc's allocator returned those pages to the kernel and faulted them in again (a tenth of
/// the edge's CPU) and let each thread's arena grow.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "uplink", version, about = "Edge upload ingest node for video")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The embedded default: origin and one edge in one process, SQLite and local files.
    Dev(DevArgs),
    /// The edge role (Pingora): terminates uploads, proxies the control API to the origin.
    Edge {
        /// Edge config file (see config/edge.toml).
        #[arg(long)]
        config: PathBuf,
        /// Take over the listening sockets of the edge running with this config: start this,
        /// then send the running one SIGQUIT; it drains and exits (zero-downtime upgrade).
        #[arg(long)]
        upgrade: bool,
    },
    /// The origin role: control API, state database, processing workers.
    Origin {
        /// Origin config file (see config/origin.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// The edges of the origin's [fleet], their last heartbeats and whether they can be chosen.
    Fleet {
        /// Origin config file with a [fleet] (see config/origin.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// The IP-to-location database.
    Geoip {
        #[command(subcommand)]
        command: GeoipCommand,
    },
    /// Uploads, straight from the state database.
    Uploads {
        #[command(subcommand)]
        command: UploadsCommand,
    },
    /// Load-test a running edge or fleet through its public APIs (see README "Load testing").
    Bench(Box<BenchCli>),
    /// Upload-token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

/// Which state database an operator command uses.
#[derive(Args)]
struct DatabaseArgs {
    /// The data directory of an `uplink dev` node.
    #[arg(
        long,
        conflicts_with = "database",
        required_unless_present = "database"
    )]
    data_dir: Option<PathBuf>,
    /// The state database URL.
    #[arg(long, env = "UPLINK_DATABASE")]
    database: Option<String>,
}

impl DatabaseArgs {
    /// The database URL (a data directory is created if missing).
    fn url(self) -> anyhow::Result<DatabaseUrl> {
        Ok(match (self.database, self.data_dir) {
            (Some(url), _) => DatabaseUrl::parse(&url, "--database")?,
            (None, Some(dir)) => {
                std::fs::create_dir_all(&dir).with_context(|| {
                    format!("cannot create the data directory {}", dir.display())
                })?;
                DatabaseUrl::in_data_dir(&dir)
            }
            (None, None) => anyhow::bail!("give --data-dir or --database"),
        })
    }
}

#[derive(Subcommand)]
enum UploadsCommand {
    /// The newest uploads, one per line.
    List {
        /// Only this account's (its id).
        #[arg(long)]
        account: Option<String>,
        /// Only those in this status (receiving, pending, processing, uploading, completed,
        /// failed, or the code).
        #[arg(long)]
        status: Option<String>,
        /// How many at most.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// One upload as JSON: its record, status history and where its bytes are.
    Inspect {
        /// The upload's id.
        id: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Drop an upload that is still receiving (its bytes are swept afterwards).
    Cancel {
        /// The upload's id.
        id: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new random key as an `ID:BASE64` entry for `token_keys`.
    New {
        /// The key's id (letters, digits, '-', '_') [default: k + today's date].
        #[arg(long)]
        id: Option<String>,
    },
}

#[derive(Subcommand)]
enum GeoipCommand {
    /// Where an address is and, with --config, the edge an upload from it would go to.
    Lookup {
        /// IPv4, IPv6, or an ip2long number.
        address: String,
        /// Origin config file: its [fleet]'s database, edges and heartbeats.
        #[arg(long, conflicts_with = "geoip_database")]
        config: Option<PathBuf>,
        /// A MaxMind DB file, without a fleet.
        #[arg(long, default_value = "geoip/geo-whois-asn-country.mmdb")]
        geoip_database: PathBuf,
    },
}

#[derive(Args)]
struct DevArgs {
    /// Public HTTP address [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<String>,
    /// Directory for the database, objects and scratch files [default: ./data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Object storage URL [default: file://DATA_DIR/objects].
    #[arg(long, env = "UPLINK_STORAGE")]
    storage: Option<String>,
    /// Database URL [default: sqlite://DATA_DIR/uplink.db].
    #[arg(long, env = "UPLINK_DATABASE")]
    database: Option<String>,
    /// Also serve HTTPS (HTTP/1.1, HTTP/2) and HTTP/3 on this address, TCP and UDP
    /// [default: off]; a self-signed certificate is made unless the config names one.
    #[arg(long)]
    tls_listen: Option<String>,
    /// Serve Prometheus metrics of both roles at http://ADDRESS/metrics [default: off].
    #[arg(long)]
    metrics_listen: Option<String>,
    /// When acknowledged bytes are on the spool's disk: sync, batched or none
    /// [default: sync].
    #[arg(long)]
    durability: Option<uplink::ingest::durability::Durability>,
    /// Config file (see config/dev.toml); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account (tenant) with its default pipeline and print its credentials once.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        settings: AccountSettingsArgs,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Change an account's settings: each one given replaces the account's; print them all.
    Update {
        /// The account's id.
        id: String,
        #[command(flatten)]
        settings: AccountSettingsArgs,
        /// Remove a setting (notify-url, notify-progress, quota, max-upload-size,
        /// cors-origins, token-ttl, hooks); repeat for several.
        #[arg(long, value_name = "SETTING")]
        clear: Vec<String>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// An account's settings, as `account create` and `account update` take them.
#[derive(clap::Args)]
struct AccountSettingsArgs {
    /// Where notifications are sent.
    #[arg(long)]
    notify_url: Option<String>,
    /// Notification body: form (the seed's message=…&signature=…, the default) or json (the
    /// message itself); both carry Standard Webhooks signature headers.
    #[arg(long)]
    notify_format: Option<String>,
    /// Also notify each status change (processing, completed, failed): true or false.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    notify_status_changes: Option<bool>,
    /// Notify `UploadProgress` (bytes received) while an upload is receiving, at most once
    /// per this interval (like 10s; needs --notify-url).
    #[arg(long, value_name = "INTERVAL")]
    notify_progress: Option<String>,
    /// Storage quota: bytes, or a size like 10GiB.
    #[arg(long)]
    quota: Option<String>,
    /// Largest single upload: bytes, or a size like 5GiB [default: the node's limit].
    #[arg(long)]
    max_upload_size: Option<String>,
    /// A web origin (https://app.example.com, or *) whose pages may upload from a
    /// browser; repeat for several.
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
    /// Validity of upload tokens and URLs, like 2h [default: the node's token_ttl].
    #[arg(long)]
    token_ttl: Option<String>,
    /// Where the blocking hooks (pre-create, pre-finish) are sent, signed like notifications.
    #[arg(long)]
    hook_url: Option<String>,
    /// Which hooks are sent, comma-separated [default: pre-create,pre-finish].
    #[arg(long, value_delimiter = ',', value_name = "HOOKS")]
    hooks: Option<Vec<String>>,
    /// A hook's time limit, like pre-create=2s (100ms to 20s) [default: 5s]; repeat for each.
    #[arg(long, value_name = "HOOK=DURATION")]
    hook_timeout: Vec<String>,
    /// What a hook that does not answer in time means, refuse or continue, like
    /// pre-finish=refuse [default: pre-create=refuse, pre-finish=continue]; repeat for each.
    #[arg(long, value_name = "HOOK=POLICY")]
    hook_on_failure: Vec<String>,
}

impl AccountSettingsArgs {
    fn into_args(self, clear: Vec<String>) -> uplink::operator::SettingsArgs {
        uplink::operator::SettingsArgs {
            notify_url: self.notify_url,
            notify_format: self.notify_format,
            notify_status_changes: self.notify_status_changes,
            notify_progress: self.notify_progress,
            quota: self.quota,
            max_upload_size: self.max_upload_size,
            cors_origins: self.cors_origins,
            token_ttl: self.token_ttl,
            hook_url: self.hook_url,
            hooks: self.hooks,
            hook_timeouts: self.hook_timeout,
            hook_on_failure: self.hook_on_failure,
            clear,
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Starts logging to stderr in `format`; `RUST_LOG` sets the level (default `info`).
fn init_logs(format: config::LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match format {
        config::LogFormat::Text => logs.init(),
        config::LogFormat::Json => logs.json().init(),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uplink: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // The roles log as their config says, once it is read; operator commands as text.
    if !matches!(
        cli.command,
        Command::Dev(_) | Command::Edge { .. } | Command::Origin { .. }
    ) {
        init_logs(config::LogFormat::Text);
    }
    match cli.command {
        Command::Dev(args) => dev(args)?,
        Command::Edge { config, upgrade } => {
            let raw = config::load::<RawEdge>(&config)?;
            init_logs(raw.log_format);
            let settings = raw.validate(&env)?;
            uplink::role::run_edge(&settings, upgrade)?;
        }
        Command::Origin { config } => {
            let raw = config::load::<RawOrigin>(&config)?;
            init_logs(raw.log_format);
            let settings = raw.validate(&env)?;
            uplink::role::run_origin(settings)?;
        }
        Command::Account { command } => account(command)?,
        Command::Bench(cli) => bench(*cli)?,
        Command::Uploads { command } => uploads(command)?,
        Command::Keys {
            command: KeysCommand::New { id },
        } => {
            let id =
                id.unwrap_or_else(|| format!("k{}", uplink::clock::now_utc().format("%Y%m%d")));
            anyhow::ensure!(
                uplink::token::valid_id(&id),
                "--id {id:?}: use 1-64 letters, digits, '-' or '_'"
            );
            println!(
                "{}",
                uplink::token::Keyring::generate_line(&id, &mut rand::rng())
            );
        }
        Command::Fleet { config } => {
            let (fleet, database) = origin_fleet(&config)?;
            let report =
                current_thread()?.block_on(uplink::operator::fleet_report(&database, &fleet))?;
            print!("{report}");
        }
        Command::Geoip {
            command:
                GeoipCommand::Lookup {
                    address,
                    config,
                    geoip_database,
                },
        } => {
            let fleet = config.as_deref().map(origin_fleet).transpose()?;
            let path = fleet
                .as_ref()
                .map_or(geoip_database, |(f, _)| f.geoip_database.clone());
            let locator = uplink::geo::Locator::open(&path)?;
            let report = current_thread()?.block_on(uplink::operator::geoip_lookup(
                &address,
                &locator,
                fleet.as_ref().map(|(f, db)| (f, db)),
            ))?;
            print!("{report}");
        }
    }
    Ok(())
}

/// `uplink bench`: a run, or `compare`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct BenchCli {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    run: BenchArgs,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Compares two `--json` reports: each figure of A and B, and B/A.
    Compare {
        /// The first report (A).
        a: PathBuf,
        /// The second report (B).
        b: PathBuf,
    },
}

#[derive(Args)]
struct BenchArgs {
    /// The edge's (or the fleet's) base URL, e.g. https://edge.example.com.
    #[arg(long, env = "UPLINK_BENCH_URL", required = true)]
    url: Option<String>,
    /// The account's API key (it mints the upload credentials, as the account's backend does).
    #[arg(long, env = "UPLINK_API_KEY", required = true, hide_env_values = true)]
    api_key: Option<String>,
    /// tus, ietf, uploads-api, movingimage or s3-post.
    #[arg(long, default_value = "tus")]
    protocol: uplink::bench::Protocol,
    /// The HTTP version: 1.1, 2 or 3 (3 needs an https:// URL).
    #[arg(long, default_value = "1.1")]
    http: uplink::bench::transport::Http,
    /// Send every request to --url's host, even where the control API names another edge (to
    /// load one edge of a fleet, or the TLS listener of `uplink dev`, which names its plain one).
    #[arg(long)]
    pin_edge: bool,
    /// How many uploads (10 unless --duration is given).
    #[arg(long)]
    uploads: Option<u64>,
    /// Start new uploads for this long (e.g. 60s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Uploads at once: each one client with its own connection.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// The clients start evenly spread over this time (e.g. 30s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    ramp: std::time::Duration,
    /// Upload size: 16MiB, a range 1MiB..64MiB (uniform), or a list 1MiB,16MiB,256MiB.
    #[arg(long, default_value = "16MiB")]
    size: uplink::bench::Sizes,
    /// Bytes per request: tus and IETF appends, movingimage chunks.
    #[arg(long, default_value = "8MiB", value_parser = uplink::bench::parse_size)]
    chunk: u64,
    /// tus: the creation request carries the first chunk (creation-with-upload).
    #[arg(long)]
    creation_with_upload: bool,
    /// Each client's bandwidth cap: 5Mbit, 20Mbit, 2MiB (per second).
    #[arg(long, value_parser = parse_rate)]
    bandwidth: Option<u64>,
    /// The chance (0 to 1) that a request carrying bytes is cut off part way; tus and IETF
    /// uploads then resume from HEAD, the others send again.
    #[arg(long, default_value_t = 0.0)]
    interrupt: f64,
    /// A client profile: "mobile" (5 Mbit/s, 5% of requests cut off) unless --bandwidth or
    /// --interrupt say otherwise.
    #[arg(long)]
    profile: Option<String>,
    /// The pipeline of S3 POST uploads (the account's pipeline_id).
    #[arg(long)]
    pipeline_id: Option<String>,
    /// Send this media file (every upload); otherwise random bytes of --size.
    #[arg(long)]
    media: Option<PathBuf>,
    /// Random bytes (default), or one repeated byte (costs the client nothing).
    #[arg(long, default_value = "random", value_parser = ["random", "constant"])]
    payload: String,
    /// Check each upload's record by its sha256 (the origin's workers set it) or its size.
    #[arg(long, default_value = "sha256")]
    verify: uplink::bench::Verify,
    /// Also wait for each upload to be processed (status 6), and time it (send --media).
    #[arg(long)]
    wait_processed: bool,
    /// How long an upload's record may take to show it stored (or processed).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    verify_timeout: std::time::Duration,
    /// How long one request may take.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "600s")]
    timeout: std::time::Duration,
    /// The seed of the random bytes and choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Trust any server certificate (a test fleet with self-signed certificates).
    #[arg(long, conflicts_with = "ca_file")]
    insecure: bool,
    /// Trust the certificates of this PEM file (e.g. DATA_DIR/tls/certificate.pem of uplink dev).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as a self-contained HTML page with charts here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Progress on stderr: auto (a bar on a terminal, lines otherwise), plain or quiet.
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "quiet"])]
    progress: String,
}

/// A rate per second: `5Mbit`, `500kbit` (bits) or `2MiB`, `640kB` (bytes).
fn parse_rate(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let lower = lower.trim_end_matches("/s").trim_end_matches("ps");
    let bits = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .into_iter()
        .find_map(|(unit, scale)| Some((lower.strip_suffix(unit)?.trim().to_owned(), scale)));
    let rate = match bits {
        Some((n, scale)) => n
            .parse::<f64>()
            .map(|n| (n * scale / 8.0) as u64)
            .map_err(|_| format!("rate {s:?}: e.g. 5Mbit or 2MiB"))?,
        None => uplink::bench::parse_size(s)?,
    };
    if rate == 0 {
        return Err(format!("rate {s:?}: must be above zero"));
    }
    Ok(rate)
}

/// The plan `uplink bench`'s arguments describe.
fn bench_plan(args: &BenchArgs) -> anyhow::Result<uplink::bench::Plan> {
    use uplink::bench::{self, transport::Trust};
    let (Some(url), Some(api_key)) = (&args.url, &args.api_key) else {
        anyhow::bail!("give --url and --api-key");
    };
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.interrupt),
        "--interrupt {}: a chance from 0 to 1",
        args.interrupt
    );
    let mut plan = bench::Plan::new(url, api_key);
    let (mut bandwidth, mut interrupt) = (args.bandwidth, args.interrupt);
    match args.profile.as_deref() {
        None => {}
        Some("mobile") => {
            bandwidth = bandwidth.or(Some(625_000));
            if interrupt == 0.0 {
                interrupt = 0.05;
            }
        }
        Some(other) => anyhow::bail!("--profile {other:?}: the one profile is mobile"),
    }
    plan.trust = match (args.insecure, &args.ca_file) {
        (true, _) => Trust::Insecure,
        (false, Some(path)) => Trust::Pem(
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        ),
        (false, None) => Trust::System,
    };
    plan.pipeline_id.clone_from(&args.pipeline_id);
    plan.http = args.http;
    plan.pin_edge = args.pin_edge;
    plan.protocol = args.protocol;
    plan.uploads = args.uploads.or(args.duration.is_none().then_some(10));
    plan.duration = args.duration;
    plan.concurrency = args.concurrency.max(1);
    plan.ramp = args.ramp;
    plan.sizes = args.size.clone();
    plan.chunk = args.chunk;
    plan.creation_with_upload = args.creation_with_upload;
    plan.bandwidth = bandwidth.map(bench::source::Pace);
    plan.interrupt = interrupt;
    plan.payload = match (&args.media, args.payload.as_str()) {
        (Some(path), _) => bench::Payload::Media(path.clone()),
        (None, "constant") => bench::Payload::Constant,
        (None, _) => bench::Payload::Random,
    };
    plan.verify = args.verify;
    plan.wait_processed = args.wait_processed;
    plan.verify_timeout = args.verify_timeout;
    plan.request_timeout = args.timeout;
    plan.seed = args.seed;
    Ok(plan)
}

/// `uplink bench`: a run, or `compare`; fails unless every upload completed and verified.
fn bench(cli: BenchCli) -> anyhow::Result<()> {
    use uplink::bench::{self, report::Report};
    if let Some(BenchCommand::Compare { a, b }) = cli.command {
        let read = |path: &Path| -> anyhow::Result<Report> {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not an uplink bench report", path.display()))
        };
        print!("{}", read(&a)?.compare(&read(&b)?));
        return Ok(());
    }
    let args = cli.run;
    let plan = bench_plan(&args)?;
    let display = match args.progress.as_str() {
        "plain" => bench::progress::Display::Plain,
        "quiet" => bench::progress::Display::Quiet,
        _ => bench::progress::Display::Auto,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    let report = runtime
        .block_on(bench::run(std::sync::Arc::new(plan), display))
        .map_err(|e| anyhow::anyhow!(e))?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, bench::html::render(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let total = report.completed + report.failed;
    anyhow::ensure!(
        report.failed == 0 && report.completed > 0,
        "{} of {total} uploads did not complete and verify",
        report.failed
    );
    Ok(())
}

/// `uplink dev`: flags over the config file, then the embedded default.
fn dev(args: DevArgs) -> anyhow::Result<()> {
    let mut raw: RawDev = match &args.config {
        Some(path) => config::load(path)?,
        None => RawDev::default(),
    };
    init_logs(raw.log_format);
    raw.listen = args.listen.or(raw.listen);
    raw.data_dir = args.data_dir.or(raw.data_dir);
    raw.storage = args.storage.or(raw.storage);
    raw.database = args.database.or(raw.database);
    raw.tls_listen = args.tls_listen.or(raw.tls_listen);
    raw.metrics_listen = args.metrics_listen.or(raw.metrics_listen);
    raw.durability = args.durability.unwrap_or(raw.durability);
    let data_dir = raw.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let keyring = uplink::role::dev_keyring(&data_dir)?;
    let settings = raw.validate(uplink::role::generate_secret(), keyring)?;
    uplink::role::run_dev(settings)?;
    Ok(())
}

/// `uplink account …`.
fn account(command: AccountCommand) -> anyhow::Result<()> {
    match command {
        AccountCommand::Create {
            name,
            settings,
            json,
            db,
        } => {
            let database = db.url()?;
            let req = uplink::operator::AccountRequest {
                name,
                settings: settings.into_args(Vec::new()),
            };
            let account =
                current_thread()?.block_on(uplink::operator::create_account(&database, &req))?;
            if json {
                println!("{account}");
            } else {
                print!("{}", uplink::operator::render_account(&account));
            }
        }
        AccountCommand::Update {
            id,
            settings,
            clear,
            db,
        } => {
            let database = db.url()?;
            let args = settings.into_args(clear);
            let account = current_thread()?
                .block_on(uplink::operator::update_account(&database, &id, &args))?;
            println!("{account:#}");
        }
    }
    Ok(())
}

/// `uplink uploads …`.
fn uploads(command: UploadsCommand) -> anyhow::Result<()> {
    let rt = current_thread()?;
    match command {
        UploadsCommand::List {
            account,
            status,
            limit,
            db,
        } => print!(
            "{}",
            rt.block_on(uplink::operator::uploads::list(
                &db.url()?,
                account.as_deref(),
                status.as_deref(),
                limit
            ))?
        ),
        UploadsCommand::Inspect { id, db } => {
            let upload = rt.block_on(uplink::operator::uploads::inspect(&db.url()?, &id))?;
            println!("{}", serde_json::to_string_pretty(&upload)?);
        }
        UploadsCommand::Cancel { id, db } => {
            print!(
                "{}",
                rt.block_on(uplink::operator::uploads::cancel(&db.url()?, &id))?
            );
        }
    }
    Ok(())
}

/// The `[fleet]` and database of an origin config file, without its secrets (an operator
/// command does not need them).
fn origin_fleet(path: &Path) -> anyhow::Result<(config::FleetSettings, DatabaseUrl)> {
    let raw = config::load::<RawOrigin>(path)?;
    let fleet = raw
        .fleet
        .as_ref()
        .with_context(|| format!("{} has no [fleet]", path.display()))?
        .validate()?;
    Ok((fleet, DatabaseUrl::parse(&raw.database, "database")?))
}

fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
