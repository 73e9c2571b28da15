//! The callback endpoints WeCom calls: `GET` proves we own the URL, `POST` delivers
//! events. A delivery is verified, decrypted, parsed and committed to the inbox
//! before we answer 200 with an empty body; a redelivery hits the dedupe key and
//! is answered 200 without a second row. Rules run later, never inline.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use percent_encoding::percent_decode_str;
use sqlx::SqlitePool;

use crate::clock::SharedClock;
use crate::error::AppError;
use crate::store::inbox::{self, Inserted};
use crate::store::inbox_writer::{InboxRecord, InboxWriter};
use crate::wecom::crypto::{CryptoError, MsgCrypt};
use crate::wecom::message::{self, Event};

/// Largest body we read; WeCom's envelopes are a few KiB.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Which envelope and plaintext format an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// Self-built app: XML envelope, XML plaintext, receive id = CorpID.
    App,
    /// Smart bot in API mode: JSON envelope, JSON plaintext, receive id = "".
    Bot,
}

impl EndpointKind {
    fn source_prefix(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Bot => "bot",
        }
    }
}

#[derive(Clone)]
pub struct CallbackState {
    pub pool: SqlitePool,
    pub clock: SharedClock,
    pub apps: Arc<HashMap<String, MsgCrypt>>,
    pub bots: Arc<HashMap<String, MsgCrypt>>,
    /// Refuse deliveries whose timestamp is further than this from now; `None` = off.
    pub timestamp_window_secs: Option<u64>,
    /// Group commit of accepted events (durable before the 200).
    pub inbox: InboxWriter,
    /// The service's active rule set (card clicks decide under it).
    pub rules: crate::active_rules::ActiveRules,
}

impl CallbackState {
    fn endpoint(&self, kind: EndpointKind, name: &str) -> Result<&MsgCrypt, AppError> {
        let endpoints = match kind {
            EndpointKind::App => &self.apps,
            EndpointKind::Bot => &self.bots,
        };
        endpoints.get(name).ok_or(AppError::NotFound)
    }
}

pub fn router(state: CallbackState) -> Router {
    Router::new()
        .route(
            "/wecom/apps/{name}/callback",
            get(verify_app_url).post(receive_app_event),
        )
        .route(
            "/wecom/bots/{name}/callback",
            get(verify_bot_url).post(receive_bot_event),
        )
        // One Arc for the whole state: the extractor clones it for every request,
        // and one reference count is cheaper than one per field.
        .with_state(Arc::new(state))
}

async fn verify_app_url(
    state: State<Arc<CallbackState>>,
    name: Path<String>,
    uri: Uri,
) -> Result<Response, AppError> {
    verify_url(&state, EndpointKind::App, &name, &uri)
}

async fn verify_bot_url(
    state: State<Arc<CallbackState>>,
    name: Path<String>,
    uri: Uri,
) -> Result<Response, AppError> {
    verify_url(&state, EndpointKind::Bot, &name, &uri)
}

async fn receive_app_event(
    state: State<Arc<CallbackState>>,
    name: Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, AppError> {
    receive(&state, EndpointKind::App, &name, &uri, &headers, body).await
}

async fn receive_bot_event(
    state: State<Arc<CallbackState>>,
    name: Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    receive_answering(&state, EndpointKind::Bot, &name, &uri, &headers, body).await
}

/// GET: answer the decrypted `echostr`, exactly its bytes, as plain text (docs/wecom.md#url-verification).
fn verify_url(
    state: &CallbackState,
    kind: EndpointKind,
    name: &str,
    uri: &Uri,
) -> Result<Response, AppError> {
    let crypt = state.endpoint(kind, name)?;
    let query = SignedQuery::parse(uri, true)?;
    let echostr = query.echostr.as_deref().unwrap_or_default();
    state.check_timestamp(&query.timestamp)?;
    let plain = crypt
        .verify_and_decrypt(
            &query.msg_signature,
            &query.timestamp,
            &query.nonce,
            echostr,
        )
        .map_err(crypto_refusal)?;
    tracing::info!(endpoint = name, kind = ?kind, "callback URL verified");
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], plain).into_response())
}

