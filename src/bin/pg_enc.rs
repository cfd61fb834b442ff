//! `pg_enc`: Pgpool-II's AES tool. Prints the encrypted password, or with `-m` writes
//! `user:AES…` into the pool_passwd next to the pgpool.conf given by `-f`.

use clap::Parser;
use pgpool::auth::tools::{self, MAX_PASSWORD_LEN};
use pgpool::auth::{encrypt_password, read_key, resolve_key_file, upsert_entry};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "pg_enc",
    about = "AES password tool compatible with Pgpool-II's pg_enc"
)]
struct Cli {
    /// Key file (default: $PGPOOLKEYFILE, else ~/.pgpoolkey).
    #[arg(short = 'k', long = "key-file")]
    key_file: Option<PathBuf>,
    /// The encryption key itself.
    #[arg(short = 'K', long = "enc-key")]
    enc_key: Option<String>,
    /// pgpool.conf; pool_passwd is found through it.
    #[arg(short = 'f', long = "config-file", default_value = tools::DEFAULT_CONFIG_FILE)]
    config_file: PathBuf,
    /// Prompt for the database password on standard input.
    #[arg(short = 'p', long = "prompt")]
    prompt: bool,
    /// Prompt for the encryption key on standard input.
    #[arg(short = 'P', long = "prompt-for-key")]
    prompt_for_key: bool,
    /// Create or replace the user's entry in pool_passwd.
    #[arg(short = 'm', long = "update-pass")]
    update_pass: bool,
    /// User for the pool_passwd entry (default: the current user).
    #[arg(short = 'u', long = "username")]
    username: Option<String>,
    /// The password; prompted for when absent.
    password: Option<String>,
}

fn main() -> ExitCode {
    tools::exit_with(run(&Cli::parse()))
}

fn run(cli: &Cli) -> Result<(), String> {
    let password = match (&cli.password, cli.prompt) {
        (Some(p), false) => p.clone(),
        _ => tools::prompt_line("db password: ").map_err(|e| e.to_string())?,
    };
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "Error: Input exceeds maximum password length given:{} max allowed:{MAX_PASSWORD_LEN}!",
            password.len()
        ));
    }
    let key = key(cli)?;
    let stored = encrypt_password(&password, &key);
    if cli.update_pass {
        let user = tools::entry_user(cli.username.as_deref())?;
        let path = tools::pool_passwd_path(&cli.config_file).map_err(|e| e.to_string())?;
        upsert_entry(&path, &user, &stored).map_err(|e| e.to_string())
    } else {
        // Same three lines as the original: blank, bare base64, then the pool_passwd form.
        let b64 = stored.strip_prefix("AES").unwrap_or(&stored);
        println!("\n{b64}\npool_passwd string: {stored}");
        Ok(())
    }
}

/// `-P` prompt, else `-K`, else the key file (`-k`, `$PGPOOLKEYFILE`, `~/.pgpoolkey`).
fn key(cli: &Cli) -> Result<String, String> {
    const NO_KEY: &str = "encryption key not provided";
    if cli.prompt_for_key {
        let key = tools::prompt_line("encryption key: ").map_err(|e| e.to_string())?;
        return if key.is_empty() {
            Err(NO_KEY.into())
        } else {
            Ok(key)
        };
    }
    if let Some(k) = cli.enc_key.as_ref().filter(|k| !k.is_empty()) {
        return Ok(k.clone());
    }
    let path = resolve_key_file(cli.key_file.as_deref()).ok_or(NO_KEY)?;
    println!("trying to read key from file {}", path.display());
    read_key(&path).map_err(|e| format!("{NO_KEY}: {e}"))
}
