//! The two watches a controller runs on: PipelineRuns carrying `modelsync.dev/name` (feeding
//! the [`RunIndex`] and waking their ModelSync) and ModelSyncs (cached, trimmed, and forgotten
//! by the schedule when deleted), and the check at start-up that their CRDs are installed.
//! Both select this controller's [`Shard`] on the server side, so a shard holds only its own
//! objects in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result, bail};
use futures::{Stream, StreamExt};
use kube::api::ListParams;
use kube::runtime::controller::Controller;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use modelsync_api::{ModelSync, PipelineRun};

use crate::context::Context;
use crate::lineage::Lineage;
use crate::list_strategy::{ListStrategy, Refusals};
use crate::metrics::Metrics;
use crate::run_index::RunIndex;
use crate::shard::Shard;
use crate::watch_backoff::{NoSharedBackoff, WatchBackoff};

/// The annotation `kubectl apply` keeps its copy of the whole applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The APIs to watch: one namespace, or all.
pub fn apis(client: &Client, namespace: Option<&str>) -> (Api<ModelSync>, Api<PipelineRun>) {
    match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    }
}

/// Runs labelled for a ModelSync of `shard`, applied to `index` as they come.
pub fn runs(
    api: Api<PipelineRun>,
    index: RunIndex,
    metrics: Arc<Metrics>,
    shard: &Shard,
    (strategy, refusals): (ListStrategy, Refusals),
    lineage: Option<Arc<Lineage>>,
) -> impl Stream<Item = Result<PipelineRun, watcher::Error>> + Send + 'static {
    watcher(api, strategy.config().labels(&shard.run_selector()))
        .backoff(WatchBackoff::default())
        .inspect(move |ev| match ev {
            Ok(ev) => {
                if let Some(done) = index.apply(ev) {
                    metrics.run_finished(&done.namespace, &done.modelsync, done.result);
                }
                if let Some(lineage) = &lineage {
                    lineage.observe(ev);
                }
            }
            Err(e) => refusals.observe(e),
        })
        .touched_objects()
}

/// The controller over a ModelSync watch of our own (rather than `Controller::new`'s), so a
/// deleted ModelSync's schedule entry is forgotten: the reconciler is never called for an
/// object that is gone. Returns a flag set once the first list of ModelSyncs is in.
///
/// A ModelSync relabelled for another shard leaves the watch's selection, which the API server
/// reports as a deletion: it is forgotten the same way, and nothing is deleted. Should a pass
/// for it be under way at that moment, the run it could create is named by the decision, so
/// the new shard deciding the same gets AlreadyExists rather than a second run.
///
/// The flag is ours rather than the cache's `wait_until_ready`: that future wakes only the
/// last task that polled it, and the controller's own runner polls it too, so a second waiter
/// could sleep forever (a fresh install's /readyz stayed 503).
pub fn controller(
    api: Api<ModelSync>,
    runs: impl Stream<Item = Result<PipelineRun, watcher::Error>> + Send + 'static,
    ctx: Arc<Context>,
    (strategy, refusals): (ListStrategy, Refusals),
) -> (Controller<ModelSync>, Arc<AtomicBool>) {
    let (store, writer) = reflector::store::<ModelSync>();
    let listed = Arc::new(AtomicBool::new(false));
    let mark_listed = listed.clone();
    let config = strategy
        .config()
        .any_semantic()
        .labels(&ctx.shard.modelsync_selector());
    let modelsyncs = watcher(api, config)
        .backoff(WatchBackoff::default())
        // The cache keeps only what passes read: managed fields and kubectl's copy of the last
        // applied object would more than double each cached ModelSync.
        .modify(|ms| {
            ms.managed_fields_mut().clear();
            ms.annotations_mut().remove(LAST_APPLIED);
        })
        .reflect(writer)
        .inspect(move |ev| match ev {
            Ok(watcher::Event::Delete(ms)) => {
                if let Some(uid) = ms.uid() {
                    ctx.forget(&uid);
                }
                ctx.metrics
                    .forget_modelsync(&ms.namespace().unwrap_or_default(), &ms.name_any());
            }
            Ok(watcher::Event::InitDone) => mark_listed.store(true, Ordering::Release),
            Err(e) => refusals.observe(e),
            _ => {}
        })
        .touched_objects()
        .filter_map(|ev| async move {
            // Deletions need no pass; the schedule entry was dropped above.
            match ev {
                Ok(ms) if ms.metadata.deletion_timestamp.is_none() => Some(Ok(ms)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            }
        });
    let controller = Controller::for_stream(modelsyncs, store)
        .owns_stream(runs)
        .trigger_backoff(NoSharedBackoff);
    (controller, listed)
}

/// Fails with a message saying what to install when the CRDs this controller needs are missing.
pub async fn check_crds(client: &Client, namespace: Option<&str>) -> Result<()> {
    let lp = ListParams::default().limit(1);
    let (modelsyncs, runs) = apis(client, namespace);
    match modelsyncs.list_metadata(&lp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => bail!(
            "the ModelSync CRD (modelsyncs.modelsync.dev) is not installed in this cluster: \
             install it with `modelsync crd | kubectl apply -f -` or `kubectl apply -k kustomize/base`"
        ),
        Err(e) => return Err(e).context(
            "listing ModelSyncs (is the cluster reachable, and may this identity list modelsyncs?)",
        ),
    }
    match runs.list_metadata(&lp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => bail!(
            "Tekton Pipelines is not installed (no pipelineruns.tekton.dev/v1): install Tekton \
             Pipelines v0.59 or newer before starting modelsync"
        ),
        Err(e) => {
            Err(e).context("listing PipelineRuns (may this identity list pipelineruns.tekton.dev?)")
        }
    }
}
