//! `GET /metrics` and the layer that counts callback answers.
//!
//! Who may scrape: with `[metrics] token` set, only a request carrying
//! `Authorization: Bearer <token>`; without one, anyone if `[metrics] public =
//! true`, else only clients on the loopback interface (a Prometheus on the same
//! host). Behind a reverse proxy on the same host every request comes from
//! loopback: set a token there.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use sqlx::SqlitePool;
use subtle::ConstantTimeEq;

use crate::clock::SharedClock;
use crate::config::Secret;

/// Who may read `/metrics` (`[metrics]` in the configuration).
#[derive(Clone, Debug, Default)]
pub struct MetricsAccess {
    pub token: Option<Secret>,
    pub public: bool,
}

#[derive(Clone)]
struct MetricsState {
    pool: SqlitePool,
    clock: SharedClock,
    access: Arc<MetricsAccess>,
}

/// `GET /metrics` over the service's database.
pub fn router(pool: SqlitePool, clock: SharedClock, access: MetricsAccess) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(MetricsState {
            pool,
            clock,
            access: Arc::new(access),
        })
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn serve_metrics(
    State(state): State<MetricsState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    if let Err(refusal) = allowed(&state.access, peer, &headers) {
        return refusal.into_response();
    }
    let text = match state.pool.acquire().await {
        Ok(mut conn) => super::scrape(&mut conn, state.clock.now().timestamp()).await,
        Err(error) => Err(error.into()),
    };
    match text {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "metrics scrape failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n").into_response()
        }
    }
}

fn allowed(
    access: &MetricsAccess,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, &'static str)> {
    if let Some(token) = &access.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let matches: bool = presented.as_bytes().ct_eq(token.expose().as_bytes()).into();
        return if matches {
            Ok(())
        } else {
            Err((
                StatusCode::UNAUTHORIZED,
                "metrics: a bearer token is required\n",
            ))
        };
    }
    if access.public || peer.is_some_and(|addr| addr.ip().is_loopback()) {
        return Ok(());
    }
    Err((
        StatusCode::FORBIDDEN,
        "metrics: only served to loopback clients; set [metrics] token or public = true\n",
    ))
}

/// Counts every answer of the callback and ingest routes by endpoint and
/// outcome. `endpoints` are the configured `app:<name>` and `bot:<name>`; any
/// other name in a path is counted as `unknown`, so requests cannot add series.
pub async fn track_callbacks(
    State(endpoints): State<Arc<HashSet<String>>>,
    request: Request,
    next: Next,
) -> Response {
    let endpoint = endpoint_of(request.uri().path(), &endpoints);
    let started = Instant::now();
    let response = next.run(request).await;
    super::callback_answered(
        endpoint,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

fn endpoint_of(path: &str, endpoints: &HashSet<String>) -> String {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let named = match segments.as_slice() {
        ["wecom", "apps", name, "callback"] => format!("app:{name}"),
        ["wecom", "bots", name, "callback"] => format!("bot:{name}"),
        ["ingest", ..] => return "ingest".to_owned(),
        _ => return "unknown".to_owned(),
    };
    if endpoints.contains(&named) {
        named
    } else {
        "unknown".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(token: Option<&str>, public: bool) -> MetricsAccess {
        MetricsAccess {
            token: token.map(Secret::new),
            public,
        }
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn a_token_is_required_from_everyone_once_configured() {
        let loopback: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let with_token = access(Some("scrape-secret"), false);
        assert!(allowed(&with_token, Some(loopback), &HeaderMap::new()).is_err());
        assert!(allowed(&with_token, Some(remote), &bearer("wrong")).is_err());
        assert!(allowed(&with_token, Some(remote), &bearer("scrape-secret")).is_ok());
    }

    #[test]
    fn without_a_token_only_loopback_unless_public() {
        let loopback: SocketAddr = "[::1]:5000".parse().unwrap();
        let remote: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let closed = access(None, false);
        assert!(allowed(&closed, Some(loopback), &HeaderMap::new()).is_ok());
        assert_eq!(
            allowed(&closed, Some(remote), &HeaderMap::new())
                .unwrap_err()
                .0,
            StatusCode::FORBIDDEN
        );
        assert!(allowed(&closed, None, &HeaderMap::new()).is_err());
        assert!(allowed(&access(None, true), Some(remote), &HeaderMap::new()).is_ok());
    }

    #[test]
    fn unknown_endpoint_names_share_one_series() {
        let endpoints: HashSet<String> = ["app:main".to_owned()].into();
        assert_eq!(
            endpoint_of("/wecom/apps/main/callback", &endpoints),
            "app:main"
        );
        assert_eq!(
            endpoint_of("/wecom/apps/x9f3/callback", &endpoints),
            "unknown"
        );
        assert_eq!(endpoint_of("/ingest/messages", &endpoints), "ingest");
    }
}
