//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! Counters and histograms of things that *happen* (a callback answered, an
//! event handled, a WeCom call, a worker restart) live in one process-wide
//! [`Metrics`]: they are facts about this process, like its uptime, and the
//! code that records them (the API client, the pipeline, the supervisor) is
//! built in many places; one call at the point the thing happens
//! (`metrics::wecom_call(..)`) keeps those sites to one line each. Gauges of
//! what the database *holds* (inbox backlog, outbox rows by route and status)
//! are read from the service's own database at scrape time ([`scrape`]).
//!
//! Every name starts with `qunyun_`; label values come from code or from the
//! configuration (endpoint names), never from request input, so a caller
//! cannot grow the label space.

mod archive;
mod http;

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use sqlx::SqliteConnection;

use crate::rules::moderate::{ModerationRecord, TaskKind};
use crate::store;
use crate::wecom::api::ApiError;

pub use archive::{archive_lag, archive_page};
pub use http::{router, track_callbacks, MetricsAccess};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallbackLabels {
    /// `app:<name>`, `bot:<name>`, `ingest`, or `unknown` (no such endpoint).
    endpoint: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiCallLabels {
    /// The API path (`message/send`, `gettoken`, ...).
    endpoint: &'static str,
    /// `0`, WeCom's errcode, `http_<status>`, `timeout`, `connect`, `transport` or `decode`.
    errcode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModerationLabels {
    /// `block`, `review` or `dry_run`.
    verdict: &'static str,
    /// `exact`, a fuzzy family (`pinyin`, `homophone`, ...), `regex`, `flood`,
    /// `cross_chat`, `new_member` or `report`.
    family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboxLabels {
    route: String,
    status: String,
}

/// The process-wide counters and histograms.
struct Metrics {
    registry: Registry,
    callbacks: Family<CallbackLabels, Counter>,
    callbacks_unparsed: Counter,
    callback_seconds: Histogram,
    inbox_batch_size: Histogram,
    inbox_batch_seconds: Histogram,
    pipeline_events: Family<OutcomeLabels, Counter>,
    pipeline_latency: Histogram,
    wecom_calls: Family<ApiCallLabels, Counter>,
    token_refreshes: Family<ReasonLabels, Counter>,
    scheduler_fires: Family<OutcomeLabels, Counter>,
    moderation_decisions: Family<ModerationLabels, Counter>,
    worker_restarts: Family<WorkerLabels, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Buckets from 0.5 ms to about 16 s: a callback or a batch commit.
fn fast_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("qunyun");
        let callbacks = Family::<CallbackLabels, Counter>::default();
        registry.register(
            "callbacks",
            "Callback and ingest requests answered, by endpoint and outcome",
            callbacks.clone(),
        );
        let callbacks_unparsed = Counter::default();
        registry.register(
            "callbacks_unparsed",
            "Authentic callbacks whose plaintext did not parse, kept as unknown inbox events",
            callbacks_unparsed.clone(),
        );
        let callback_seconds = Histogram::new(fast_buckets());
        registry.register_with_unit(
            "callback_duration",
            "Time to answer a callback or ingest request (verify, decrypt, commit)",
            Unit::Seconds,
            callback_seconds.clone(),
        );
        let inbox_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "inbox_batch_size",
            "Inbox rows committed together by one group commit",
            inbox_batch_size.clone(),
        );
        let inbox_batch_seconds = Histogram::new(fast_buckets());
        registry.register_with_unit(
            "inbox_batch_duration",
            "Time to write and commit one inbox group commit",
            Unit::Seconds,
            inbox_batch_seconds.clone(),
        );
        let pipeline_events = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "pipeline_events",
            "Inbox events the pipeline handled (done), failed (retried later) or parked",
            pipeline_events.clone(),
        );
        let pipeline_latency = Histogram::new(exponential_buckets(0.5, 2.0, 14));
        registry.register_with_unit(
            "pipeline_latency",
            "From an event's arrival in the inbox to its handling by the pipeline (whole seconds)",
            Unit::Seconds,
            pipeline_latency.clone(),
        );
        let wecom_calls = Family::<ApiCallLabels, Counter>::default();
        registry.register(
            "wecom_api_calls",
            "Calls to WeCom's server API, by endpoint and errcode",
            wecom_calls.clone(),
        );
        let token_refreshes = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "wecom_token_refreshes",
            "Access tokens fetched: due (none cached, or near expiry) or rejected by WeCom",
            token_refreshes.clone(),
        );
        let scheduler_fires = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "scheduler_fires",
            "Schedule fires the scheduler handled: planned (queued), missed or quiet",
            scheduler_fires.clone(),
        );
        let moderation_decisions = Family::<ModerationLabels, Counter>::default();
        registry.register(
            "moderation_decisions",
            "Moderation decisions, by verdict and rule family",
            moderation_decisions.clone(),
        );
        let worker_restarts = Family::<WorkerLabels, Counter>::default();
        registry.register(
            "worker_restarts",
            "Background workers restarted after their task stopped",
            worker_restarts.clone(),
        );
        // Series with a fixed label set start at 0, so they are listed (and
        // `rate()` works) before the first event.
        for outcome in ["done", "failed", "parked"] {
            let _ = pipeline_events.get_or_create(&OutcomeLabels { outcome });
        }
        for outcome in ["planned", "missed", "quiet"] {
            let _ = scheduler_fires.get_or_create(&OutcomeLabels { outcome });
        }
        for reason in ["due", "rejected"] {
            let _ = token_refreshes.get_or_create(&ReasonLabels { reason });
        }
        Metrics {
            registry,
            callbacks,
            callbacks_unparsed,
            callback_seconds,
            inbox_batch_size,
            inbox_batch_seconds,
            pipeline_events,
            pipeline_latency,
            wecom_calls,
            token_refreshes,
            scheduler_fires,
            moderation_decisions,
            worker_restarts,
        }
    }
}

