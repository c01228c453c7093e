//! The daemon's metrics, served by `GET /metrics` in the Prometheus text format 0.0.4.
//!
//! One [`Metrics`] per daemon, owned by the [`VolumeService`](crate::VolumeService) (and so
//! shared through the `Arc` every surface holds). Calls are counted where they start and end:
//! the plugin protocol's handler ([`crate::docker`]), a middleware around the REST routes
//! ([`crate::rest`]), and the service's commit, checkout, reset, read point and object
//! streams. What describes the present (volumes, capacity) is read from the service at each
//! scrape instead of being kept up to date.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `dvol_volumes` | gauge | `profile`, `state` (`creating`, `ready`, `removing`) | volumes, at scrape time; every configured profile has all three states (0 when none) |
//! | `dvol_profile_capacity_bytes` | gauge | `profile`, `kind` (`total`, `free`, `promised`, `reserved`, `base`) | the space behind each available profile's backend, at scrape time ([`dvol_backends::Capacity`]); absent for a profile whose space cannot be measured |
//! | `dvol_plugin_request_duration_seconds` | histogram | `method` (`Plugin.Activate`, `VolumeDriver.Mount`, ...) | Docker plugin protocol calls, from the parsed request to the answer (an `Err` answer included); a call that does not parse is not counted |
//! | `dvol_api_request_duration_seconds` | histogram | `method` (HTTP method), `route` (the path template, e.g. `/v1/volumes/{name}/commits`; `unmatched` for no route), `status` | REST calls, to the answer's head (a streamed answer's body goes on after it) |
//! | `dvol_commit_duration_seconds` | histogram | | successful commits, the whole call (lock, read point, reading, storing) |
//! | `dvol_commit_read_bytes_total` | counter | | bytes of file content commits read |
//! | `dvol_commit_stored_bytes_total` | counter | | bytes commits added to the history store (new objects, as stored) |
//! | `dvol_checkout_duration_seconds` | histogram | `operation` (`checkout`, `reset`) | successful checkouts and hard resets, the whole call |
//! | `dvol_checkout_written_bytes_total` | counter | `operation` | bytes of file content checkouts and resets wrote |
//! | `dvol_read_point_hold_seconds` | histogram | `point` (`snapshot`, `frozen`, `live`) | how long a read point was held, from taking it to releasing it: a commit or clone of a volume containers use; `frozen` is the time writers waited, `live` a backend (directory) that fixes nothing |
//! | `dvol_transfer_bytes_total` | counter | `direction` (`sent`, `received`) | object bytes (as stored) streamed to and received from other daemons: push, pull, clone, move |
//!
//! Label values come from fixed sets (methods, route templates, profiles, states), never from
//! user input such as volume names, so the number of series stays bounded.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use dvol_api::ReadFrom;
use dvol_backends::Capacity;

use crate::volume::VolumeState;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The plugin protocol's methods, each with a histogram from the start.
pub const PLUGIN_METHODS: [&str; 9] = [
    "Plugin.Activate",
    "VolumeDriver.Capabilities",
    "VolumeDriver.Create",
    "VolumeDriver.Remove",
    "VolumeDriver.Mount",
    "VolumeDriver.Unmount",
    "VolumeDriver.Path",
    "VolumeDriver.Get",
    "VolumeDriver.List",
];

/// HTTP methods the REST latency records by name; any other is `other`.
const HTTP_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The `route` label of a REST call that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Buckets for a single request: from a millisecond to two minutes.
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Buckets for history operations and read points: from 10 ms to an hour.
const OPERATION_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Why the metrics could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A family could not be defined or registered (a programming error).
    #[error("metric family: {0}")]
    Family(#[from] prometheus::Error),
    /// The text could not be encoded.
    #[error("encoding the metrics: {0}")]
    Encode(String),
}

/// Which history write a checkout metric is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutKind {
    /// `checkout`.
    Checkout,
    /// `reset --hard`.
    Reset,
}

impl CheckoutKind {
    fn label(self) -> &'static str {
        match self {
            CheckoutKind::Checkout => "checkout",
            CheckoutKind::Reset => "reset",
        }
    }
}

/// The `point` label of a read point.
fn read_from_label(point: ReadFrom) -> &'static str {
    match point {
        ReadFrom::Snapshot => "snapshot",
        ReadFrom::Frozen => "frozen",
        ReadFrom::Live => "live",
    }
}

