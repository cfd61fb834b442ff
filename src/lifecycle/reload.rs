//! Reload: read every file, keep what cannot change without a restart, swap the rest in at
//! once. Also the watcher that reloads when a mounted file changes.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use super::sources::{LoadError, Sources};
use crate::config::{self, Config};
use crate::context::Context;

/// What a reload changed.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Parameters changed in the file that keep their old value until a restart.
    pub need_restart: Vec<String>,
}

/// Reads and validates every file, then swaps config, pool_passwd and pool_hba in together.
/// On any error nothing changes and the error is returned (the caller logs it).
pub fn reload(ctx: &Context, sources: &Sources) -> Result<ReloadReport, LoadError> {
    // A pool_passwd that vanished is an error only if it held users: dropping every user on
    // a transient miss would lock everyone out.
    let mut snap = sources.load_all(ctx.passwd().is_empty())?;
    for w in &snap.warnings {
        warn!("{w}");
    }
    let old = ctx.config();
    let need_restart = keep_restart_only(&old, &mut snap.config);
    for name in &need_restart {
        warn!("parameter \"{name}\" changed but needs a restart of pgpool to take effect; keeping the current value");
    }
    let stale = stale_credentials(ctx, &snap);
    ctx.replace_config(snap.config);
    ctx.set_passwd(snap.passwd);
    ctx.set_hba(snap.hba);
    drop_cached(ctx, stale);
    ctx.set_pcp_users(snap.pcp);
    // Certificates and keys too (Kubernetes rotates Secrets); a bad pair keeps the old one.
    crate::tls::reload_tls(&ctx.tls, &ctx.config());
    Ok(ReloadReport { need_restart })
}

/// Whose cached connections a reload must drop: they were authenticated under rules that no
/// longer hold. A pool_passwd entry that changed (or whose meaning changed with a new key)
/// touches its user; a changed pool_hba.conf may touch anyone.
enum Stale {
    Nobody,
    Users(Vec<String>),
    Everyone,
}

fn stale_credentials(ctx: &Context, snap: &super::sources::Snapshot) -> Stale {
    let same_hba = match (ctx.hba().as_deref(), snap.hba.as_ref()) {
        (Some(old), Some(new)) => old.same_rules(new),
        (old, new) => old.is_none() && new.is_none(),
    };
    if !same_hba {
        return Stale::Everyone;
    }
    let users = ctx.passwd().changed_users(&snap.passwd);
    if users.is_empty() {
        Stale::Nobody
    } else {
        Stale::Users(users)
    }
}

/// Closes the cached connections of `stale` users (in the background: closing is I/O).
fn drop_cached(ctx: &Context, stale: Stale) {
    let gone = match &stale {
        Stale::Nobody => return,
        Stale::Users(users) => ctx.pool.remove_where(|k| users.contains(&k.user)),
        Stale::Everyone => ctx.pool.remove_where(|_| true),
    };
    match stale {
        Stale::Users(users) => info!(
            "credentials of {} user(s) changed: closed {} cached connection(s)",
            users.len(),
            gone.len()
        ),
        _ => info!(
            "pool_hba.conf changed: closed {} cached connection(s)",
            gone.len()
        ),
    }
    if gone.is_empty() {
        return;
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            for c in gone {
                c.terminate().await;
            }
        });
    }
}

/// Runs [`reload`] and logs the outcome: how SIGHUP, PCP and the watcher all reload.
pub fn reload_logged(ctx: &Context, sources: &Sources, why: &str) {
    match reload(ctx, sources) {
        Ok(r) if r.need_restart.is_empty() => info!("{why}: configuration reloaded"),
        Ok(r) => info!(
            "{why}: configuration reloaded; {} changed parameter(s) need a restart",
            r.need_restart.len()
        ),
        Err(e) => error!("{why}: reload failed, keeping the current configuration: {e}"),
    }
}

/// Parameters the running proxy cannot apply even though Pgpool-II reloads them: the
/// statement classifier and each session's backend slots are built once.
const RESTART_TOO: &[&str] = &["allow_sql_comments", "ignore_leading_white_space"];

