//! `POST /ingest/messages`: normalized group messages from a message-archive
//! (会话存档) puller, which runs Tencent's closed SDK outside qunyun. A batch is
//! signed with HMAC-SHA256 over `<timestamp>.<raw body>` (`X-Qunyun-Timestamp:
//! <unix seconds>`, `X-Qunyun-Signature: <hex>`); a batch stamped more than
//! [`TIMESTAMP_WINDOW_SECS`] from our clock is refused, so a captured request
//! cannot be replayed later. Each message has a unique id, and the whole batch
//! lands in the inbox in one transaction; a re-posted batch adds nothing.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{SqliteConnection, SqlitePool};

use crate::clock::SharedClock;
use crate::config::Secret;
use crate::error::AppError;
use crate::store::inbox;
use crate::store::inbox_writer::{InboxRecord, InboxWriter};

/// Largest batch body accepted.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Most messages in one batch.
pub const MAX_BATCH_MESSAGES: usize = 1000;
pub const SIGNATURE_HEADER: &str = "x-qunyun-signature";
pub const TIMESTAMP_HEADER: &str = "x-qunyun-timestamp";
/// How far a batch's timestamp may be from our clock: the puller signs just
/// before it posts, so this only has to cover clock skew and a slow upload.
pub const TIMESTAMP_WINDOW_SECS: u64 = 300;

/// One normalized message from the archive ingest endpoint (`POST /ingest/messages`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IngestMessage {
    /// Unique per message (the archive's msgid): the inbox dedupe key.
    pub message_id: String,
    pub chat_id: Option<String>,
    pub sender: String,
    pub text: String,
    /// Unix seconds.
    pub sent_at: i64,
    /// The archive's `msgtype` ("text", "image", …); absent means text. An
    /// image's `text` is empty (or its caption): 晒单 rewards count images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgtype: Option<String>,
}

/// Stores a batch of archived messages in the inbox (duplicates are ignored).
/// The HTTP handler verifies the batch's HMAC before calling this.
pub async fn ingest_messages(
    conn: &mut SqliteConnection,
    messages: &[IngestMessage],
    received_at: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let mut inserted = 0;
    for record in inbox_records(messages, received_at)? {
        if let inbox::Inserted::New(_) = inbox::insert_event(conn, &record.as_new()).await? {
            inserted += 1;
        }
    }
    Ok(inserted)
}

/// The inbox rows for a batch, in order (what the handler hands the inbox writer).
fn inbox_records(
    messages: &[IngestMessage],
    received_at: DateTime<Utc>,
) -> anyhow::Result<Vec<InboxRecord>> {
    messages
        .iter()
        .map(|message| {
            Ok(InboxRecord {
                source: "ingest".to_owned(),
                kind: inbox::InboxKind::IngestMessage,
                dedupe_key: format!("archive:{}", message.message_id),
                received_at: received_at.timestamp(),
                event_json: serde_json::to_string(message)?,
                chat_id: message.chat_id.clone(),
            })
        })
        .collect()
}

