//! git-sync's webhook: a POST with the new hash in `Gitsync-Hash`, retried until it is accepted
//! or a newer hash replaces it.

use std::time::Duration;

use tokio::sync::watch;

/// The header git-sync puts the new commit hash in.
pub const HASH_HEADER: &str = "Gitsync-Hash";

const TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Starts the webhook task for `url` and returns the sender to announce new hashes on.
pub fn spawn(url: String) -> watch::Sender<Option<String>> {
    let (tx, mut rx) = watch::channel::<Option<String>>(None);
    tokio::spawn(async move {
        let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the webhook HTTP client; webhooks are off");
                return;
            }
        };
        while rx.changed().await.is_ok() {
            let Some(hash) = rx.borrow_and_update().clone() else {
                continue;
            };
            let mut backoff = FIRST_BACKOFF;
            loop {
                match client.post(&url).header(HASH_HEADER, &hash).send().await {
                    Ok(r) if r.status().is_success() => {
                        tracing::info!(%hash, "webhook called");
                        break;
                    }
                    Ok(r) => {
                        tracing::warn!(%hash, status = %r.status(), "webhook refused; retrying")
                    }
                    Err(e) => tracing::warn!(%hash, error = %e, "webhook failed; retrying"),
                }
                // A newer hash makes this one moot: send that instead.
                if tokio::time::timeout(backoff, rx.changed()).await.is_ok() {
                    break;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            if rx.has_changed().unwrap_or(false) {
                rx.mark_changed();
            }
        }
    });
    tx
}