/// POST: verify, decrypt, parse, commit to the inbox, then answer 200 with no body.
async fn receive(
    state: &CallbackState,
    kind: EndpointKind,
    name: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<StatusCode, AppError> {
    receive_answering(state, kind, name, uri, headers, body)
        .await
        .map(|response| response.status())
}

/// [`receive`], answering a template-card click (a first delivery) with the
/// encrypted passive card update (docs/wecom.md#template-cards); every other
/// delivery gets 200 with no body.
async fn receive_answering(
    state: &CallbackState,
    kind: EndpointKind,
    name: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let crypt = state.endpoint(kind, name)?;
    let query = SignedQuery::parse(uri, false)?;
    state.check_timestamp(&query.timestamp)?;
    let body = read_limited_body(headers, body).await?;
    let body =
        std::str::from_utf8(&body).map_err(|_| AppError::bad_request("body is not UTF-8"))?;

    let encrypt = match kind {
        EndpointKind::App => message::parse_xml_envelope(body).map(|envelope| envelope.encrypt),
        EndpointKind::Bot => message::parse_json_envelope(body),
    }
    .map_err(|e| AppError::bad_request(format!("envelope: {e}")))?;

    let plaintext = crypt
        .verify_and_decrypt(
            &query.msg_signature,
            &query.timestamp,
            &query.nonce,
            &encrypt,
        )
        .map_err(crypto_refusal)?;
    let event = parse_authentic(kind, name, &plaintext);

    let inserted = store_event(state, kind, name, &event, &plaintext).await?;
    match inserted {
        Inserted::New(id) => {
            tracing::info!(
                endpoint = name,
                kind = event.kind(),
                inbox_id = id,
                "event stored"
            )
        }
        Inserted::Duplicate => {
            tracing::info!(
                endpoint = name,
                kind = event.kind(),
                "duplicate delivery ignored"
            );
            return Ok(StatusCode::OK.into_response());
        }
    }
    let Some(click) = crate::card_clicks::CardClick::in_event(&event) else {
        return Ok(StatusCode::OK.into_response());
    };
    let update = crate::card_clicks::answer_or_log(
        &state.pool,
        &state.rules,
        state.clock.now(),
        &click,
        name,
    )
    .await;
    let Some(update) = update else {
        return Ok(StatusCode::OK.into_response());
    };
    let timestamp = query.timestamp.parse::<u64>().unwrap_or_default();
    let sealed = crypt.seal_json_reply(&update.body().to_string(), timestamp, &query.nonce);
    Ok(([(header::CONTENT_TYPE, "application/json")], sealed).into_response())
}

/// The event in an authentic (signed and decrypted) plaintext. One we cannot
/// parse is still WeCom's: refusing it would make WeCom retry three times and
/// then drop it, so a format change would go unnoticed. It is kept verbatim as
/// an `unknown` event and a warning is logged.
fn parse_authentic(kind: EndpointKind, name: &str, plaintext: &[u8]) -> Event {
    let parsed = match std::str::from_utf8(plaintext) {
        Ok(text) => match kind {
            EndpointKind::App => message::parse_app_xml(text),
            EndpointKind::Bot => message::parse_bot_json(text),
        }
        .map_err(|e| e.to_string()),
        Err(_) => Err("not UTF-8".to_owned()),
    };
    parsed.unwrap_or_else(|reason| {
        crate::metrics::callback_unparsed();
        if let Some(suppressed) = WARNINGS.allow() {
            tracing::warn!(
                endpoint = name,
                kind = ?kind,
                reason,
                suppressed,
                "authentic callback could not be parsed; stored as an unknown event"
            );
        }
        Event::Unknown {
            msg_type: None,
            event: None,
            raw: String::from_utf8_lossy(plaintext).into_owned(),
        }
    })
}

/// Refusals and parse failures are logged at warn, but at most once per
/// [`WARN_INTERVAL`]: a flood of forged deliveries must not flood the log.
static WARNINGS: WarnLimiter = WarnLimiter::new();

const WARN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

struct WarnLimiter {
    /// When the last warning was logged, and how many were skipped since.
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl WarnLimiter {
    const fn new() -> Self {
        Self {
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// `Some(skipped since the last one)` when a warning may be logged now.
    fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < WARN_INTERVAL => {
                state.1 += 1;
                None
            }
            _ => {
                let skipped = state.1;
                *state = (Some(now), 0);
                Some(skipped)
            }
        }
    }
}

async fn store_event(
    state: &CallbackState,
    kind: EndpointKind,
    name: &str,
    event: &Event,
    plaintext: &[u8],
) -> Result<Inserted, AppError> {
    let source = format!("{}:{name}", kind.source_prefix());
    let dedupe_key = format!("{source}:{}", event.dedupe_key(plaintext));
    let event_json = serde_json::to_string(event)
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("serialising event")))?;
    // Group commit: answered once the row (or its earlier copy) is durable.
    state
        .inbox
        .write_one(InboxRecord {
            source,
            kind: inbox::InboxKind::of(event),
            dedupe_key,
            received_at: state.clock.now().timestamp(),
            event_json,
            chat_id: event.chat_id().map(str::to_owned),
        })
        .await
        .map_err(|e| AppError::Internal(e.into()))
}