/// Puts the old value back into `new` for every start-only parameter that changed, and for
/// backend addresses (only weights, flags and application names reload); returns their names.
fn keep_restart_only(old: &Config, new: &mut Config) -> Vec<String> {
    let mut changed = Vec::new();
    for (name, value, _) in new.items() {
        let restart_only = config::context(&name) == Some(config::Context::Init)
            || RESTART_TOO.contains(&name.as_str());
        if !restart_only {
            continue;
        }
        let Some(before) = old.show(&name) else {
            continue;
        };
        if before != value {
            // `show` output parses back to the same value (it is what `check` prints).
            if new.set(&name, &before).is_ok() {
                changed.push(name);
            }
        }
    }
    let addr = |c: &Config| -> Vec<(usize, String, u16)> {
        c.backends
            .iter()
            .map(|b| (b.id, b.hostname.clone(), b.port))
            .collect()
    };
    if addr(old) != addr(new) {
        let mut backends = old.backends.clone();
        for b in &mut backends {
            if let Some(n) = new.backend(b.id) {
                b.weight = n.weight;
                b.flag = n.flag;
                b.application_name = n.application_name.clone();
            }
        }
        new.backends = backends;
        changed
            .push("backend_hostnameN/backend_portN (adding, removing or moving a backend)".into());
    }
    changed
}

/// How often the watcher looks at the files. Kubernetes updates a mounted ConfigMap or
/// Secret within about a minute, so a second more is nothing.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Reloads when one of the configuration files changes and then stays unchanged for one
/// more look (debounce: an editor or kubelet writing several files is seen as one change).
///
/// This polls file contents instead of using inotify on purpose: a ConfigMap or Secret
/// update swaps a `..data` symlink in the mounted folder, which inotify on the file itself
/// never reports, and inotify is unreliable on the network and overlay file systems
/// volumes use. Reading a few small files once a second costs nothing measurable.
pub async fn watch_files(ctx: Arc<Context>, sources: Arc<Sources>) {
    let mut seen = fingerprint(&sources.watched_files(&ctx.config()));
    let mut pending: Option<u64> = None;
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let now = fingerprint(&sources.watched_files(&ctx.config()));
        if now == seen {
            pending = None;
        } else if pending == Some(now) {
            let (c, s) = (ctx.clone(), sources.clone());
            let _ = tokio::task::spawn_blocking(move || {
                reload_logged(&c, &s, "configuration files changed")
            })
            .await;
            // A broken file is reported once, not every second; the next edit retries.
            seen = fingerprint(&sources.watched_files(&ctx.config()));
            pending = None;
        } else {
            pending = Some(now);
        }
    }
}

/// A hash of the files' contents (a missing file counts as its own state).
fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        match std::fs::read(f) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => e.kind().hash(&mut h),
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        let base = "backend_hostname0 = 'a'\nbackend_port0 = 5432\n\
                    backend_hostname1 = 'b'\nbackend_port1 = 5432\n";
        config::parse_str(&format!("{base}{text}"), "pgpool.conf", &[])
            .unwrap()
            .config
    }

    #[test]
    fn start_only_parameters_keep_their_value_and_are_reported() {
        let old = parse("port = 9999\nbackend_weight1 = 1\n");
        let mut new = parse("port = 7777\nbackend_weight1 = 3\n");
        let changed = keep_restart_only(&old, &mut new);
        assert_eq!(changed, vec!["port".to_string()]);
        assert_eq!(new.port, 9999);
        assert_eq!(new.backend(1).map(|b| b.weight), Some(3.0));
    }

    #[test]
    fn backend_addresses_need_a_restart_but_weights_reload() {
        let old = parse("backend_weight1 = 1\n");
        let mut new = parse("backend_hostname1 = 'elsewhere'\nbackend_weight1 = 0\n");
        let changed = keep_restart_only(&old, &mut new);
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(new.backend(1).map(|b| b.hostname.as_str()), Some("b"));
        assert_eq!(new.backend(1).map(|b| b.weight), Some(0.0));
    }

    #[test]
    fn fingerprint_changes_with_content_and_presence() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgpool.conf");
        let files = vec![f.clone()];
        let missing = fingerprint(&files);
        std::fs::write(&f, "a").unwrap();
        let a = fingerprint(&files);
        std::fs::write(&f, "b").unwrap();
        assert_ne!(missing, a);
        assert_ne!(a, fingerprint(&files));
    }
}
