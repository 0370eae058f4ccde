//! Prometheus metrics (`GET /metrics`, OpenMetrics text).
//!
//! | name | type | labels |
//! |---|---|---|
//! | `sqlsandbox_requests_total` | counter | `endpoint`, `status` |
//! | `sqlsandbox_refusals_total` | counter | `code` (stable error code) |
//! | `sqlsandbox_request_duration_seconds` | histogram | `endpoint` |
//! | `sqlsandbox_cache_hits_total`, `sqlsandbox_cache_misses_total` | counter | |
//! | `sqlsandbox_cache_entries`, `sqlsandbox_cache_bytes` | gauge | |
//! | `sqlsandbox_policy_version` | gauge | |
//! | `sqlsandbox_policy_reloads_total`, `sqlsandbox_policy_reload_failures_total` | counter | |
//! | `sqlsandbox_policy_last_reload_ok` | gauge (1 or 0) | |

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::PolicyHandle;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

type HistogramFamily = Family<EndpointLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs to about 3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The server's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    refusals: Family<CodeLabel, Counter>,
    latency: HistogramFamily,
}

/// Reads the policy handle's counters at each scrape.
#[derive(Debug)]
struct HandleCollector(Arc<PolicyHandle>);

impl Collector for HandleCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.cache().stats();
        let status = self.0.status();
        let counters = [
            (
                "sqlsandbox_cache_hits",
                "Rewrites answered from the rewrite cache.",
                stats.hits,
            ),
            (
                "sqlsandbox_cache_misses",
                "Rewrites not answered from the rewrite cache.",
                stats.misses,
            ),
            (
                "sqlsandbox_policy_reloads",
                "Policy reloads tried (file change, SIGHUP).",
                status.reloads,
            ),
            (
                "sqlsandbox_policy_reload_failures",
                "Policy reloads that failed; the last good policy kept serving.",
                status.failures,
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let gauges = [
            (
                "sqlsandbox_cache_entries",
                "Entries in the rewrite cache.",
                stats.entries,
            ),
            (
                "sqlsandbox_cache_bytes",
                "Approximate size of the rewrite cache.",
                stats.bytes,
            ),
            (
                "sqlsandbox_policy_version",
                "Version of the serving policy (1 at start, one more per swap).",
                status.version,
            ),
            (
                "sqlsandbox_policy_last_reload_ok",
                "1 when the last reload succeeded (or none failed yet), 0 when it failed.",
                u64::from(status.last_error.is_none()),
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

impl Metrics {
    pub(crate) fn new(handle: Arc<PolicyHandle>) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "sqlsandbox_requests",
            "HTTP requests by endpoint and status.",
            requests.clone(),
        );
        let refusals = Family::<CodeLabel, Counter>::default();
        registry.register(
            "sqlsandbox_refusals",
            "Requests answered with an error, by stable error code.",
            refusals.clone(),
        );
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "sqlsandbox_request_duration_seconds",
            "Request latency.",
            latency.clone(),
        );
        registry.register_collector(Box::new(HandleCollector(handle)));
        Metrics {
            registry,
            requests,
            refusals,
            latency,
        }
    }

    /// Counts one request.
    pub(crate) fn record(
        &self,
        endpoint: &'static str,
        status: u16,
        code: Option<&str>,
        seconds: f64,
    ) {
        self.requests
            .get_or_create(&RequestLabels { endpoint, status })
            .inc();
        if let Some(code) = code {
            self.refusals
                .get_or_create(&CodeLabel {
                    code: code.to_string(),
                })
                .inc();
        }
        self.latency
            .get_or_create(&EndpointLabel { endpoint })
            .observe(seconds);
    }

    /// The exposition text.
    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