impl CallbackState {
    /// The timestamp must be unix seconds (always) and within the window (when on).
    fn check_timestamp(&self, timestamp: &str) -> Result<(), AppError> {
        let sent: i64 = timestamp
            .parse()
            .map_err(|_| refused("timestamp: not a number"))?;
        let Some(window) = self.timestamp_window_secs else {
            return Ok(());
        };
        let now = self.clock.now().timestamp();
        if now.abs_diff(sent) > window {
            return Err(refused("timestamp: outside the accepted window"));
        }
        Ok(())
    }
}

/// Reads the body, refusing anything over [`MAX_BODY_BYTES`] without buffering it all.
async fn read_limited_body(headers: &HeaderMap, body: Body) -> Result<Bytes, AppError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(AppError::PayloadTooLarge);
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| AppError::PayloadTooLarge)
}

/// A 400 for a delivery we will not take, logged at warn (rate-limited).
fn refused(reason: &'static str) -> AppError {
    if let Some(suppressed) = WARNINGS.allow() {
        tracing::warn!(reason, suppressed, "callback refused");
    }
    AppError::bad_request(reason)
}

/// Bad signatures are 401; anything else wrong with the ciphertext is 400.
fn crypto_refusal(error: CryptoError) -> AppError {
    if let Some(suppressed) = WARNINGS.allow() {
        tracing::warn!(
            code = error.code(),
            suppressed,
            "callback refused by crypto"
        );
    }
    match error {
        CryptoError::BadSignature => AppError::Unauthorized,
        other => AppError::bad_request(format!("encrypted payload rejected ({})", other.code())),
    }
}

/// The signed query parameters, each percent-decoded exactly once (docs/wecom.md#query-decoding):
/// `+` stays `+`, `%2B` becomes `+`.
#[derive(Debug)]
struct SignedQuery {
    msg_signature: String,
    timestamp: String,
    nonce: String,
    echostr: Option<String>,
}

impl SignedQuery {
    fn parse(uri: &Uri, needs_echostr: bool) -> Result<Self, AppError> {
        let mut msg_signature = None;
        let mut timestamp = None;
        let mut nonce = None;
        let mut echostr = None;
        for pair in uri.query().unwrap_or_default().split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "msg_signature" => &mut msg_signature,
                "timestamp" => &mut timestamp,
                "nonce" => &mut nonce,
                "echostr" => &mut echostr,
                _ => continue,
            };
            let decoded = percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| AppError::bad_request(format!("{key}: not valid UTF-8")))?;
            *slot = Some(decoded.into_owned());
        }
        let required = |value: Option<String>, name: &str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| AppError::bad_request(format!("{name}: missing query parameter")))
        };
        let query = Self {
            msg_signature: required(msg_signature, "msg_signature")?,
            timestamp: required(timestamp, "timestamp")?,
            nonce: required(nonce, "nonce")?,
            echostr: if needs_echostr {
                Some(required(echostr, "echostr")?)
            } else {
                None
            },
        };
        if query.msg_signature.len() != 40 {
            return Err(AppError::Unauthorized);
        }
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded_once_and_plus_is_kept() {
        let uri: Uri = "/x?msg_signature=0123456789012345678901234567890123456789&timestamp=1&nonce=2&echostr=a%2Bb%2Fc%3D+d"
            .parse()
            .unwrap();
        let query = SignedQuery::parse(&uri, true).unwrap();
        assert_eq!(query.echostr.as_deref(), Some("a+b/c=+d"));
    }

    #[test]
    fn missing_parameters_are_named() {
        let uri: Uri = "/x?timestamp=1&nonce=2".parse().unwrap();
        let err = SignedQuery::parse(&uri, false).unwrap_err();
        assert!(err.to_string().contains("msg_signature"));
    }
}
