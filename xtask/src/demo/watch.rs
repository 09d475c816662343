//! The story's eyes: watches the ModelSyncs and PipelineRuns of the story's namespace, tells
//! what they show, and waits until the next beat of the story has happened.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use modelsync_api::ModelSync;
use modelsync_api::modelsync::LABEL_NAME;
use modelsync_testenv::tekton::pipelineruns;

use super::narrate::{Decisions, Narrator};

/// What the story has seen happen so far.
#[derive(Default)]
pub struct Progress {
    pub trained: bool,
    /// The models pinned by merged pull requests, in merge order.
    pub merged: Vec<String>,
    pub deploy_run_collected: bool,
}

/// Who runs the pipelines: the played story plays Tekton for each run, the real one tells
/// what the real Tekton did.
pub trait Tekton {
    /// The ModelSync whose collected run is the story's last beat.
    const DEPLOYER: &'static str;

    /// Takes in a run's latest state, telling and recording in `progress` what it shows.
    async fn changed(&mut self, run: &DynamicObject, progress: &mut Progress) -> Result<()>;

    /// Tells that the controller collected an old run.
    fn collected(&self, run: &str);
}

type Events<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

pub struct Watch<'a, T> {
    pub say: Narrator,
    pub progress: Progress,
    tekton: T,
    modelsyncs: Events<ModelSync>,
    runs: Events<DynamicObject>,
    decisions: Decisions,
    deadline: Instant,
    stalled: Box<dyn Fn() -> String + 'a>,
}

impl<'a, T: Tekton> Watch<'a, T> {
    /// Watches `namespace`; the whole story must be told `within`, else it fails showing what
    /// `stalled` says about the cluster.
    pub fn new(
        say: Narrator,
        client: &Client,
        namespace: &str,
        tekton: T,
        within: Duration,
        stalled: impl Fn() -> String + 'a,
    ) -> Self {
        let modelsyncs: Api<ModelSync> = Api::namespaced(client.clone(), namespace);
        Watch {
            say,
            progress: Progress::default(),
            tekton,
            modelsyncs: watcher(modelsyncs, watcher::Config::default()).boxed(),
            runs: watcher(pipelineruns(client, namespace), watcher::Config::default()).boxed(),
            decisions: Decisions::default(),
            deadline: Instant::now() + within,
            stalled: Box::new(stalled),
        }
    }

    /// Tells what happens until `done` holds; `what` names the beat for when it never comes.
    pub async fn until(&mut self, what: &str, done: impl Fn(&Progress) -> bool) -> Result<()> {
        while !done(&self.progress) {
            if Instant::now() > self.deadline {
                bail!("the demo stalled waiting for {what}; {}", (self.stalled)());
            }
            self.next().await?;
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<()> {
        tokio::select! {
            Some(ev) = self.modelsyncs.next() => {
                if let Ok(watcher::Event::Apply(ms) | watcher::Event::InitApply(ms)) = ev {
                    self.decisions.tell(self.say, &ms);
                }
            }
            Some(ev) = self.runs.next() => match ev {
                Ok(watcher::Event::Apply(run) | watcher::Event::InitApply(run)) => {
                    self.tekton.changed(&run, &mut self.progress).await?;
                }
                Ok(watcher::Event::Delete(run)) => {
                    self.tekton.collected(&run.name_any());
                    if run.labels().get(LABEL_NAME).map(String::as_str) == Some(T::DEPLOYER) {
                        self.progress.deploy_run_collected = true;
                    }
                }
                _ => {}
            },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        Ok(())
    }
}
