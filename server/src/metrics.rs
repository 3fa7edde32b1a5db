//! Prometheus metrics for operators, served on their own address (`--metrics-addr`), off
//! unless it is set.
//!
//! Each instance owns its recorder instead of installing a process-wide one: the tests run
//! several servers in one process, and each must count only what it did. The hot paths
//! (deliveries, bytes out) use handles registered once, which cost one atomic add; metrics
//! with a label (close codes, refusal codes) are registered when first used, which is rare.
//! With metrics off every handle is a no-op.
//!
//! Names follow Prometheus conventions: `_total` counters, `_seconds` histograms.

use app::protocol::close;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use std::sync::Arc;

/// How often [`Metrics::upkeep`] runs while metrics are on.
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Buckets for Redis command latency, in seconds (0.25 ms to 2.5 s).
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5,
];

pub struct Metrics {
    recorder: Option<PrometheusRecorder>,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Rooms with at least one connection on this instance.
    pub rooms: Gauge,
    /// Rooms joined (each join of a connection).
    pub joins: Counter,
    /// Messages stored and published through this instance.
    pub messages_posted: Counter,
    /// Channel publications sent through this instance (from connections and the server API).
    pub publications: Counter,
    /// Frames written to clients, and their bytes.
    pub deliveries: Counter,
    pub bytes_out: Counter,
    /// Frames that did not fit a connection's outbound queue, and the connections closed
    /// for it.
    pub queue_drops: Counter,
    pub slow_consumer_closes: Counter,
    /// Pub/sub connections made again after a loss, and liveness probes that failed.
    pub pubsub_reconnects: Counter,
    pub pubsub_probe_failures: Counter,
    /// Joins with `since`, by whether exactly what was missed could be given.
    pub resumes_recovered: Counter,
    pub resumes_not_recovered: Counter,
}

impl Metrics {
    /// Metrics off: every handle does nothing, nothing is rendered.
    pub fn off() -> Self {
        Metrics {
            recorder: None,
            connections: Gauge::noop(),
            rooms: Gauge::noop(),
            joins: Counter::noop(),
            messages_posted: Counter::noop(),
            publications: Counter::noop(),
            deliveries: Counter::noop(),
            bytes_out: Counter::noop(),
            queue_drops: Counter::noop(),
            slow_consumer_closes: Counter::noop(),
            pubsub_reconnects: Counter::noop(),
            pubsub_probe_failures: Counter::noop(),
            resumes_recovered: Counter::noop(),
            resumes_not_recovered: Counter::noop(),
        }
    }

    /// Metrics on, with their own recorder.
    pub fn on() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("the latency buckets are not empty")
            .build_recorder();
        metrics::with_local_recorder(&recorder, || Metrics {
            connections: metrics::gauge!("confab_connections"),
            rooms: metrics::gauge!("confab_rooms"),
            joins: metrics::counter!("confab_joins_total"),
            messages_posted: metrics::counter!("confab_messages_posted_total"),
            publications: metrics::counter!("confab_publications_total"),
            deliveries: metrics::counter!("confab_deliveries_total"),
            bytes_out: metrics::counter!("confab_bytes_out_total"),
            queue_drops: metrics::counter!("confab_outbound_queue_drops_total"),
            slow_consumer_closes: metrics::counter!("confab_slow_consumer_closes_total"),
            pubsub_reconnects: metrics::counter!("confab_pubsub_reconnects_total"),
            pubsub_probe_failures: metrics::counter!("confab_pubsub_probe_failures_total"),
            resumes_recovered: metrics::counter!("confab_resumes_total", "recovered" => "true"),
            resumes_not_recovered: metrics::counter!("confab_resumes_total", "recovered" => "false"),
            recorder: None,
        })
        .with_recorder(recorder)
    }

    fn with_recorder(mut self, recorder: PrometheusRecorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    pub fn enabled(&self) -> bool {
        self.recorder.is_some()
    }

    /// A connection was closed with `code` (1000 for an ordinary end).
    pub fn closed(&self, code: u16) {
        if code == close::SLOW_CONSUMER {
            self.slow_consumer_closes.increment(1);
        }
        if let Some(recorder) = &self.recorder {
            metrics::with_local_recorder(recorder, || {
                metrics::counter!("confab_closes_total", "code" => code.to_string()).increment(1);
            });
        }
    }

    /// A request was refused with an error `code` (`rate_limited`, `not_in_room`, ...).
    pub fn refused(&self, code: &'static str) {
        if let Some(recorder) = &self.recorder {
            metrics::with_local_recorder(recorder, || {
                metrics::counter!("confab_refusals_total", "code" => code).increment(1);
            });
        }
    }

    /// The latency histogram of one kind of Redis command (`post`, `history`, ...).
    pub fn redis_latency(&self, command: &'static str) -> Histogram {
        match &self.recorder {
            Some(recorder) => metrics::with_local_recorder(
                recorder,
                || metrics::histogram!("confab_redis_command_seconds", "command" => command),
            ),
            None => Histogram::noop(),
        }
    }

    /// Folds the histograms' recorded samples into their buckets. The recorder keeps every
    /// sample until then, so this must run now and then even when nobody scrapes
    /// ([`UPKEEP_INTERVAL`]), or memory grows with every Redis command.
    pub fn upkeep(&self) {
        if let Some(recorder) = &self.recorder {
            recorder.handle().run_upkeep();
        }
    }

    /// The Prometheus text exposition (None with metrics off).
    pub fn render(&self) -> Option<String> {
        let recorder = self.recorder.as_ref()?;
        let handle = recorder.handle();
        handle.run_upkeep();
        Some(handle.render())
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.enabled())
            .finish_non_exhaustive()
    }
}

/// `GET /metrics` in the Prometheus text format; anything else is a JSON 404.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    let text = metrics.render().unwrap_or_default();
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({ "error": "not found: metrics are at /metrics" })),
            )
        })
}
