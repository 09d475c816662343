//! Tells the controller's hook receiver which routes' answers changed (`notify` in
//! lambdas.yaml), so it asks those lambdas now instead of at the next poll.
//!
//! The engine hands route paths over without waiting; a task of its own delivers them,
//! merging whatever changes while a delivery is in flight or backing off, and retrying with
//! backoff until the receiver accepts. A failure here only delays runs to the next poll.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modelsync_api::hook::{LambdaChanged, LambdaChangedReply, MAX_URLS};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

use crate::config::{NotifyConfig, read_secret};

const TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// `modelsync_lambda_server_notifications_total{outcome}`: deliveries to the receiver,
/// `delivered` or `failed`.
#[derive(Clone, Debug)]
pub struct NotifyMetrics {
    deliveries: Family<Outcome, Counter>,
}

impl NotifyMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let deliveries = Family::default();
        registry.register(
            "modelsync_lambda_server_notifications",
            "Deliveries of changed lambda URLs to the controller's hook receiver, by outcome \
             (delivered, failed)",
            modelsync_telemetry::Declared(deliveries.clone()),
        );
        NotifyMetrics { deliveries }
    }

    fn count(&self, outcome: &'static str) {
        self.deliveries.get_or_create(&Outcome { outcome }).inc();
    }
}

/// The engine's end: hands changed routes over without waiting.
#[derive(Clone)]
pub struct Notifier {
    base: Arc<str>,
    pending: Arc<Mutex<BTreeSet<String>>>,
    wake: Arc<Notify>,
}

impl Notifier {
    /// Starts the delivery task.
    pub fn spawn(config: NotifyConfig, metrics: NotifyMetrics) -> Notifier {
        let notifier = Notifier {
            base: Arc::from(config.public_base_url.as_str()),
            pending: Arc::default(),
            wake: Arc::new(Notify::new()),
        };
        tokio::spawn(deliver(config, notifier.clone(), metrics));
        notifier
    }

    /// Queues the URLs of `routes` (paths) for delivery.
    pub fn changed(&self, routes: Vec<String>) {
        let mut pending = self.pending.lock().expect("never poisoned");
        pending.extend(routes.iter().map(|path| route_url(&self.base, path)));
        drop(pending);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<String> {
        let mut pending = self.pending.lock().expect("never poisoned");
        let mut batch = Vec::new();
        while batch.len() < MAX_URLS {
            match pending.pop_first() {
                Some(url) => batch.push(url),
                None => break,
            }
        }
        batch
    }

    fn put_back(&self, urls: Vec<String>) {
        self.pending.lock().expect("never poisoned").extend(urls);
    }
}

/// A route's URL as ModelSyncs name it: the public base, then the route's path.
pub fn route_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

async fn deliver(config: NotifyConfig, notifier: Notifier, metrics: NotifyMetrics) {
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the notify HTTP client; notifications are off");
            return;
        }
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        let urls = notifier.take();
        if urls.is_empty() {
            notifier.wake.notified().await;
            continue;
        }
        match send(&client, &config, &urls).await {
            Ok(reply) => {
                metrics.count("delivered");
                backoff = FIRST_BACKOFF;
                let asked: usize = reply.matched.values().map(Vec::len).sum();
                tracing::info!(urls = ?urls, modelsyncs = asked, "told the controller which answers changed");
                if !reply.unknown.is_empty() {
                    tracing::warn!(
                        urls = ?reply.unknown,
                        "the controller knows no ModelSync with these URLs; if one should \
                         match, make notify.publicBaseUrl spell this server as needsSyncUrl does"
                    );
                }
            }
            Err(error) => {
                metrics.count("failed");
                tracing::warn!(url = %config.url, %error, retry_in = ?backoff, "notifying the controller failed; retrying");
                notifier.put_back(urls);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn send(
    client: &reqwest::Client,
    config: &NotifyConfig,
    urls: &[String],
) -> Result<LambdaChangedReply, String> {
    let token =
        read_secret("notify: field tokenFile", &config.token_file).map_err(|e| e.to_string())?;
    let response = client
        .post(&config.url)
        .bearer_auth(token)
        .json(&LambdaChanged {
            urls: urls.to_vec(),
        })
        .send()
        .await
        .map_err(|e| format!("POST {}: {e}", config.url))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let body: String = body.chars().take(300).collect();
        return Err(format!("POST {} answered {status}: {body}", config.url));
    }
    serde_json::from_str(&body).map_err(|e| {
        format!(
            "POST {} answered {status} with a body that is not a hook reply ({e}): {body}",
            config.url
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_url_is_the_public_base_and_the_path() {
        assert_eq!(
            route_url("http://lambdas.ml/", "/needsSync"),
            "http://lambdas.ml/needsSync"
        );
        assert_eq!(route_url("http://l:8080", "/a"), "http://l:8080/a");
    }

    #[tokio::test]
    async fn batches_are_bounded_and_failed_ones_come_back() {
        let n = Notifier {
            base: Arc::from("http://l"),
            pending: Arc::default(),
            wake: Arc::new(Notify::new()),
        };
        n.changed((0..MAX_URLS + 3).map(|i| format!("/{i:04}")).collect());
        n.changed(vec!["/0000".into()]);
        let first = n.take();
        assert_eq!(first.len(), MAX_URLS);
        n.put_back(first);
        assert_eq!(n.take().len(), MAX_URLS);
        assert_eq!(n.take().len(), 3);
        assert!(n.take().is_empty());
    }
}
