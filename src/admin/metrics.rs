//! `/metrics`: OpenMetrics text built at scrape time from the same counters and views the
//! SQL commands use. The `pgpool2_*` families carry pgpool2_exporter's names, labels and
//! meaning, so existing dashboards keep working without the exporter; they are typed as
//! gauges because OpenMetrics would otherwise append `_total` to the exporter's counter
//! names. The `pgpool_rs_*` families are ours.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::cmd::{BACKEND_COUNTERS, CACHE_COLUMNS, HEALTH_COUNTS};
use super::view::{nodes, NodeView};
use crate::context::Context;

type Labels = Vec<(&'static str, String)>;

/// The OpenMetrics text of every metric.
pub fn render(ctx: &Arc<Context>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProxyCollector(ctx.clone())));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!("could not encode metrics: {e}");
    }
    out
}

struct ProxyCollector(Arc<Context>);

impl fmt::Debug for ProxyCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProxyCollector")
    }
}

impl prometheus_client::collector::Collector for ProxyCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        let ctx = &self.0;
        let nodes = nodes(ctx);
        gauge(
            &mut enc,
            "pgpool2_up",
            "Whether the last scrape could query pgpool",
            &[(vec![], 1.0)],
        )?;
        exporter_node_metrics(ctx, &nodes, &mut enc)?;
        exporter_session_metrics(ctx, &mut enc)?;
        exporter_cache_metrics(&mut enc)?;
        own_metrics(ctx, &nodes, &mut enc)
    }
}

/// One gauge family; a single unlabelled series writes the bare name.
fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels, f64)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    if let [(labels, v)] = series {
        if labels.is_empty() {
            return ConstGauge::new(*v).encode(m);
        }
    }
    for (labels, v) in series {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// One counter family (the encoder appends `_total`).
fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels, u64)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn node_labels(n: &NodeView) -> Labels {
    vec![
        ("hostname", n.hostname.clone()),
        ("port", n.port.to_string()),
        ("role", n.role().to_string()),
    ]
}

/// The exporter's `status` mapping: up/waiting → 1, anything else → 0.
fn status_value(s: &str) -> f64 {
    f64::from(u8::from(matches!(s, "up" | "waiting" | "true")))
}

fn exporter_node_metrics(
    ctx: &Context,
    nodes: &[NodeView],
    enc: &mut DescriptorEncoder,
) -> fmt::Result {
    let per = |f: &dyn Fn(&NodeView) -> f64| -> Vec<(Labels, f64)> {
        nodes.iter().map(|n| (node_labels(n), f(n))).collect()
    };
    gauge(
        enc,
        "pgpool2_pool_nodes_status",
        "Backend node status (1 up/waiting)",
        &per(&|n| status_value(n.status)),
    )?;
    let selects = |n: &NodeView| ctx.stats.node(n.index).select.load(Relaxed) as f64;
    gauge(
        enc,
        "pgpool2_pool_nodes_select_cnt",
        "SELECT statements sent to the node",
        &per(&selects),
    )?;
    gauge(
        enc,
        "pgpool2_pool_nodes_replication_delay",
        "Replication delay of the node",
        &per(&|n| n.delay as f64),
    )?;
    gauge(
        enc,
        "pgpool2_pool_backend_stats_status",
        "Backend node status (1 up/waiting)",
        &per(&|n| status_value(n.status)),
    )?;
    for (col, pick) in BACKEND_COUNTERS {
        let name = format!("pgpool2_pool_backend_stats_{col}");
        let v = |n: &NodeView| pick(ctx.stats.node(n.index)).load(Relaxed) as f64;
        gauge(
            enc,
            &name,
            &format!("{col} of SHOW pool_backend_stats"),
            &per(&v),
        )?;
    }
    gauge(
        enc,
        "pgpool2_pool_health_check_stats_status",
        "Backend node status (1 up/waiting)",
        &per(&|n| status_value(n.status)),
    )?;
    for (col, count) in HEALTH_COUNTS {
        let name = format!("pgpool2_pool_health_check_stats_{col}");
        let v = |n: &NodeView| count(&ctx.nodes.health_stats(n.index)).value();
        gauge(
            enc,
            &name,
            &format!("{col} of SHOW pool_health_check_stats"),
            &per(&v),
        )?;
    }
    Ok(())
}

