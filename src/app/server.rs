//! The HTTP server under the router, with the limits that keep one slow or
//! greedy client from hurting the others: a deadline for each request's
//! headers (idle connections included), a deadline for the whole request, a
//! cap on requests in progress and on open connections, and a body limit
//! checked before the body is read. Each listener gets its own limits, so a
//! busy console never takes callbacks' slots.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::Service;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::ServerConfig;

/// One listener's limits (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub max_connections: usize,
    pub max_body_bytes: usize,
}

impl From<&ServerConfig> for Limits {
    fn from(server: &ServerConfig) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(server.header_read_timeout_secs),
            request_timeout: Duration::from_secs(server.request_timeout_secs),
            max_concurrent_requests: server.max_concurrent_requests,
            max_connections: server.max_connections,
            max_body_bytes: server.max_body_bytes,
        }
    }
}

/// Serves `router` on `listener` until `stop`, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let router = limited(router, &limits);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        // At the cap we stop accepting: new connections wait in the kernel's queue.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit?,
            () = stop.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        // The peer address feeds the console's per-IP login throttling.
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            router.clone().call(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The per-request limits around the router; the outermost deadline also
/// covers the wait for a slot.
fn limited(router: Router, limits: &Limits) -> Router {
    let slots = Arc::new(Semaphore::new(limits.max_concurrent_requests));
    router
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let slots = slots.clone();
            async move {
                match slots.acquire_owned().await {
                    Ok(_slot) => next.run(request).await,
                    Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                }
            }
        }))
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
}
