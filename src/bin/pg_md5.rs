//! `pg_md5`: Pgpool-II's md5 tool. Prints `hex(md5(password))` (the pcp.conf form), or with
//! `-m` writes `user:md5…` into the pool_passwd next to the pgpool.conf given by `-f`.

use clap::Parser;
use pgpool::auth::tools::{self, MAX_PASSWORD_LEN};
use pgpool::auth::{md5_hex, pg_md5_password, upsert_entry};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "pg_md5",
    about = "md5 password tool compatible with Pgpool-II's pg_md5"
)]
struct Cli {
    /// Prompt for the password on standard input.
    #[arg(short = 'p', long = "prompt")]
    prompt: bool,
    /// Produce an md5 authentication entry in pool_passwd.
    #[arg(short = 'm', long = "md5auth")]
    md5auth: bool,
    /// User for the pool_passwd entry (default: the current user).
    #[arg(short = 'u', long = "username")]
    username: Option<String>,
    /// pgpool.conf; pool_passwd is found through it.
    #[arg(short = 'f', long = "config-file", default_value = tools::DEFAULT_CONFIG_FILE)]
    config_file: PathBuf,
    /// File of `username:password` lines to process.
    #[arg(short = 'i', long = "input-file")]
    input_file: Option<PathBuf>,
    /// The password (deprecated by Pgpool-II in favour of -p, kept for compatibility).
    password: Option<String>,
}

fn main() -> ExitCode {
    tools::exit_with(run(&Cli::parse()))
}

fn run(cli: &Cli) -> Result<(), String> {
    if let Some(input) = &cli.input_file {
        return from_input_file(cli, input);
    }
    let password = match (&cli.password, cli.prompt) {
        (_, true) => tools::prompt_line("password: ").map_err(|e| e.to_string())?,
        (Some(p), false) => p.clone(),
        (None, false) => return Err("pg_md5: a password or -p is required (see --help)".into()),
    };
    if password.len() > MAX_PASSWORD_LEN {
        return Err("Error: Input exceeds maximum password length!".into());
    }
    if cli.md5auth {
        let user = tools::entry_user(cli.username.as_deref())?;
        write_entry(&cli.config_file, &user, &password)
    } else {
        println!("{}", md5_hex(password.as_bytes()));
        Ok(())
    }
}

fn write_entry(conf: &Path, user: &str, password: &str) -> Result<(), String> {
    let path = tools::pool_passwd_path(conf).map_err(|e| e.to_string())?;
    upsert_entry(&path, user, &pg_md5_password(user, password)).map_err(|e| e.to_string())
}

/// `-i`: one `username:password` per line, reported line by line like the original.
fn from_input_file(cli: &Cli, input: &Path) -> Result<(), String> {
    println!(
        "trying to read username:password pairs from file {}",
        input.display()
    );
    let text = std::fs::read_to_string(input)
        .map_err(|e| format!("failed to open input_file \"{}\" ({e})", input.display()))?;
    for (idx, line) in text.lines().enumerate() {
        print!("LINE#{:02}: ", idx + 1);
        let Some((user, password)) = line.split_once(':').filter(|(_, p)| !p.is_empty()) else {
            println!(
                "{}",
                if line.is_empty() {
                    "BLANK LINE"
                } else {
                    "Invalid username:password pair"
                }
            );
            continue;
        };
        println!("USER: <{user}>");
        if cli.md5auth {
            write_entry(&cli.config_file, user, password)?;
        } else {
            println!("{}", md5_hex(password.as_bytes()));
        }
    }
    Ok(())
}
