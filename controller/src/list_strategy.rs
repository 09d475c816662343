//! How the watches get their first full view: a streaming list (a watch with
//! `sendInitialEvents=true`, objects sent one by one from the API server's watch cache, ended by
//! a bookmark annotated `k8s.io/initial-events-end`) where the API server supports it, else
//! paged lists. A streaming list spares the API server building each page of a large list in
//! memory, and the controller holding a whole page at once.
//!
//! Support is found out by asking, not from the version number: the feature (`WatchList`)
//! can be switched off on a server new enough to have it, and a server too old to know the
//! parameter ignores it and sends a plain watch with no end-of-list bookmark, which a watcher
//! would wait on forever. The probe is a streaming watch of ModelSyncs that selects no object,
//! so it costs the server nothing however many there are.
//!
//! `--initial-list` overrides the probe, so paged and streaming cold starts can be measured on
//! the same build and server: `paged` never asks, `streaming` never asks and stops the
//! controller when the API server refuses a streaming list, rather than falling back unseen.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, WatchEvent, WatchParams};
use kube::runtime::watcher;
use modelsync_api::ModelSync;
use tokio::sync::watch;
use tracing::info;

/// The annotation the API server puts on the bookmark that ends a streaming list.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// How long the probe waits for the end-of-list bookmark. A server that supports streaming
/// lists sends it at once for a selection of nothing.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The name the probe selects on: no ModelSync has it (names cannot start with '.').
const PROBE_NAME: &str = ".modelsync-streaming-list-probe";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListStrategy {
    Streaming,
    Paged,
}

impl ListStrategy {
    /// A watcher config for this strategy.
    pub fn config(self) -> watcher::Config {
        match self {
            ListStrategy::Streaming => watcher::Config::default().streaming_lists(),
            ListStrategy::Paged => watcher::Config::default(),
        }
    }
}

/// `--initial-list`: how the watches get their first full view.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitialList {
    /// Streaming lists where the API server serves them (probed at start), else paged.
    #[default]
    Auto,
    /// Streaming lists, not probed; the controller stops if the API server refuses them.
    Streaming,
    /// Paged lists, not probed.
    Paged,
}

/// What the probe found out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probed {
    Supported,
    /// Not served, and why.
    NotServed(String),
    /// No answer within this long.
    NoAnswer(Duration),
}

/// The strategy for `mode` (given what the probe found, when it ran), and why, as logged.
pub fn decide(mode: InitialList, probed: Option<Probed>) -> (ListStrategy, String) {
    match (mode, probed) {
        (InitialList::Paged, _) => (ListStrategy::Paged, "--initial-list paged".into()),
        (InitialList::Streaming, _) => (
            ListStrategy::Streaming,
            "--initial-list streaming, not probed".into(),
        ),
        (InitialList::Auto, Some(Probed::Supported)) => (
            ListStrategy::Streaming,
            "the API server supports sendInitialEvents".into(),
        ),
        (InitialList::Auto, Some(Probed::NotServed(why))) => (
            ListStrategy::Paged,
            format!("the API server does not serve streaming lists: {why}"),
        ),
        (InitialList::Auto, Some(Probed::NoAnswer(waited))) => (
            ListStrategy::Paged,
            format!("a streaming-list probe got no answer in {waited:?}"),
        ),
        // Not reached: `choose` probes whenever the mode is auto. Paged is the safe side.
        (InitialList::Auto, None) => (ListStrategy::Paged, "not probed".into()),
    }
}

/// The strategy for `mode`, probing the API server only when `mode` is auto; logs which and why.
pub async fn choose(mode: InitialList, api: &Api<ModelSync>) -> ListStrategy {
    let probed = match mode {
        InitialList::Auto => Some(probe(api).await),
        InitialList::Streaming | InitialList::Paged => None,
    };
    let (strategy, why) = decide(mode, probed);
    let name = match strategy {
        ListStrategy::Streaming => "streaming",
        ListStrategy::Paged => "paged",
    };
    info!("initial lists: {name} ({why})");
    strategy
}

/// Asks the API server whether it serves streaming lists.
async fn probe(api: &Api<ModelSync>) -> Probed {
    match tokio::time::timeout(PROBE_TIMEOUT * 2, ends_initial_events(api)).await {
        Ok(Ok(())) => Probed::Supported,
        Ok(Err(why)) => Probed::NotServed(why),
        Err(_) => Probed::NoAnswer(PROBE_TIMEOUT * 2),
    }
}

/// Why a watch error means the API server refuses streaming lists, if it does: it rejects
/// the start of the watch as a bad or invalid request (422 with the `WatchList` feature off).
pub fn refusal(err: &watcher::Error) -> Option<String> {
    match err {
        watcher::Error::WatchStartFailed(kube::Error::Api(s)) if matches!(s.code, 400 | 422) => {
            Some(format!("({}): {}", s.code, s.message))
        }
        _ => None,
    }
}

