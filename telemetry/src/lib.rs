//! Logging set-up and metrics encoding for every modelsync process. A leaf: it knows nothing of
//! the controller, the lambda server or the mirror, so each of them can use it without the
//! others.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// How log lines are written.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where log lines go, and which are kept when `RUST_LOG` is not set.
#[derive(Debug, Clone, Copy)]
pub struct Logging<'a> {
    pub format: LogFormat,
    /// An `EnvFilter` directive used when `RUST_LOG` is unset or invalid.
    pub default_filter: &'a str,
    /// Standard error (with colours only on a terminal) rather than standard output. The
    /// lambda server and the mirror keep standard output free; the controller logs to it.
    pub to_stderr: bool,
}

/// Installs the process's log subscriber. Does nothing if one is installed already (a binary
/// or a test that set its own).
pub fn init_logging(logging: &Logging<'_>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(logging.default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match (logging.to_stderr, logging.format) {
        (true, format) => {
            let builder = builder
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
            match format {
                LogFormat::Json => builder.json().try_init(),
                LogFormat::Text => builder.try_init(),
            }
        }
        (false, LogFormat::Json) => builder.json().try_init(),
        (false, LogFormat::Text) => builder.try_init(),
    };
}

/// The content type of [`encode`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry in the OpenMetrics text format Prometheus scrapes.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, registry)?;
    Ok(body)
}

/// `/metrics` for an axum router whose state yields the registry.
pub async fn metrics_handler(State(registry): State<Arc<Registry>>) -> Response {
    match encode(&registry) {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

/// A metric family whose `# HELP` and `# TYPE` lines are written from the start, before its
/// first labelled series exists. prometheus-client leaves an empty family out of the output,
/// so a dashboard or an alert naming it could not tell "nothing happened yet" from "renamed".
/// An OpenMetrics family may have no samples; Prometheus reads it as such.
#[derive(Debug, Clone)]
pub struct Declared<M>(pub M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn encodes_a_registry_in_openmetrics_text() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("things", "Things seen", counter.clone());
        counter.inc();
        let text = encode(&registry).unwrap();
        assert!(text.contains("things_total 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_declared_family_is_described_before_its_first_series() {
        use prometheus_client::encoding::EncodeLabelSet;
        use prometheus_client::metrics::family::Family;

        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct Route {
            route: &'static str,
        }
        let mut registry = Registry::default();
        let plain = Family::<Route, Counter>::default();
        let declared = Family::<Route, Counter>::default();
        registry.register("plain", "Left out while empty", plain.clone());
        registry.register("declared", "Described at once", Declared(declared.clone()));
        let text = encode(&registry).unwrap();
        assert!(text.contains("# TYPE declared counter\n"), "{text}");
        assert!(!text.contains("plain"), "{text}");
        declared.get_or_create(&Route { route: "/a" }).inc();
        let text = encode(&registry).unwrap();
        assert!(text.contains("declared_total{route=\"/a\"} 1"), "{text}");
    }
}
