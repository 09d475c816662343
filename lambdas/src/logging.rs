//! Logging set-up for `modelsync lambdas` and `modelsync mirror`; a leaf module.

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); JSON when `LOG_FORMAT=json`.
/// Does nothing if the binary already set a subscriber.
pub fn init_logging() {
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
    modelsync_telemetry::init_logging(&modelsync_telemetry::Logging {
        format: if json {
            modelsync_telemetry::LogFormat::Json
        } else {
            modelsync_telemetry::LogFormat::Text
        },
        default_filter: "info",
        to_stderr: true,
    });
}
