//! Logging as Pgpool-II users read it: `log_min_messages` sets the level,
//! `log_line_prefix` starts each line (`%m: %a pid %p: ` by default), the level is spelled
//! `LOG:`/`WARNING:`/`ERROR:`/`DEBUG:`; `log_format = json` (pgpool-rs) writes one JSON
//! object per line for log pipelines. `PGPOOL_LOG` (an `EnvFilter` directive) overrides
//! the level, `-d` makes it `debug`.
//!
//! Logging starts before the configuration is read (so what reading it says is kept) and
//! is switched to the configured form once it is, and again at every reload
//! (`log_format` needs a restart, as every start-only parameter).

use std::fmt::{self, Write as _};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::Config;

mod entry;
use entry::SkipEntry;

/// The subscriber the format layer sits on: the registry under the (reloadable) level filter.
type Filtered =
    tracing_subscriber::layer::Layered<SkipEntry<reload::Layer<EnvFilter, Registry>>, Registry>;
type BoxedLayer = Box<dyn Layer<Filtered> + Send + Sync>;

/// Switches the process's logging to what the configuration says. Filter and format are
/// reloaded apart: tracing cannot reload a layer that carries its own filter.
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    format: reload::Handle<BoxedLayer, Filtered>,
    /// `-d`: debug output whatever the configuration says.
    debug: bool,
}

/// What the configuration says about logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// An `EnvFilter` directive.
    pub filter: String,
    pub json: bool,
    pub line_prefix: String,
}

impl LogSettings {
    /// Before the configuration is read: `info` (`debug` with `-d`), Pgpool-II's prefix.
    pub fn initial(debug: bool) -> LogSettings {
        LogSettings {
            filter: if debug { "debug" } else { "info" }.to_string(),
            json: false,
            line_prefix: "%m: %a pid %p: ".to_string(),
        }
    }

    pub fn from_config(cfg: &Config, debug: bool) -> LogSettings {
        LogSettings {
            filter: if debug {
                "debug".to_string()
            } else {
                level_for(&cfg.log_min_messages).to_string()
            },
            json: cfg.log_format == "json",
            line_prefix: cfg.log_line_prefix.clone(),
        }
    }
}

/// `log_min_messages` as a tracing level. Pgpool-II's ordering is PostgreSQL's, where `LOG`
/// ranks above `ERROR`: our `info` events are its `LOG` lines, so they pass at every level
/// up to `log` and only `fatal`/`panic` leave errors alone.
pub fn level_for(log_min_messages: &str) -> &'static str {
    match log_min_messages.to_ascii_lowercase().as_str() {
        "debug5" | "debug4" => "trace",
        "debug3" | "debug2" | "debug1" => "debug",
        "fatal" | "panic" => "error",
        _ => "info",
    }
}

fn filter(settings: &LogSettings) -> EnvFilter {
    std::env::var("PGPOOL_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| {
            EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"))
        })
}

fn format(settings: &LogSettings) -> BoxedLayer {
    let base = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    if settings.json {
        base.json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        base.event_format(PgpoolFormat {
            prefix: settings.line_prefix.clone(),
        })
        .boxed()
    }
}

/// Installs the process's logger (once, at start).
/// `debug` is `-d`.
pub fn init(debug: bool) -> LogHandle {
    let settings = LogSettings::initial(debug);
    let (filter, filter_handle) = reload::Layer::new(filter(&settings));
    let (format, format_handle) = reload::Layer::new(format(&settings));
    // Only a `PGPOOL_LOG` directive can scope a level to a span (see `entry`).
    let span_directives = std::env::var_os("PGPOOL_LOG").is_some();
    tracing_subscriber::registry()
        .with(SkipEntry {
            inner: filter,
            skip: !span_directives,
        })
        .with(SkipEntry {
            inner: format,
            skip: true,
        })
        .init();
    LogHandle {
        filter: filter_handle,
        format: format_handle,
        debug,
    }
}

impl LogHandle {
    /// Logs as `cfg` says (at start, and on every reload).
    pub fn apply_config(&self, cfg: &Config) {
        self.apply(&LogSettings::from_config(cfg, self.debug));
    }

    fn apply(&self, settings: &LogSettings) {
        let filtered = self.filter.reload(filter(settings));
        let formatted = self.format.reload(format(settings));
        if let Err(e) = filtered.and(formatted) {
            tracing::warn!("could not apply the logging settings: {e}");
        }
    }
}