/// Under `--initial-list streaming`, carries the first refusal of a streaming list from the
/// watches to the controller, which stops saying why; under the other modes it stays silent
/// (auto chose streaming because the server serves it; a refusal then is a passing fault the
/// watches retry).
#[derive(Clone)]
pub struct Refusals {
    armed: bool,
    tx: Arc<watch::Sender<Option<String>>>,
}

impl Refusals {
    pub fn new(mode: InitialList) -> Self {
        Refusals {
            armed: mode == InitialList::Streaming,
            tx: Arc::new(watch::channel(None).0),
        }
    }

    /// Records `err` when it is a refusal and this mode stops on one.
    pub fn observe(&self, err: &watcher::Error) {
        if let (true, Some(why)) = (self.armed, refusal(err)) {
            self.tx.send_if_modified(|first| {
                let fresh = first.is_none();
                first.get_or_insert(why);
                fresh
            });
        }
    }

    /// The first refusal, once there is one (never, when not armed).
    pub async fn first(&self) -> String {
        let mut rx = self.tx.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            // The sender lives in self, so it cannot be dropped while this waits.
            Err(_) => std::future::pending().await,
        }
    }
}

/// Ok once the end-of-list bookmark arrives; Err saying what came instead.
async fn ends_initial_events(api: &Api<ModelSync>) -> Result<(), String> {
    let wp = WatchParams::streaming_lists()
        .fields(&format!("metadata.name={PROBE_NAME}"))
        .timeout(PROBE_TIMEOUT.as_secs() as u32);
    let stream = api.watch(&wp, "0").await.map_err(|e| match e {
        kube::Error::Api(s) => format!("a streaming watch was refused ({}): {}", s.code, s.message),
        e => format!("a streaming watch failed: {e}"),
    })?;
    let mut stream = std::pin::pin!(stream.into_stream());
    while let Some(event) = stream.next().await {
        match event {
            Ok(WatchEvent::Bookmark(bm))
                if bm.metadata.annotations.contains_key(INITIAL_EVENTS_END) =>
            {
                return Ok(());
            }
            Ok(WatchEvent::Error(e)) => return Err(format!("the watch failed: {}", e.message)),
            Ok(_) => {}
            Err(e) => return Err(format!("the watch failed: {e}")),
        }
    }
    Err(format!(
        "the watch ended after {PROBE_TIMEOUT:?} without the {INITIAL_EVENTS_END} bookmark"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paged_and_streaming_ignore_any_probe() {
        for probed in [
            None,
            Some(Probed::Supported),
            Some(Probed::NotServed("x".into())),
        ] {
            assert_eq!(
                decide(InitialList::Paged, probed.clone()).0,
                ListStrategy::Paged
            );
            assert_eq!(
                decide(InitialList::Streaming, probed).0,
                ListStrategy::Streaming
            );
        }
    }

    #[test]
    fn auto_follows_the_probe_and_says_why() {
        assert_eq!(
            decide(InitialList::Auto, Some(Probed::Supported)).0,
            ListStrategy::Streaming
        );
        let (strategy, why) = decide(
            InitialList::Auto,
            Some(Probed::NotServed("refused (422)".into())),
        );
        assert_eq!(strategy, ListStrategy::Paged);
        assert!(why.contains("refused (422)"), "{why}");
        let (strategy, why) = decide(
            InitialList::Auto,
            Some(Probed::NoAnswer(Duration::from_secs(10))),
        );
        assert_eq!(strategy, ListStrategy::Paged);
        assert!(why.contains("10s"), "{why}");
    }

    fn refused(code: u16) -> watcher::Error {
        let status = kube::core::Status::failure("sendInitialEvents is forbidden", "Invalid")
            .with_code(code);
        watcher::Error::WatchStartFailed(kube::Error::Api(status.boxed()))
    }

    #[test]
    fn only_a_rejected_watch_start_is_a_refusal() {
        assert!(refusal(&refused(422)).unwrap().contains("forbidden"));
        assert!(refusal(&refused(400)).is_some());
        // Forbidden is permissions, Gone is an expired version: not about streaming.
        assert!(refusal(&refused(403)).is_none());
        assert!(refusal(&refused(410)).is_none());
        assert!(refusal(&watcher::Error::NoResourceVersion).is_none());
    }

    #[tokio::test]
    async fn only_forced_streaming_reports_a_refusal() {
        let forced = Refusals::new(InitialList::Streaming);
        forced.observe(&refused(422));
        forced.observe(&refused(400));
        assert!(forced.first().await.starts_with("(422)"));

        let auto = Refusals::new(InitialList::Auto);
        auto.observe(&refused(422));
        let waited = tokio::time::timeout(Duration::from_millis(50), auto.first()).await;
        assert!(waited.is_err(), "auto mode reported a refusal");
    }
}
