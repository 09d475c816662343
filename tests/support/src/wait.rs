//! Polling for a condition that becomes true in its own time (a status written, a log line).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Calls `check` every `every` until it returns `Some`, and returns that; `None` once `timeout`
/// has passed. `check` runs at least once, and once more after the last pause.
pub async fn until<T, F, Fut>(timeout: Duration, every: Duration, check: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_the_first_some_or_none_after_the_timeout() {
        let calls = AtomicU32::new(0);
        let third = until(
            Duration::from_secs(10),
            Duration::from_millis(1),
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                (n == 3).then_some(n)
            },
        )
        .await;
        assert_eq!(third, Some(3));

        let started = tokio::time::Instant::now();
        let never: Option<()> = until(
            Duration::from_millis(50),
            Duration::from_millis(10),
            || async { None },
        )
        .await;
        assert_eq!(never, None);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
