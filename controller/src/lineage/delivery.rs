//! Sends lineage events: a bounded queue drained by one task that POSTs each event, retrying
//! with backoff while the server is unreachable or answers 5xx/408/429. Passes only enqueue,
//! so a slow or absent lineage server never delays a pass or stops a run.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// Events waiting at most; beyond this, new events are refused (and stay due, see the ledger).
pub const QUEUE_CAPACITY: usize = 10_000;
/// How long one POST may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how events are sent.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `<OPENLINEAGE_URL>/api/v1/lineage`.
    pub url: String,
    pub api_key: Option<String>,
}

/// The delay before each retry: doubling from `first`, at most `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn delay(&self, attempt: u32) -> Duration {
        self.first
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max)
    }
}

/// What became of one POST.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Sent,
    /// Try again later: the server may come back.
    Retry(String),
    /// The server refused this event; sending it again would not help.
    Rejected(String),
}

fn outcome(status: u16, body: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Sent,
        408 | 429 | 500..=599 => Outcome::Retry(format!("HTTP {status}: {body}")),
        _ => Outcome::Rejected(format!("HTTP {status}: {body}")),
    }
}

/// The sending side, cheap to clone.
#[derive(Clone)]
pub struct Sender {
    tx: mpsc::Sender<Value>,
    metrics: Arc<Metrics>,
}

impl Sender {
    /// Queues an event; false when the queue is full (the caller keeps it due).
    pub fn offer(&self, event: Value) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => {
                self.metrics.lineage_queue.inc();
                true
            }
            Err(_) => {
                self.metrics.lineage_event("refused");
                false
            }
        }
    }
}

/// Starts the sending task.
pub fn spawn(endpoint: Endpoint, backoff: Backoff, metrics: Arc<Metrics>) -> Sender {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a default HTTP client builds");
    tokio::spawn(drain(rx, client, endpoint, backoff, metrics.clone()));
    Sender { tx, metrics }
}

async fn drain(
    mut rx: mpsc::Receiver<Value>,
    client: reqwest::Client,
    endpoint: Endpoint,
    backoff: Backoff,
    metrics: Arc<Metrics>,
) {
    while let Some(event) = rx.recv().await {
        let mut attempt = 0;
        loop {
            match post(&client, &endpoint, &event).await {
                Outcome::Sent => {
                    metrics.lineage_event("sent");
                    debug!(event_type = %event["eventType"], run = %event["run"]["runId"], "lineage event sent");
                    break;
                }
                Outcome::Rejected(why) => {
                    metrics.lineage_event("rejected");
                    warn!(url = %endpoint.url, run = %event["run"]["runId"], "lineage server refused an event, dropped: {why}; check the server's logs for what it expects");
                    break;
                }
                Outcome::Retry(why) => {
                    metrics.lineage_event("retried");
                    let delay = backoff.delay(attempt);
                    warn!(url = %endpoint.url, attempt, "lineage event not delivered ({why}); retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
        metrics.lineage_queue.dec();
    }
}

async fn post(client: &reqwest::Client, endpoint: &Endpoint, event: &Value) -> Outcome {
    let mut request = client.post(&endpoint.url).json(event);
    if let Some(key) = &endpoint.api_key {
        request = request.bearer_auth(key);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            outcome(status, body.chars().take(200).collect::<String>().trim())
        }
        Err(e) => Outcome::Retry(format!("POST {} failed: {e}", endpoint.url)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff {
            first: Duration::from_millis(500),
            max: Duration::from_secs(30),
        };
        let delays: Vec<_> = (0..8).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn only_transient_answers_are_retried() {
        assert_eq!(outcome(201, ""), Outcome::Sent);
        assert!(matches!(outcome(503, "down"), Outcome::Retry(m) if m == "HTTP 503: down"));
        assert!(matches!(outcome(429, ""), Outcome::Retry(_)));
        assert!(
            matches!(outcome(400, "bad eventTime"), Outcome::Rejected(m) if m.contains("bad eventTime"))
        );
    }
}