// ---- recording: one call at the point the thing happens ----------------

/// Lists each configured callback endpoint (`app:<name>`, `bot:<name>`) at 0
/// answers before its first callback.
pub fn callback_endpoints(endpoints: &std::collections::HashSet<String>) {
    for endpoint in endpoints {
        let _ = METRICS.callbacks.get_or_create(&CallbackLabels {
            endpoint: endpoint.clone(),
            outcome: "ok",
        });
    }
}

/// An authentic callback did not parse and was kept as an unknown event: a
/// format change on WeCom's side shows here first.
pub fn callback_unparsed() {
    METRICS.callbacks_unparsed.inc();
}

/// A callback or ingest request was answered with `status` after `seconds`.
pub fn callback_answered(endpoint: String, status: u16, seconds: f64) {
    let outcome = match status {
        200..=299 => "ok",
        400 => "bad_request",
        401 | 403 => "unauthorized",
        404 => "not_found",
        408 => "timeout",
        413 => "too_large",
        429 | 503 => "overloaded",
        500..=599 => "error",
        _ => "other",
    };
    let metrics = &*METRICS;
    metrics
        .callbacks
        .get_or_create(&CallbackLabels { endpoint, outcome })
        .inc();
    metrics.callback_seconds.observe(seconds);
}

/// One group commit wrote `size` inbox rows in `seconds` (write + fsync).
pub fn inbox_batch(size: usize, seconds: f64) {
    METRICS.inbox_batch_size.observe(size as f64);
    METRICS.inbox_batch_seconds.observe(seconds);
}

/// The pipeline committed an event received at `received_at` (unix seconds) at `now`.
pub fn event_handled(received_at: i64, now: i64) {
    let metrics = &*METRICS;
    metrics
        .pipeline_events
        .get_or_create(&OutcomeLabels { outcome: "done" })
        .inc();
    metrics
        .pipeline_latency
        .observe(now.saturating_sub(received_at).max(0) as f64);
}

/// A pipeline pass ended with `failed` events to retry and `parked` ones given up on.
pub fn events_not_handled(failed: usize, parked: usize) {
    for (outcome, count) in [("failed", failed), ("parked", parked)] {
        if count > 0 {
            METRICS
                .pipeline_events
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(count as u64);
        }
    }
}

/// Records one WeCom API call's result and hands it back unchanged.
pub fn wecom_call<T>(endpoint: &'static str, result: Result<T, ApiError>) -> Result<T, ApiError> {
    let errcode = match &result {
        Ok(_) => "0".to_owned(),
        Err(ApiError::WeCom { errcode, .. }) => errcode.to_string(),
        Err(ApiError::HttpStatus { status }) => format!("http_{status}"),
        Err(ApiError::Timeout) => "timeout".to_owned(),
        Err(ApiError::Connect(_)) => "connect".to_owned(),
        Err(ApiError::Transport(_)) => "transport".to_owned(),
        Err(ApiError::Decode(_)) => "decode".to_owned(),
        Err(ApiError::Refused(_)) => "refused".to_owned(),
    };
    METRICS
        .wecom_calls
        .get_or_create(&ApiCallLabels { endpoint, errcode })
        .inc();
    result
}

