//! The archive puller's counters and its lag, in their own registry that
//! [`super::scrape`] appends.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

pub(super) struct ArchiveMetrics {
    pub(super) registry: Registry,
    records: Family<OutcomeLabels, Counter>,
    lag: Gauge,
}

pub(super) static ARCHIVE: LazyLock<ArchiveMetrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("qunyun_archive");
    let records = Family::<OutcomeLabels, Counter>::default();
    registry.register(
        "records",
        "Message-archive records pulled, decrypted, or failed to decrypt (kept with the reason)",
        records.clone(),
    );
    for outcome in ["pulled", "decrypted", "failed"] {
        let _ = records.get_or_create(&OutcomeLabels { outcome });
    }
    let lag = Gauge::default();
    registry.register_with_unit(
        "lag",
        "Time since a pull last reached the archive's end (WeCom keeps 5 days)",
        Unit::Seconds,
        lag.clone(),
    );
    ArchiveMetrics {
        registry,
        records,
        lag,
    }
});

/// One page stored: `pulled` records, of which `decrypted` and `failed`.
pub fn archive_page(pulled: usize, decrypted: usize, failed: usize) {
    for (outcome, n) in [
        ("pulled", pulled),
        ("decrypted", decrypted),
        ("failed", failed),
    ] {
        ARCHIVE
            .records
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(n as u64);
    }
}

/// Seconds since the archive was last read to its end.
pub fn archive_lag(seconds: i64) {
    ARCHIVE.lag.set(seconds.max(0));
}
