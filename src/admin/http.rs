//! The metrics and health HTTP server on `metrics_listen_addresses:metrics_port`:
//! `/metrics` (OpenMetrics text), `/healthz` (the process answers) and `/readyz` (the
//! configuration is loaded, the primary accepts TCP connections, and we are not draining).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::debug;

use crate::context::Context;
use crate::listen;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds the configured addresses; empty when `metrics_port = 0`. An address that cannot be
/// bound is an error: an operator who asked for metrics should hear about it at start-up.
pub async fn bind(ctx: &Context) -> std::io::Result<Vec<TcpListener>> {
    let cfg = ctx.config();
    if cfg.metrics_port == 0 {
        return Ok(Vec::new());
    }
    listen::bind_tcp(&cfg.metrics_listen_addresses, cfg.metrics_port).await
}

/// Serves HTTP on `listeners` until the process ends.
pub async fn serve(ctx: Arc<Context>, listeners: Vec<TcpListener>) {
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        let ctx = ctx.clone();
        tasks.spawn(listen::accept_tcp(l, "metrics", move |s, _| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(route(&ctx, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc);
                if let Err(e) = conn.await {
                    debug!("metrics connection ended: {e}");
                }
            });
        }));
    }
    while tasks.join_next().await.is_some() {}
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn route(ctx: &Arc<Context>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let plain = "text/plain; charset=utf-8";
    match req.uri().path() {
        "/metrics" => text(StatusCode::OK, OPENMETRICS, super::metrics::render(ctx)),
        "/healthz" => text(StatusCode::OK, plain, "ok\n".into()),
        "/readyz" => match readiness(ctx).await {
            Ok(()) => text(StatusCode::OK, plain, "ready\n".into()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, plain, format!("{why}\n")),
        },
        "/" => text(
            StatusCode::OK,
            plain,
            "pgpool-rs: /metrics /healthz /readyz\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, plain, "not found\n".into()),
    }
}

/// Why the proxy should not get new clients now, if it should not.
async fn readiness(ctx: &Context) -> Result<(), String> {
    if ctx.is_draining() {
        return Err("draining".into());
    }
    let cfg = ctx.config();
    let Some(primary) = ctx.nodes.primary() else {
        return Err("no writable primary is known (primary search in progress)".into());
    };
    let Some(b) = cfg.backends.get(primary) else {
        return Err("no primary backend is configured".into());
    };
    let timeout = Duration::from_millis(cfg.connect_timeout.clamp(1, 2000));
    let addr = (b.hostname.as_str(), b.port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "primary {}:{} unreachable: {e}",
            b.hostname, b.port
        )),
        Err(_) => Err(format!("primary {}:{} did not answer", b.hostname, b.port)),
    }
}
