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

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, WatchEvent, WatchParams};
use kube::runtime::watcher;
use modelsync_api::ModelSync;
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

/// Asks the API server whether it serves streaming lists, and logs which strategy is used
/// and why.
pub async fn probe(api: &Api<ModelSync>) -> ListStrategy {
    match tokio::time::timeout(PROBE_TIMEOUT * 2, ends_initial_events(api)).await {
        Ok(Ok(())) => {
            info!("initial lists: streaming (the API server supports sendInitialEvents)");
            ListStrategy::Streaming
        }
        Ok(Err(why)) => {
            info!("initial lists: paged (the API server does not serve streaming lists: {why})");
            ListStrategy::Paged
        }
        Err(_) => {
            info!(
                "initial lists: paged (a streaming-list probe got no answer in {:?})",
                PROBE_TIMEOUT * 2
            );
            ListStrategy::Paged
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