fn exporter_session_metrics(ctx: &Context, enc: &mut DescriptorEncoder) -> fmt::Result {
    let sessions = ctx.sessions.snapshot();
    let total = (ctx.config().num_init_children as usize).max(sessions.len()) as f64;
    let mut used: BTreeMap<(String, String), f64> = BTreeMap::new();
    for s in &sessions {
        *used
            .entry((s.user.clone(), s.database.clone()))
            .or_default() += 1.0;
    }
    gauge(
        enc,
        "pgpool2_frontend_total",
        "Number of client connection slots",
        &[(vec![], total)],
    )?;
    let series: Vec<(Labels, f64)> = used
        .iter()
        .map(|((u, d), v)| (vec![("username", u.clone()), ("database", d.clone())], *v))
        .collect();
    gauge(
        enc,
        "pgpool2_frontend_used",
        "Client sessions in use, by user and database",
        &series,
    )?;
    let ratio = if total > 0.0 {
        sessions.len() as f64 / total
    } else {
        0.0
    };
    gauge(
        enc,
        "pgpool2_frontend_used_ratio",
        "Share of client slots in use",
        &[(vec![], ratio)],
    )?;

    let rows = super::pools_rows(ctx, None);
    let col = |name: &str| {
        super::POOLS_COLUMNS
            .iter()
            .position(|c| *c == name)
            .unwrap_or(0)
    };
    let (pid, pool_id, backend_id, db, user) = (
        col("pool_pid"),
        col("pool_id"),
        col("backend_id"),
        col("database"),
        col("username"),
    );
    let backend_used = rows.iter().filter(|r| !r[user].is_empty()).count() as f64;
    let backend_total = rows.len() as f64;
    gauge(
        enc,
        "pgpool2_backend_total",
        "Backend connection slots of the sessions",
        &[(vec![], backend_total)],
    )?;
    gauge(
        enc,
        "pgpool2_backend_used",
        "Backend connection slots holding a connection",
        &[(vec![], backend_used)],
    )?;
    let ratio = if backend_total > 0.0 {
        backend_used / backend_total
    } else {
        0.0
    };
    gauge(
        enc,
        "pgpool2_backend_used_ratio",
        "Share of backend slots holding a connection",
        &[(vec![], ratio)],
    )?;
    let mut by_pid: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut used_series = Vec::new();
    for r in &rows {
        let e = by_pid.entry(r[pid].clone()).or_default();
        e.0 += 1.0;
        if !r[user].is_empty() {
            e.1 += 1.0;
            let labels = vec![
                ("pool_pid", r[pid].clone()),
                ("pool_id", r[pool_id].clone()),
                ("backend_id", r[backend_id].clone()),
                ("username", r[user].clone()),
                ("database", r[db].clone()),
            ];
            used_series.push((labels, 1.0));
        }
    }
    let totals: Vec<(Labels, f64)> = by_pid
        .iter()
        .map(|(p, (t, _))| (vec![("pool_pid", p.clone())], *t))
        .collect();
    gauge(
        enc,
        "pgpool2_backend_by_process_total",
        "Backend slots per session",
        &totals,
    )?;
    gauge(
        enc,
        "pgpool2_backend_by_process_used",
        "Backend slots in use per session",
        &used_series,
    )?;
    let ratios: Vec<(Labels, f64)> = by_pid
        .iter()
        .map(|(p, (t, u))| {
            (
                vec![("pool_pid", p.clone())],
                if *t > 0.0 { u / t } else { 0.0 },
            )
        })
        .collect();
    gauge(
        enc,
        "pgpool2_backend_by_process_used_ratio",
        "Share of a session's backend slots in use",
        &ratios,
    )
}

fn exporter_cache_metrics(enc: &mut DescriptorEncoder) -> fmt::Result {
    for col in CACHE_COLUMNS {
        let name = format!("pgpool2_pool_cache_{col}");
        gauge(
            enc,
            &name,
            "query cache (not implemented: always 0)",
            &[(vec![], 0.0)],
        )?;
    }
    Ok(())
}

