//! The PCP commands (spec 8.4) after login. Commands pgpool-rs cannot honour (attach,
//! detach, promote, recovery, watchdog) get an ERROR at once, never silence.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::wire::{self, read_packet, Packet, PcpError};
use crate::admin::view::{epoch, nodes, NodeView};
use crate::admin::{health_check_row, pools_rows, status_items, SessionAdmin};
use crate::context::Context;
use crate::stream::Stream;

/// Serves commands until the client says `X` or goes away.
pub async fn serve(ctx: &Context, stream: &mut Stream, out: &mut BytesMut) -> Result<(), PcpError> {
    loop {
        let p = read_packet(stream).await?;
        if p.tag == b'X' {
            return Ok(());
        }
        answer(ctx, &p, out);
        stream.write_all(out).await?;
        out.clear();
    }
}

const DONE: &str = "CommandComplete";

fn answer(ctx: &Context, p: &Packet, out: &mut BytesMut) {
    match p.tag {
        b'L' => {
            let n = ctx.config().backends.len().to_string();
            wire::strings(out, b'l', &[DONE, n.as_str()]);
        }
        b'I' => node_info(ctx, p, out),
        b'H' => health_check_stats(ctx, p, out),
        b'N' => {
            let mut fields = vec![DONE.to_string()];
            let pids: Vec<String> = ctx
                .sessions
                .snapshot()
                .iter()
                .map(|s| s.pid.to_string())
                .collect();
            fields.push(pids.len().to_string());
            fields.extend(pids);
            wire::strings(out, b'n', &fields);
        }
        b'P' => proc_info(ctx, p, out),
        b'B' => pool_status(ctx, out),
        b'Z' => {
            ctx.request_reload();
            tracing::info!("configuration reload requested over PCP");
            wire::strings(out, b'z', &[DONE]);
        }
        b'T' => {
            tracing::info!("shutdown requested over PCP");
            ctx.request_shutdown();
            wire::strings(out, b't', &[DONE]);
        }
        other => {
            let what = match other {
                b'C' => "attaching a node",
                b'D' => "detaching a node",
                b'J' | b'j' => "promoting a node",
                b'O' => "online recovery",
                b'W' => "watchdog information",
                _ => "this PCP command",
            };
            wire::error(
                out,
                false,
                &format!("{what} is not supported by pgpool-rs"),
                "node state follows the Kubernetes Services; manage replication with PostgreSQL tools",
            );
        }
    }
}

/// The first string of the packet as a number.
fn id_arg(p: &Packet) -> Option<i64> {
    p.strings().first().and_then(|s| s.trim().parse().ok())
}

fn node_fields(ctx: &Context, n: &NodeView) -> Vec<String> {
    let legacy = ctx.config().pcp_protocol_version == "4.3";
    let mut f = vec![
        "NodeInfo".to_string(),
        n.hostname.clone(),
        n.port.to_string(),
        n.status_digit().to_string(),
        "0".to_string(),
        n.pg_status.to_string(),
        // The tool divides by RAND_MAX to print the normalised weight.
        format!("{:.6}", n.weight * 2147483647.0),
        if n.primary { "2" } else { "3" }.to_string(),
        n.pg_role.to_string(),
    ];
    if !legacy {
        let by_time = ctx.config().delay_threshold_by_time > 0;
        f.push(u8::from(by_time).to_string());
    }
    f.push(n.delay.to_string());
    f.push(n.replication_state.clone());
    f.push(n.replication_sync_state.clone());
    f.push(epoch(n.last_status_change).to_string());
    f
}

fn node_info(ctx: &Context, p: &Packet, out: &mut BytesMut) {
    let all = nodes(ctx);
    let id = id_arg(p).unwrap_or(i64::MIN);
    let chosen: Vec<&NodeView> = if id == -1 {
        all.iter().collect()
    } else {
        all.iter().filter(|n| n.id as i64 == id).collect()
    };
    if chosen.is_empty() {
        let arg = p.strings().first().cloned().unwrap_or_default();
        wire::error(
            out,
            false,
            "informing node info failed",
            &format!("invalid node ID : {arg}"),
        );
        return;
    }
    wire::strings(
        out,
        b'i',
        &["ArraySize".to_string(), chosen.len().to_string()],
    );
    for n in chosen {
        wire::strings(out, b'i', &node_fields(ctx, n));
    }
    wire::strings(out, b'i', &[DONE]);
}

fn health_check_stats(ctx: &Context, p: &Packet, out: &mut BytesMut) {
    let id = id_arg(p);
    match nodes(ctx).iter().find(|n| Some(n.id as i64) == id) {
        Some(n) => {
            let mut fields = vec![DONE.to_string()];
            fields.extend(health_check_row(n, &ctx.nodes.health_stats(n.index)));
            wire::strings(out, b'h', &fields);
        }
        None => {
            let arg = p.strings().first().cloned().unwrap_or_default();
            wire::error(
                out,
                false,
                "informing health check stats info failed",
                &format!("invalid node ID {arg}"),
            );
        }
    }
}

fn proc_info(ctx: &Context, p: &Packet, out: &mut BytesMut) {
    let pid = id_arg(p).unwrap_or(0);
    let filter = (pid != 0).then_some(pid as i32);
    let mut rows = pools_rows(ctx, filter);
    name_idle_sessions(ctx, &mut rows);
    if rows.is_empty() && filter.is_some() {
        wire::error(
            out,
            false,
            "informing process info failed",
            &format!("invalid process ID : {pid}"),
        );
        return;
    }
    wire::strings(
        out,
        b'p',
        &["ArraySize".to_string(), rows.len().to_string()],
    );
    for r in rows {
        let mut fields = vec!["ProcessInfo".to_string()];
        fields.extend(r);
        wire::strings(out, b'p', &fields);
    }
    wire::strings(out, b'p', &[DONE]);
}

/// A session that holds no backend connection right now (it takes one per request from the
/// cache) still has a client logged in as a user to a database; Debian's `pcp_proc_info`
/// prints only rows that name a database, so without this it would print "No process
/// information available" for every idle client.
fn name_idle_sessions(ctx: &Context, rows: &mut [Vec<String>]) {
    const PID: usize = 0;
    const DATABASE: usize = 5;
    const USER: usize = 6;
    const LOAD_BALANCE_NODE: usize = 17;
    for s in ctx.sessions.snapshot() {
        let pid = s.pid.to_string();
        let mine: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].get(PID) == Some(&pid) && rows[i].len() > LOAD_BALANCE_NODE)
            .collect();
        if mine.iter().any(|&i| !rows[i][DATABASE].is_empty()) {
            continue;
        }
        // One line per client (its load-balance node's slot), as Pgpool-II shows one
        // pool slot per client connection.
        let pick = mine
            .iter()
            .copied()
            .find(|&i| rows[i][LOAD_BALANCE_NODE] == "1")
            .or(mine.first().copied());
        if let Some(i) = pick {
            rows[i][DATABASE] = s.database.clone();
            rows[i][USER] = s.user.clone();
        }
    }
}

fn pool_status(ctx: &Context, out: &mut BytesMut) {
    let items = status_items(ctx, &SessionAdmin::default());
    let mut head = b"ArraySize\0".to_vec();
    head.extend_from_slice(&(items.len() as i32).to_be_bytes());
    wire::raw(out, b'b', &head);
    for item in items {
        let mut fields = vec!["ProcessConfig".to_string()];
        fields.extend(item);
        wire::strings(out, b'b', &fields);
    }
    wire::strings(out, b'b', &[DONE]);
}
