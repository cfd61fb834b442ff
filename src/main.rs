//! `pgpool`: the proxy's command line, with Pgpool-II's flags so existing start scripts work.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tracing::{info, warn};

use pgpool::auth::setup;
use pgpool::config::{self, Config};
use pgpool::context::Context;
use pgpool::lifecycle::{self, PidFile, PidFileError, ShutdownMode, Sources};
use pgpool::logging::LogHandle;
use pgpool::server;

#[derive(Parser, Debug)]
#[command(
    name = "pgpool",
    version,
    about = "pgpool-rs: a PostgreSQL proxy configured like Pgpool-II",
    disable_help_flag = true
)]
struct Cli {
    /// pgpool.conf to read (missing: defaults plus PGPOOL_PARAMS_* environment). With
    /// PGPOOL_CONF_VOLUME set and $PGPOOL_CONF_VOLUME/pgpool.conf present, that file is read
    /// instead, as the Kubernetes image's entrypoint did.
    #[arg(short = 'f', long = "config-file")]
    config_file: Option<PathBuf>,
    /// pool_hba.conf.
    #[arg(short = 'a', long = "hba-file")]
    hba_file: Option<PathBuf>,
    /// pcp.conf.
    #[arg(short = 'F', long = "pcp-file")]
    pcp_file: Option<PathBuf>,
    /// Key file for AES-encrypted pool_passwd entries.
    #[arg(short = 'k', long = "key-file")]
    key_file: Option<PathBuf>,
    /// Run in the foreground (always the case; accepted for compatibility).
    #[arg(short = 'n', long = "dont-detach")]
    dont_detach: bool,
    /// Discard the pgpool_status file (there is none; accepted for compatibility).
    #[arg(short = 'D', long = "discard-status")]
    discard_status: bool,
    /// Debug logging.
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// Shutdown mode for `stop`: smart, fast or immediate.
    #[arg(short = 'm', long = "mode", default_value = "smart")]
    mode: String,
    #[arg(short = 'h', long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// `check`: validate the configuration and print the effective settings; `stop` and
    /// `reload`: signal the running pgpool found through `pid_file_name` (as Pgpool-II).
    command: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let logging = pgpool::logging::init(cli.debug);
    match run(cli, logging) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Once: the log goes to stderr as well, so logging it too would print it twice.
            eprintln!("pgpool: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Reads the configuration, switches logging to its settings, then reports what reading
/// it found (so the warnings come out in the configured form).
fn load_config(sources: &Sources, logging: &LogHandle) -> anyhow::Result<Config> {
    let (cfg, warnings) = sources.load_config()?;
    logging.apply_config(&cfg);
    for w in &warnings {
        warn!("{w}");
    }
    Ok(cfg)
}

fn run(cli: Cli, logging: LogHandle) -> anyhow::Result<()> {
    let sources = Sources::resolve(
        cli.config_file.clone(),
        cli.hba_file.clone(),
        cli.pcp_file.clone(),
        cli.key_file.clone(),
        config::process_env(),
    );
    let cfg = load_config(&sources, &logging)?;
    let mode = ShutdownMode::parse(&cli.mode)
        .ok_or_else(|| anyhow::anyhow!("invalid shutdown mode \"{}\"", cli.mode))?;
    match cli.command.as_deref() {
        Some("check") => {
            // The files a start would read, read the same way (nothing is written).
            let (_, passwd_warnings) = sources.load_passwd(&cfg, true).context("pool_passwd")?;
            for w in &passwd_warnings {
                warn!("{w}");
            }
            sources.load_hba(&cfg).context("pool_hba.conf")?;
            print!("{}", cfg.render_effective());
            println!("configuration is valid");
            return Ok(());
        }
        Some("stop") => return signal_running(&cfg, lifecycle::Command::Stop(mode)),
        Some("reload") => return signal_running(&cfg, lifecycle::Command::Reload),
        Some(other) => {
            anyhow::bail!("unknown command \"{other}\" (expected check, stop or reload)")
        }
        None => {}
    }
    let _ = (cli.dont_detach, cli.discard_status);
    let auth = load_auth(&sources, &cfg)?;
    let hba = sources.load_hba(&cfg)?;
    let _pid_file = create_pid_file(&cfg)?;
    let rt = runtime(cfg.worker_threads).context("starting the runtime")?;
    rt.block_on(async move {
        let ctx: Arc<Context> = Context::new(cfg, auth.passwd);
        ctx.set_logging(logging);
        ctx.set_hba(hba);
        // Before listening: a client must never find TLS missing because it came early.
        // (SIGHUP reloads certificates with the rest: see lifecycle::reload.)
        pgpool::tls::init(&ctx.tls, &ctx.config()).context("ssl")?;
        // PCP and metrics first too: once the client port answers, everything does.
        start_admin_servers(&ctx, &sources).await?;
        let cfg = ctx.config();
        let (tcp, unix) = server::bind(&cfg).await?;
        info!(
            port = cfg.port,
            "pgpool-rs {} accepting connections",
            env!("CARGO_PKG_VERSION")
        );
        pgpool::replication::spawn_monitor(ctx.clone());
        lifecycle::serve_until_stopped(ctx, Arc::new(sources), tcp, unix).await?;
        info!("pgpool-rs stopped");
        Ok(())
    })
}

/// `pgpool stop` / `pgpool reload`: signal the proxy named in `pid_file_name`.
fn signal_running(cfg: &Config, cmd: lifecycle::Command) -> anyhow::Result<()> {
    let path = cfg.resolve_path(&cfg.pid_file_name);
    // The proxy may take shutdown_delay + drain_timeout; give it a little more.
    let wait = Duration::from_secs(cfg.shutdown_delay + cfg.drain_timeout + 10);
    lifecycle::send_command(&path, cmd, wait)?;
    Ok(())
}

/// Writes the pid file. Another live pgpool named there stops the start, as in Pgpool-II;
/// a folder we cannot write only costs `pgpool stop`/`reload`, so it is a warning.
fn create_pid_file(cfg: &Config) -> anyhow::Result<Option<PidFile>> {
    let path = cfg.resolve_path(&cfg.pid_file_name);
    match PidFile::create(&path) {
        Ok(p) => Ok(Some(p)),
        Err(e @ PidFileError::Io { .. }) => {
            warn!("{e}; `pgpool stop` and `pgpool reload` will not find this process");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Environment credentials into pool_passwd/pcp.conf, then pool_passwd (with the AES key).
/// pool_hba.conf is read by `Sources::load_hba`, which also knows the image's defaults.
fn load_auth(sources: &Sources, cfg: &Config) -> anyhow::Result<setup::Loaded> {
    let loaded = setup::load_at_start(cfg, &sources.paths, &config::process_env())
        .context("credentials from the environment")?;
    for n in &loaded.notes {
        info!("{n}");
    }
    for w in &loaded.warnings {
        warn!("{w}");
    }
    info!(users = loaded.passwd.len(), "pool_passwd loaded");
    Ok(loaded)
}

/// The PCP server (with `pcp.conf`) and the metrics/health HTTP server.
async fn start_admin_servers(ctx: &Arc<Context>, sources: &Sources) -> anyhow::Result<()> {
    match sources.load_pcp(&ctx.config()) {
        Ok(users) => ctx.set_pcp_users(users),
        Err(e) => warn!("could not read pcp.conf: {e}"),
    }
    let (tcp, unix) = pgpool::admin::pcp::bind(ctx)
        .await
        .context("PCP listener")?;
    tokio::spawn(pgpool::admin::pcp::serve(ctx.clone(), tcp, unix));
    let http = pgpool::admin::http::bind(ctx)
        .await
        .context("metrics listener")?;
    if !http.is_empty() {
        info!(
            port = ctx.config().metrics_port,
            "metrics and health on HTTP"
        );
    }
    tokio::spawn(pgpool::admin::http::serve(ctx.clone(), http));
    Ok(())
}

/// The runtime `worker_threads` asks for. One thread is tokio's current-thread scheduler:
/// the same event loop without the work-stealing one needs to share tasks between threads.
fn runtime(worker_threads: u16) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = match worker_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => usize::from(n),
    };
    match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}