fn own_metrics(ctx: &Context, nodes: &[NodeView], enc: &mut DescriptorEncoder) -> fmt::Result {
    let node = |n: usize| ("node", n.to_string());
    let routed: Vec<(Labels, u64)> = ctx
        .stats
        .routed_counts()
        .into_iter()
        .map(|(n, reason, v)| (vec![node(n), ("reason", reason.to_string())], v))
        .collect();
    counter(
        enc,
        "pgpool_rs_queries_routed",
        "Requests sent to each node, by routing reason",
        &routed,
    )?;
    let sessions = vec![
        (
            vec![("state", "active".to_string())],
            ctx.sessions.len() as f64,
        ),
        (
            vec![("state", "waiting".to_string())],
            ctx.stats.sessions_waiting.load(Relaxed) as f64,
        ),
    ];
    gauge(
        enc,
        "pgpool_rs_client_sessions",
        "Client sessions now, active or waiting for a slot",
        &sessions,
    )?;
    let primary = ctx.nodes.primary().map_or(-1.0, |p| p as f64);
    gauge(
        enc,
        "pgpool_rs_primary_node",
        "Node id writes go to (ALWAYS_PRIMARY or detected); -1 while none is known",
        &[(Vec::new(), primary)],
    )?;
    let transports = vec![
        (
            vec![("transport", "tls".to_string())],
            ctx.stats.sessions_tls.load(Relaxed),
        ),
        (
            vec![("transport", "plain".to_string())],
            ctx.stats.sessions_plain.load(Relaxed),
        ),
    ];
    counter(
        enc,
        "pgpool_rs_client_sessions_started",
        "Client sessions started, by transport",
        &transports,
    )?;
    let auth: Vec<(Labels, u64)> = ctx
        .stats
        .auth_failures()
        .into_iter()
        .map(|(r, v)| (vec![("reason", r.to_string())], v))
        .collect();
    counter(
        enc,
        "pgpool_rs_auth_failures",
        "Client authentication failures, by reason",
        &auth,
    )?;
    let mut conns = Vec::new();
    for n in nodes {
        let pool = ctx.pool.counters.get(n.index);
        let pooled = |pick: fn(&crate::backend::PoolCounters) -> &AtomicU64| {
            pool.map_or(0, |c| pick(c).load(Relaxed))
        };
        for (event, v) in [
            ("opened", pooled(|c| &c.opened)),
            ("reused", pooled(|c| &c.reused)),
            ("closed", ctx.stats.node(n.index).conns_closed.load(Relaxed)),
        ] {
            conns.push((vec![node(n.index), ("event", event.to_string())], v));
        }
    }
    counter(
        enc,
        "pgpool_rs_backend_connections",
        "Backend connections opened, reused and closed",
        &conns,
    )?;
    let mut cache = Vec::new();
    let mut cached = Vec::new();
    for n in nodes {
        if let Some(c) = ctx.pool.counters.get(n.index) {
            for (event, v) in [
                ("reset", &c.reset),
                ("reset_skipped", &c.reset_skipped),
                ("closed_dirty", &c.closed_dirty),
                ("closed_dead", &c.closed_dead),
                ("closed_expired", &c.closed_expired),
                ("closed_evicted", &c.closed_evicted),
            ] {
                cache.push((
                    vec![node(n.index), ("event", event.to_string())],
                    v.load(Relaxed),
                ));
            }
        }
        cached.push((vec![node(n.index)], ctx.pool.idle_count(n.index) as f64));
    }
    counter(
        enc,
        "pgpool_rs_connection_cache_events",
        "Connection cache: connections reset or cached without a reset (their session left no state), and closed instead of cached",
        &cache,
    )?;
    gauge(
        enc,
        "pgpool_rs_cached_connections",
        "Idle backend connections in the cache",
        &cached,
    )?;
    let mut m = enc.encode_descriptor(
        "pgpool_rs_query_duration_seconds",
        "Time from sending a request to a node to its ReadyForQuery",
        None,
        MetricType::Histogram,
    )?;
    for n in nodes {
        let labels = vec![node(n.index)];
        let (sum, count, buckets) = ctx.stats.node(n.index).latency.snapshot();
        m.encode_family(&labels)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum, count, &buckets, None,
            )?;
    }
    Ok(())
}