/// An access token is fetched: `due` (none cached or near expiry) or `rejected`.
pub fn token_refresh(reason: &'static str) {
    METRICS
        .token_refreshes
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

/// A scheduler pass planned, missed and held back (quiet hours) these fires.
pub fn scheduler_fires(planned: usize, missed: usize, quiet: usize) {
    for (outcome, count) in [("planned", planned), ("missed", missed), ("quiet", quiet)] {
        if count > 0 {
            METRICS
                .scheduler_fires
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(count as u64);
        }
    }
}

/// The pipeline records a moderation decision.
pub fn moderation_decision(record: &ModerationRecord) {
    let verdict = if record.dry_run {
        "dry_run"
    } else if record
        .task
        .as_ref()
        .is_some_and(|t| t.kind == TaskKind::Review)
    {
        "review"
    } else {
        "block"
    };
    METRICS
        .moderation_decisions
        .get_or_create(&ModerationLabels {
            verdict,
            family: rule_family(&record.rule).to_owned(),
        })
        .inc();
}

/// `term` → `exact`, `term:pinyin` → `pinyin`, `regex:NAME` → `regex` (the
/// name is configuration, one series per family is enough), others as they are.
fn rule_family(rule: &str) -> &str {
    match rule.split_once(':') {
        Some(("term", family)) => family,
        Some((family, _)) => family,
        None if rule == "term" => "exact",
        None => rule,
    }
}

/// The supervisor starts `worker`: its restart count is listed from 0.
pub fn worker_supervised(worker: &'static str) {
    let _ = METRICS
        .worker_restarts
        .get_or_create(&WorkerLabels { worker });
}

/// The supervisor restarts `worker`.
pub fn worker_restarted(worker: &'static str) {
    METRICS
        .worker_restarts
        .get_or_create(&WorkerLabels { worker })
        .inc();
}

// ---- exposition ----------------------------------------------------------

/// The text exposition: the process-wide metrics, then the gauges read from
/// the database now.
pub async fn scrape(conn: &mut SqliteConnection, now: i64) -> anyhow::Result<String> {
    let backlog = store::metrics::inbox_backlog(conn).await?;
    let outbox = store::metrics::outbox_counts(conn).await?;

    let mut registry = Registry::with_prefix("qunyun");
    let pending = Gauge::<i64>::default();
    pending.set(backlog.pending);
    registry.register(
        "inbox_backlog",
        "Inbox events waiting for the pipeline",
        pending,
    );
    let parked = Gauge::<i64>::default();
    parked.set(backlog.parked);
    registry.register(
        "inbox_parked",
        "Inbox events parked after failing (console → queues)",
        parked,
    );
    let age = Gauge::<i64>::default();
    age.set(backlog.oldest_received_at.map_or(0, |at| (now - at).max(0)));
    registry.register_with_unit(
        "inbox_oldest_pending_age",
        "Age of the oldest pending inbox event (0 when none)",
        Unit::Seconds,
        age,
    );
    let rows = Family::<OutboxLabels, Gauge>::default();
    for count in outbox {
        rows.get_or_create(&OutboxLabels {
            route: count.route,
            status: count.status,
        })
        .set(count.rows);
    }
    registry.register("outbox_rows", "Outbox rows by route and status", rows);
    // Kept by the connections' busy handler, which must stay a plain
    // function (no registry behind it): read here, reported as a counter.
    let busy = prometheus_client::metrics::counter::ConstCounter::new(
        store::busy::BUSY_RETRIES.load(std::sync::atomic::Ordering::Relaxed),
    );
    registry.register(
        "sqlite_busy_retries",
        "Times a database connection found the write lock held and waited",
        busy,
    );

    let mut text = String::new();
    prometheus_client::encoding::text::encode_registry(&mut text, &METRICS.registry)?;
    prometheus_client::encoding::text::encode_registry(&mut text, &registry)?;
    prometheus_client::encoding::text::encode_registry(&mut text, &archive::ARCHIVE.registry)?;
    prometheus_client::encoding::text::encode_eof(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_families_are_bounded_names() {
        assert_eq!(rule_family("term"), "exact");
        assert_eq!(rule_family("term:pinyin"), "pinyin");
        assert_eq!(rule_family("regex:phone-numbers"), "regex");
        assert_eq!(rule_family("flood"), "flood");
    }

    #[test]
    fn a_wecom_error_is_counted_under_its_errcode() {
        let _ = wecom_call::<()>(
            "unit/test",
            Err(ApiError::WeCom {
                errcode: 45009,
                errmsg: String::new(),
            }),
        );
        let count = METRICS
            .wecom_calls
            .get_or_create(&ApiCallLabels {
                endpoint: "unit/test",
                errcode: "45009".to_owned(),
            })
            .get();
        assert_eq!(count, 1);
    }
}
