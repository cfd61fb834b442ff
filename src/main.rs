//! `pgpool`: the proxy's command line, with Pgpool-II's flags so existing start scripts work.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use tracing::{info, warn};

use pgpool::auth::passwd::PoolPasswd;
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
    let env: Vec<(String, String)> = std::env::vars().collect();
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
    let _ = (
        cli.dont_detach,
        cli.discard_status,
        &cli.mode,
        &cli.hba_file,
        &cli.pcp_file,
        &cli.key_file,
    );
    let passwd = load_passwd(&cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let ctx: Arc<Context> = Context::new(cfg, passwd);
        // Before listening: a client must never find TLS missing because it came early.
        pgpool::tls::init(&ctx).context("ssl")?;
        tokio::spawn(pgpool::tls::reload_on_sighup(ctx.clone()));
        let cfg = ctx.config();
        let (tcp, unix) = server::bind(&cfg).await?;
        info!(
            port = cfg.port,
            "pgpool-rs {} accepting connections",
            env!("CARGO_PKG_VERSION")
        );
        tokio::select! {
            _ = server::serve(ctx, tcp, unix) => {}
            _ = tokio::signal::ctrl_c() => info!("interrupted, shutting down"),
        }
        Ok(())
    })
}

fn load_passwd(cfg: &Config) -> anyhow::Result<PoolPasswd> {
    let Some(path) = cfg.pool_passwd_path() else {
        return Ok(PoolPasswd::default());
    };
    match PoolPasswd::load(&path, None) {
        Ok((p, warnings)) => {
            for w in warnings {
                warn!("{}: {w}", path.display());
            }
            Ok(p)
        }
        Err(e) => {
            warn!("could not read pool_passwd {}: {e}", path.display());
            Ok(PoolPasswd::default())
        }
    }
}
