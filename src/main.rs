//! `pgpool`: the proxy's command line, with Pgpool-II's flags so existing start scripts work.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use tracing::{debug, info, warn};

use pgpool::auth::setup;
use pgpool::config::{self, Config};
use pgpool::server::{self, Context};

#[derive(Parser, Debug)]
#[command(
    name = "pgpool",
    version,
    about = "pgpool-rs: a PostgreSQL proxy configured like Pgpool-II",
    disable_help_flag = true
)]
struct Cli {
    /// pgpool.conf to read (missing: defaults plus PGPOOL_PARAMS_* environment).
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
    /// `check`: validate the configuration and print the effective settings.
    command: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.debug);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("pgpool: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGPOOL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    // Variables that are not UTF-8 cannot be credentials; skip them instead of panicking.
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let loaded = config::load(cli.config_file.as_deref(), &env)?;
    for w in &loaded.warnings {
        warn!("{w}");
    }
    loaded.config.validate()?;
    Ok(loaded.config)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = load_config(&cli)?;
    match cli.command.as_deref() {
        Some("check") => {
            print!("{}", cfg.render_effective());
            println!("configuration is valid");
            return Ok(());
        }
        Some(other) => anyhow::bail!("unknown command \"{other}\" (expected check)"),
        None => {}
    }
    let _ = (cli.dont_detach, cli.discard_status, &cli.mode);
    let auth = load_auth(&cli, &cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let ctx: Arc<Context> = Context::new(cfg, auth.passwd);
        ctx.set_hba(auth.hba);
        // Before listening: a client must never find TLS missing because it came early.
        pgpool::tls::init(&ctx).context("ssl")?;
        tokio::spawn(pgpool::tls::reload_on_sighup(ctx.clone()));
        // PCP and metrics first too: once the client port answers, everything does.
        start_admin_servers(&ctx, cli.pcp_file.as_deref()).await?;
        let cfg = ctx.config();
        let (tcp, unix) = server::bind(&cfg).await?;
        info!(
            port = cfg.port,
            "pgpool-rs {} accepting connections",
            env!("CARGO_PKG_VERSION")
        );
        pgpool::replication::spawn_monitor(ctx.clone());
        tokio::select! {
            _ = server::serve(ctx.clone(), tcp, unix) => {}
            _ = tokio::signal::ctrl_c() => info!("interrupted, shutting down"),
            _ = ctx.shutdown_requested.notified() => info!("shutdown requested, shutting down"),
        }
        Ok(())
    })
}

/// Environment credentials into pool_passwd/pcp.conf, then pool_passwd (with the AES key)
/// and pool_hba.conf. A broken pool_hba.conf stops start-up only when it is in use.
fn load_auth(cli: &Cli, cfg: &Config) -> anyhow::Result<setup::Loaded> {
    let paths = setup::AuthPaths {
        key_file: cli.key_file.clone(),
        hba_file: cli.hba_file.clone(),
        pcp_file: cli.pcp_file.clone(),
    };
    // Variables that are not UTF-8 cannot be credentials; skip them instead of panicking.
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let loaded =
        setup::load_at_start(cfg, &paths, &env).context("credentials from the environment")?;
    for n in &loaded.notes {
        info!("{n}");
    }
    for w in &loaded.warnings {
        warn!("{w}");
    }
    match &loaded.hba_error {
        Some(e) if cfg.enable_pool_hba => anyhow::bail!("enable_pool_hba is on: {e}"),
        Some(e) => debug!("pool_hba.conf not loaded (enable_pool_hba is off): {e}"),
        None => {}
    }
    info!(users = loaded.passwd.len(), "pool_passwd loaded");
    Ok(loaded)
}

/// The PCP server (with `pcp.conf` from `-F`) and the metrics/health HTTP server.
async fn start_admin_servers(
    ctx: &Arc<Context>,
    pcp_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if let Some(path) = pcp_file {
        match pgpool::auth::pcp_conf::PcpUsers::load(path) {
            Ok(users) => ctx.set_pcp_users(users),
            Err(e) => warn!("could not read pcp.conf {}: {e}", path.display()),
        }
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