/// What describes the present, read from the service at a scrape.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every configured profile, so each shows all states, with 0 where it has none.
    pub profiles: Vec<String>,
    /// Volumes, counted by profile and state ([`VolumeState::as_str`]).
    pub volumes: BTreeMap<(String, &'static str), u64>,
    /// The space of each profile that could be measured.
    pub capacity: Vec<(String, Capacity)>,
}

/// The registry and every family of the daemon's metrics (see the module documentation).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    volumes: IntGaugeVec,
    capacity: GaugeVec,
    plugin_requests: HistogramVec,
    api_requests: HistogramVec,
    commit_duration: Histogram,
    commit_read: IntCounter,
    commit_stored: IntCounter,
    checkout_duration: HistogramVec,
    checkout_written: IntCounterVec,
    read_point_hold: HistogramVec,
    transfer_bytes: IntCounterVec,
    /// Scrapes one at a time: each resets and sets the scrape-time gauges, then encodes.
    scrape: std::sync::Mutex<()>,
}

/// Registers `collector` in `registry` and hands it back.
fn registered<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> Result<C, MetricsError> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

fn histogram_opts(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets.to_vec())
}

impl Metrics {
    /// Every family, registered and empty.
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let r = &registry;
        let metrics = Metrics {
            volumes: registered(
                r,
                IntGaugeVec::new(
                    Opts::new("dvol_volumes", "Volumes by profile and state."),
                    &["profile", "state"],
                )?,
            )?,
            capacity: registered(
                r,
                GaugeVec::new(
                    Opts::new(
                        "dvol_profile_capacity_bytes",
                        "Space behind each profile's backend: total, free, promised to volumes but not yet written, reserved from promises, and held by the bases of changed-range commits.",
                    ),
                    &["profile", "kind"],
                )?,
            )?,
            plugin_requests: registered(
                r,
                HistogramVec::new(
                    histogram_opts(
                        "dvol_plugin_request_duration_seconds",
                        "Docker volume plugin protocol calls by method, from the parsed request to the answer.",
                        REQUEST_BUCKETS,
                    ),
                    &["method"],
                )?,
            )?,
            api_requests: registered(
                r,
                HistogramVec::new(
                    histogram_opts(
                        "dvol_api_request_duration_seconds",
                        "REST API calls by HTTP method, route template and status, to the answer's head.",
                        REQUEST_BUCKETS,
                    ),
                    &["method", "route", "status"],
                )?,
            )?,
            commit_duration: registered(
                r,
                Histogram::with_opts(histogram_opts(
                    "dvol_commit_duration_seconds",
                    "Successful commits, the whole call.",
                    OPERATION_BUCKETS,
                ))?,
            )?,
            commit_read: registered(
                r,
                IntCounter::new(
                    "dvol_commit_read_bytes_total",
                    "Bytes of file content commits read.",
                )?,
            )?,
            commit_stored: registered(
                r,
                IntCounter::new(
                    "dvol_commit_stored_bytes_total",
                    "Bytes commits added to the history store, as stored.",
                )?,
            )?,
            checkout_duration: registered(
                r,
                HistogramVec::new(
                    histogram_opts(
                        "dvol_checkout_duration_seconds",
                        "Successful checkouts and hard resets, the whole call.",
                        OPERATION_BUCKETS,
                    ),
                    &["operation"],
                )?,
            )?,
            checkout_written: registered(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "dvol_checkout_written_bytes_total",
                        "Bytes of file content checkouts and hard resets wrote.",
                    ),
                    &["operation"],
                )?,
            )?,
            read_point_hold: registered(
                r,
                HistogramVec::new(
                    histogram_opts(
                        "dvol_read_point_hold_seconds",
                        "How long read points were held, by kind: snapshot, frozen (writers waited) or live (nothing to hold).",
                        OPERATION_BUCKETS,
                    ),
                    &["point"],
                )?,
            )?,
            transfer_bytes: registered(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "dvol_transfer_bytes_total",
                        "Object bytes, as stored, streamed to (sent) and from (received) other daemons.",
                    ),
                    &["direction"],
                )?,
            )?,
            registry,
            scrape: std::sync::Mutex::new(()),
        };
        // The series every daemon has show from the first scrape, at 0.
        for method in PLUGIN_METHODS {
            metrics.plugin_requests.with_label_values(&[method]);
        }
        for kind in [CheckoutKind::Checkout, CheckoutKind::Reset] {
            metrics.checkout_duration.with_label_values(&[kind.label()]);
            metrics.checkout_written.with_label_values(&[kind.label()]);
        }
        for point in [ReadFrom::Snapshot, ReadFrom::Frozen, ReadFrom::Live] {
            metrics
                .read_point_hold
                .with_label_values(&[read_from_label(point)]);
        }
        for direction in ["sent", "received"] {
            metrics.transfer_bytes.with_label_values(&[direction]);
        }
        Ok(metrics)
    }

    /// A plugin protocol call to `method` (one of [`PLUGIN_METHODS`]) took `elapsed`.
    pub fn plugin_call(&self, method: &'static str, elapsed: Duration) {
        self.plugin_requests
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }

    /// A REST call took `elapsed` to its answer's head. `route` is the matched path template
    /// (or [`UNMATCHED_ROUTE`]); an HTTP method outside the standard ones counts as `other`.
    pub fn api_call(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = HTTP_METHODS
            .into_iter()
            .find(|m| *m == method)
            .unwrap_or("other");
        self.api_requests
            .with_label_values(&[method, route, &status.to_string()])
            .observe(elapsed.as_secs_f64());
    }

    /// A commit succeeded in `elapsed`, reading `read` bytes and storing `stored`.
    pub fn commit(&self, elapsed: Duration, read: u64, stored: u64) {
        self.commit_duration.observe(elapsed.as_secs_f64());
        self.commit_read.inc_by(read);
        self.commit_stored.inc_by(stored);
    }

    /// A checkout or reset succeeded in `elapsed`, writing `written` bytes.
    pub fn checkout(&self, kind: CheckoutKind, elapsed: Duration, written: u64) {
        self.checkout_duration
            .with_label_values(&[kind.label()])
            .observe(elapsed.as_secs_f64());
        self.checkout_written
            .with_label_values(&[kind.label()])
            .inc_by(written);
    }

    /// A read point of kind `point` was held for `held`.
    pub fn read_point_held(&self, point: ReadFrom, held: Duration) {
        self.read_point_hold
            .with_label_values(&[read_from_label(point)])
            .observe(held.as_secs_f64());
    }

    /// `bytes` of objects went into a stream to another daemon.
    pub fn transfer_sent(&self, bytes: u64) {
        self.transfer_bytes
            .with_label_values(&["sent"])
            .inc_by(bytes);
    }

    /// `bytes` of objects arrived whole from another daemon.
    pub fn transfer_received(&self, bytes: u64) {
        self.transfer_bytes
            .with_label_values(&["received"])
            .inc_by(bytes);
    }

    /// Every family as text ([`CONTENT_TYPE`]), the scrape-time gauges set from `now`.
    pub fn render(&self, now: &Snapshot) -> Result<String, MetricsError> {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.volumes.reset();
        for profile in &now.profiles {
            for state in [
                VolumeState::Creating,
                VolumeState::Ready,
                VolumeState::Removing,
            ] {
                self.volumes
                    .with_label_values(&[profile.as_str(), state.as_str()])
                    .set(0);
            }
        }
        for ((profile, state), count) in &now.volumes {
            self.volumes
                .with_label_values(&[profile.as_str(), state])
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        self.capacity.reset();
        for (profile, space) in &now.capacity {
            for (kind, bytes) in [
                ("total", space.total_bytes),
                ("free", space.free_bytes),
                ("promised", space.promised_bytes),
                ("reserved", space.reserved_bytes),
                ("base", space.base_bytes),
            ] {
                self.capacity
                    .with_label_values(&[profile.as_str(), kind])
                    .set(bytes as f64);
            }
        }
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .map_err(|e| MetricsError::Encode(e.to_string()))?;
        String::from_utf8(text).map_err(|e| MetricsError::Encode(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `series` (name and labels exactly as written) in `text`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().expect("a number"))
    }

    #[test]
    fn every_family_is_described_from_the_start() {
        let metrics = Metrics::new().unwrap();
        let text = metrics.render(&Snapshot::default()).unwrap();
        for (family, kind) in [
            ("dvol_plugin_request_duration_seconds", "histogram"),
            ("dvol_commit_duration_seconds", "histogram"),
            ("dvol_commit_read_bytes_total", "counter"),
            ("dvol_commit_stored_bytes_total", "counter"),
            ("dvol_checkout_duration_seconds", "histogram"),
            ("dvol_checkout_written_bytes_total", "counter"),
            ("dvol_read_point_hold_seconds", "histogram"),
            ("dvol_transfer_bytes_total", "counter"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} {kind}\n")),
                "{family}: {text}"
            );
            assert!(text.contains(&format!("# HELP {family} ")), "{text}");
        }
        assert_eq!(
            sample(
                &text,
                r#"dvol_plugin_request_duration_seconds_count{method="VolumeDriver.Mount"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, r#"dvol_transfer_bytes_total{direction="received"}"#),
            Some(0.0)
        );
    }

    #[test]
    fn a_histogram_counts_each_call_in_its_buckets() {
        let metrics = Metrics::new().unwrap();
        metrics.plugin_call("VolumeDriver.Mount", Duration::from_millis(3));
        metrics.plugin_call("VolumeDriver.Mount", Duration::from_millis(300));
        metrics.api_call(
            "POST",
            "/v1/volumes/{name}/commit",
            200,
            Duration::from_millis(20),
        );
        metrics.api_call("BREW", UNMATCHED_ROUTE, 404, Duration::from_millis(1));
        let text = metrics.render(&Snapshot::default()).unwrap();
        let mount = r#"dvol_plugin_request_duration_seconds"#;
        assert_eq!(
            sample(
                &text,
                &format!(r#"{mount}_count{{method="VolumeDriver.Mount"}}"#)
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!(r#"{mount}_bucket{{method="VolumeDriver.Mount",le="0.005"}}"#)
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!(r#"{mount}_bucket{{method="VolumeDriver.Mount",le="+Inf"}}"#)
            ),
            Some(2.0)
        );
        let sum = sample(
            &text,
            &format!(r#"{mount}_sum{{method="VolumeDriver.Mount"}}"#),
        );
        assert!(sum.is_some_and(|s| (s - 0.303).abs() < 1e-9), "{sum:?}");
        assert_eq!(
            sample(
                &text,
                r#"dvol_api_request_duration_seconds_count{method="POST",route="/v1/volumes/{name}/commit",status="200"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"dvol_api_request_duration_seconds_count{method="other",route="unmatched",status="404"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn history_and_transfer_add_up() {
        let metrics = Metrics::new().unwrap();
        metrics.commit(Duration::from_secs(1), 100, 40);
        metrics.commit(Duration::from_secs(2), 50, 0);
        metrics.checkout(CheckoutKind::Reset, Duration::from_millis(10), 7);
        metrics.read_point_held(ReadFrom::Frozen, Duration::from_millis(500));
        metrics.transfer_sent(11);
        metrics.transfer_sent(2);
        let text = metrics.render(&Snapshot::default()).unwrap();
        assert_eq!(
            sample(&text, "dvol_commit_duration_seconds_count"),
            Some(2.0)
        );
        assert_eq!(sample(&text, "dvol_commit_read_bytes_total"), Some(150.0));
        assert_eq!(sample(&text, "dvol_commit_stored_bytes_total"), Some(40.0));
        assert_eq!(
            sample(
                &text,
                r#"dvol_checkout_written_bytes_total{operation="reset"}"#
            ),
            Some(7.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"dvol_checkout_duration_seconds_count{operation="checkout"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"dvol_read_point_hold_seconds_count{point="frozen"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"dvol_read_point_hold_seconds_count{point="snapshot"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, r#"dvol_transfer_bytes_total{direction="sent"}"#),
            Some(13.0)
        );
    }

    #[test]
    fn scrape_time_gauges_show_the_present_only() {
        let metrics = Metrics::new().unwrap();
        let space = Capacity {
            total_bytes: 1000,
            free_bytes: 600,
            promised_bytes: 0,
            reserved_bytes: 0,
            base_bytes: 0,
        };
        let first = Snapshot {
            profiles: vec!["bronze".into(), "gold".into()],
            volumes: BTreeMap::from([
                (("bronze".into(), "ready"), 2),
                (("old".into(), "removing"), 1),
            ]),
            capacity: vec![("bronze".into(), space)],
        };
        let text = metrics.render(&first).unwrap();
        let count = |text: &str, profile: &str, state: &str| {
            sample(
                text,
                &format!(r#"dvol_volumes{{profile="{profile}",state="{state}"}}"#),
            )
        };
        assert_eq!(count(&text, "bronze", "ready"), Some(2.0));
        assert_eq!(count(&text, "gold", "creating"), Some(0.0));
        assert_eq!(count(&text, "old", "removing"), Some(1.0));
        assert_eq!(
            sample(
                &text,
                r#"dvol_profile_capacity_bytes{kind="free",profile="bronze"}"#
            ),
            Some(600.0)
        );
        let second = Snapshot {
            profiles: vec!["bronze".into()],
            ..Snapshot::default()
        };
        let text = metrics.render(&second).unwrap();
        assert_eq!(count(&text, "bronze", "ready"), Some(0.0));
        assert_eq!(count(&text, "old", "removing"), None, "{text}");
        assert!(!text.contains("dvol_profile_capacity_bytes{"), "{text}");
    }
}