/// Checks the ingest batch signature: hex HMAC-SHA256 of `<timestamp>.<raw body>`.
pub fn verify_ingest_signature(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature_hex: &str,
) -> bool {
    use hmac::{Hmac, Mac};
    let Ok(expected) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The hex signature a puller sends for `body` stamped `timestamp`.
pub fn sign_ingest_batch(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[derive(Clone)]
pub struct IngestState {
    pub pool: SqlitePool,
    pub clock: SharedClock,
    pub secret: Secret,
    /// Group commit: the batch is durable before we answer.
    pub inbox: InboxWriter,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    messages: Vec<IngestMessage>,
}

#[derive(Debug, Serialize)]
struct Accepted {
    accepted: usize,
    duplicates: usize,
}

pub fn router(state: IngestState) -> Router {
    Router::new()
        .route("/ingest/messages", post(ingest))
        .route("/ingest/orders", post(ingest_orders))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .with_state(state)
}

async fn ingest(
    State(state): State<IngestState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Accepted>, AppError> {
    check_signed(&state, &headers, &body)?;
    let batch: Batch = serde_json::from_slice(&body)
        .map_err(|e| AppError::bad_request(format!("batch: {}", describe_json_error(&e))))?;
    validate(&batch.messages)?;
    // Durable (group commit) before we answer; all of the batch or none of it.
    let records = inbox_records(&batch.messages, state.clock.now()).map_err(AppError::Internal)?;
    let accepted = state
        .inbox
        .write(records)
        .await
        .map_err(|e| AppError::Internal(e.into()))?
        .iter()
        .filter(|row| matches!(row, inbox::Inserted::New(_)))
        .count();
    tracing::info!(
        accepted,
        total = batch.messages.len(),
        "ingest batch stored"
    );
    Ok(Json(Accepted {
        accepted,
        duplicates: batch.messages.len() - accepted,
    }))
}

/// Refuses a batch that is not signed with our secret or is stamped outside
/// the window (`/ingest/messages` and `/ingest/orders` alike).
fn check_signed(state: &IngestState, headers: &HeaderMap, body: &[u8]) -> Result<(), AppError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signature = header(SIGNATURE_HEADER).ok_or(AppError::Unauthorized)?;
    let timestamp = header(TIMESTAMP_HEADER).ok_or(AppError::Unauthorized)?;
    if !verify_ingest_signature(state.secret.expose().as_bytes(), timestamp, body, signature) {
        return Err(AppError::Unauthorized);
    }
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| AppError::bad_request("X-Qunyun-Timestamp: not unix seconds"))?;
    if state.clock.now().timestamp().abs_diff(sent) > TIMESTAMP_WINDOW_SECS {
        return Err(AppError::bad_request(format!(
            "X-Qunyun-Timestamp: more than {TIMESTAMP_WINDOW_SECS} s from the server's clock"
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderBatch {
    orders: Vec<crate::ops::orders::OrderInput>,
}

/// `POST /ingest/orders`: a shop system's signed batch of orders (amounts in
/// fen, refunds negative). Known members' orders are stored at once, a
/// repeated order id counts as a duplicate, and each refused order comes
/// back with its index and reason.
async fn ingest_orders(
    State(state): State<IngestState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<crate::ops::orders::Imported>, AppError> {
    check_signed(&state, &headers, &body)?;
    let batch: OrderBatch = serde_json::from_slice(&body).map_err(|e| {
        AppError::bad_request(format!(
            "batch: not {{\"orders\": [{{member, order_id, amount, paid_at}}]}} \
             (line {} column {})",
            e.line(),
            e.column()
        ))
    })?;
    if batch.orders.is_empty() || batch.orders.len() > MAX_BATCH_MESSAGES {
        return Err(AppError::bad_request(format!(
            "orders: 1 to {MAX_BATCH_MESSAGES} per batch"
        )));
    }
    let ops = crate::ops::Ops::over(state.pool.clone());
    let done = crate::ops::orders::ingest(&ops, state.clock.now(), &batch.orders)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?;
    tracing::info!(
        accepted = done.accepted,
        duplicates = done.duplicates,
        rejected = done.rejected.len(),
        "order batch stored"
    );
    Ok(Json(done))
}

fn validate(messages: &[IngestMessage]) -> Result<(), AppError> {
    if messages.is_empty() {
        return Err(AppError::bad_request("messages: must not be empty"));
    }
    if messages.len() > MAX_BATCH_MESSAGES {
        return Err(AppError::bad_request(format!(
            "messages: at most {MAX_BATCH_MESSAGES} per batch"
        )));
    }
    for (i, message) in messages.iter().enumerate() {
        let field = |name: &str, reason: &str| {
            Err(AppError::bad_request(format!(
                "messages[{i}].{name}: {reason}"
            )))
        };
        if message.message_id.trim().is_empty() || message.message_id.len() > 128 {
            return field("message_id", "must be 1 to 128 characters");
        }
        if message.sender.trim().is_empty() || message.sender.len() > 128 {
            return field("sender", "must be 1 to 128 characters");
        }
        if message.text.chars().count() > 20_000 {
            return field("text", "longer than 20000 characters");
        }
        if message.sent_at <= 0 {
            return field("sent_at", "must be unix seconds");
        }
    }
    Ok(())
}

/// The position and category of a JSON error, without echoing the input.
fn describe_json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match error.classify() {
        Category::Syntax | Category::Eof => "not valid JSON",
        Category::Data => {
            "wrong shape (expected {\"messages\": [{message_id, chat_id, sender, text, sent_at}]})"
        }
        Category::Io => "unreadable",
    };
    format!("{what} at line {} column {}", error.line(), error.column())
}