/// Pgpool-II's line: `<log_line_prefix><LEVEL>:  <message> <fields>`, the session's client,
/// user and database at the end.
struct PgpoolFormat {
    prefix: String,
}

/// The fields of the session span around an event (`client`, `user`, `database`).
#[derive(Default)]
struct SessionFields {
    all: String,
    user: String,
    database: String,
}

impl SessionFields {
    fn of<S, N>(ctx: &FmtContext<'_, S, N>) -> SessionFields
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        let mut out = SessionFields::default();
        let Some(scope) = ctx.event_scope() else {
            return out;
        };
        for span in scope.from_root() {
            let ext = span.extensions();
            let Some(fields) = ext.get::<FormattedFields<N>>() else {
                continue;
            };
            if !out.all.is_empty() && !fields.is_empty() {
                out.all.push(' ');
            }
            out.all.push_str(fields);
            for pair in fields.split(' ') {
                let Some((k, v)) = pair.split_once('=') else {
                    continue;
                };
                let v = v.trim_matches('"').to_string();
                match k {
                    "user" => out.user = v,
                    "database" => out.database = v,
                    _ => {}
                }
            }
        }
        out
    }
}

/// `log_line_prefix` escapes: `%m` time with ms, `%t` time, `%p` process id, `%a`
/// application (`pgpool`), `%u` user, `%d` database, `%l` empty, `%%`; others are kept.
pub fn render_prefix(prefix: &str, user: &str, database: &str, now: chrono_like::Now) -> String {
    let mut out = String::new();
    let mut chars = prefix.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('m') => out.push_str(&now.millis),
            Some('t') => out.push_str(&now.seconds),
            Some('p') => {
                let _ = write!(out, "{}", std::process::id());
            }
            Some('a') => out.push_str("pgpool"),
            Some('u') => out.push_str(user),
            Some('d') => out.push_str(database),
            Some('l') => {}
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Pgpool-II's local time forms: the log prefixes' (formatted once per line) and the
/// admin views'.
pub(crate) mod chrono_like {
    use std::time::SystemTime;

    pub struct Now {
        pub millis: String,
        pub seconds: String,
    }

    /// Pgpool-II's timestamp: local time `YYYY-MM-DD HH:MM:SS`.
    pub fn timestamp(t: SystemTime) -> String {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()) as libc::time_t;
        // SAFETY: localtime_r only writes into the `tm` we own; a zeroed `tm` is a valid value.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
        if !ok {
            return String::new();
        }
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        )
    }

    impl Now {
        pub fn at(t: SystemTime) -> Now {
            let seconds = timestamp(t);
            let ms = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_millis());
            Now {
                millis: format!("{seconds}.{ms:03}"),
                seconds,
            }
        }
    }
}

fn level_word(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "LOG",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

impl<S, N> FormatEvent<S, N> for PgpoolFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let session = SessionFields::of(ctx);
        let now = chrono_like::Now::at(std::time::SystemTime::now());
        let prefix = render_prefix(&self.prefix, &session.user, &session.database, now);
        write!(
            writer,
            "{prefix}{}:  ",
            level_word(event.metadata().level())
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        if !session.all.is_empty() {
            write!(writer, " [{}]", session.all)?;
        }
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_min_messages_maps_to_levels_with_log_above_error() {
        let cases = [
            ("debug5", "trace"),
            ("DEBUG1", "debug"),
            ("info", "info"),
            ("warning", "info"),
            ("error", "info"),
            ("log", "info"),
            ("fatal", "error"),
            ("panic", "error"),
        ];
        for (v, want) in cases {
            assert_eq!(level_for(v), want, "{v}");
        }
    }

    #[test]
    fn prefixes_expand_pgpool_escapes() {
        let now = || chrono_like::Now {
            millis: "2026-01-02 03:04:05.678".into(),
            seconds: "2026-01-02 03:04:05".into(),
        };
        let pid = std::process::id();
        let cases = [
            (
                "%m: %a pid %p: ",
                format!("2026-01-02 03:04:05.678: pgpool pid {pid}: "),
            ),
            (
                "%t [%u@%d] ",
                "2026-01-02 03:04:05 [alice@shop] ".to_string(),
            ),
            ("100%% %x%l%", "100% %x%".to_string()),
        ];
        for (prefix, want) in cases {
            assert_eq!(
                render_prefix(prefix, "alice", "shop", now()),
                want,
                "{prefix}"
            );
        }
    }
}
