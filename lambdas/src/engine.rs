//! Computes every route's answer when the mirror or the model source changes (or when time
//! makes an answer stale) and publishes them all at once, so requests only read memory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::builtins::retrain_on_new_data::CommitFact;
use crate::builtins::{
    Lambda, Route, Verdict, deploy_if_newer, retrain_if_stale, retrain_on_new_data,
};
use crate::mirror::{MirrorState, Synced};
use crate::sources::{Models, records};

/// How far back `retrain-on-new-data` looks for the commit a model was trained on.
const HISTORY_LIMIT: usize = 10_000;
/// Recompute at least this often, so nothing waits on a clock that was never scheduled.
const MAX_IDLE: Duration = Duration::from_secs(300);

/// One route's prepared reply.
#[derive(Clone, Debug)]
pub struct Served {
    pub status: StatusCode,
    pub body: Bytes,
    /// `yes`, `no`, `error` or `not_ready`, for the answers metric.
    pub outcome: &'static str,
    /// What a controller acts on (`needsSync` and `parameters`, not `reason` or `revision`);
    /// `None` for an error. A change of it is what [`changed_routes`] reports.
    pub decision: Option<String>,
}

/// Every route's reply at one moment.
#[derive(Debug, Default)]
pub struct Answers {
    pub ready: bool,
    pub routes: HashMap<String, Served>,
    /// The commit the answers were computed from.
    pub revision: Option<String>,
}

impl Answers {
    /// What routes answer before the first sync.
    pub fn not_ready(routes: &[Route]) -> Self {
        let body = error_body("not ready: the git mirror has not synced yet", None);
        let served = Served {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body,
            outcome: "not_ready",
            decision: None,
        };
        Answers {
            ready: false,
            routes: routes
                .iter()
                .map(|r| (r.path.clone(), served.clone()))
                .collect(),
            revision: None,
        }
    }
}

/// Where the models come from at compute time.
#[derive(Clone, Debug)]
pub enum ModelInput {
    /// Read from the synced tree at this path.
    Records(String),
    /// Polled elsewhere; `None` until the first poll.
    Polled(watch::Receiver<Option<Models>>),
}

/// The routes whose decision a controller would act on differently in `new` than in `old`:
/// `needsSync` or `parameters` changed, or the answer turned into an error or back. Against
/// the answers before the first sync (nobody acted on those), only routes answering yes.
pub fn changed_routes(old: &Answers, new: &Answers) -> Vec<String> {
    let mut changed: Vec<String> = new
        .routes
        .iter()
        .filter(|(path, served)| {
            if !old.ready {
                return served.outcome == "yes";
            }
            old.routes.get(*path).map(|o| &o.decision) != Some(&served.decision)
        })
        .map(|(path, _)| path.clone())
        .collect();
    changed.sort();
    changed
}

/// Recomputes answers forever; `changed` is told the routes [`changed_routes`] finds after each
/// computation, and must not block.
pub async fn run(
    routes: Arc<Vec<Route>>,
    mut mirror: watch::Receiver<MirrorState>,
    mut models: ModelInput,
    answers: Arc<ArcSwap<Answers>>,
    changed: impl Fn(Vec<String>) + Send,
) {
    let mut last: Option<(String, Option<Models>)> = None;
    let mut recheck: Option<DateTime<Utc>> = None;
    loop {
        let synced = mirror.borrow_and_update().synced.clone();
        let polled = match &mut models {
            ModelInput::Records(_) => None,
            ModelInput::Polled(rx) => Some(rx.borrow_and_update().clone()),
        };
        let now = Utc::now();
        if let Some(synced) = synced
            && polled.as_ref().is_none_or(Option::is_some)
        {
            let key = (synced.hash.clone(), polled.clone().flatten());
            let due = recheck.is_some_and(|at| at <= now);
            if last.as_ref() != Some(&key) || due {
                let (routes2, input) = (routes.clone(), models.clone());
                let polled_models = key.1.clone();
                let computed = tokio::task::spawn_blocking(move || {
                    let models = match (&input, polled_models) {
                        (ModelInput::Records(path), _) => {
                            records::load(&synced.worktree, path).map_err(|e| e.to_string())
                        }
                        (ModelInput::Polled(_), Some(m)) => m,
                        (ModelInput::Polled(_), None) => {
                            Err("the model source has not answered yet".into())
                        }
                    };
                    compute(&routes2, &synced, &models, Utc::now())
                })
                .await;
                match computed {
                    Ok((new, next)) => {
                        tracing::info!(revision = ?new.revision, "answers recomputed");
                        let flipped = changed_routes(&answers.load(), &new);
                        answers.store(Arc::new(new));
                        if !flipped.is_empty() {
                            tracing::info!(routes = ?flipped, "answers changed");
                            changed(flipped);
                        }
                        recheck = next;
                        last = Some(key);
                    }
                    Err(e) => tracing::error!(error = %e, "computing answers failed"),
                }
            }
        }
        // A deadline already past (the clock sat exactly on it) is retried shortly, not idled on.
        let wait = recheck
            .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::from_secs(1)))
            .unwrap_or(MAX_IDLE)
            .min(MAX_IDLE);
        let polled_changed = async {
            match &mut models {
                ModelInput::Polled(rx) => rx.changed().await,
                ModelInput::Records(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            r = mirror.changed() => if r.is_err() { return },
            r = polled_changed => if r.is_err() { return },
            () = tokio::time::sleep(wait) => {},
        }
    }
}

/// Every route's answer over one synced tree and one model list. Blocking (reads the tree).
pub fn compute(
    routes: &[Route],
    synced: &Synced,
    models: &Models,
    now: DateTime<Utc>,
) -> (Answers, Option<DateTime<Utc>>) {
    let revision = &synced.hash[..synced.hash.len().min(12)];
    let mut out = HashMap::new();
    let mut recheck: Option<DateTime<Utc>> = None;
    for route in routes {
        let decision = match &route.lambda {
            Lambda::RetrainIfStale { max_age } => {
                retrain_if_stale::decide(models, *max_age, now, revision)
            }
            Lambda::RetrainOnNewData { data_path } => {
                let history = history(&synced.worktree, data_path);
                retrain_on_new_data::decide(models, &history, data_path, revision)
            }
            Lambda::DeployIfNewer(pin) => {
                let file = std::fs::read_to_string(synced.worktree.join(&pin.file))
                    .map_err(|e| e.to_string());
                deploy_if_newer::decide(models, pin, &file, revision)
            }
        };
        if let Some(at) = decision.recheck_at {
            recheck = Some(recheck.map_or(at, |r| r.min(at)));
        }
        out.insert(route.path.clone(), render(decision, revision));
    }
    (
        Answers {
            ready: true,
            routes: out,
            revision: Some(synced.hash.clone()),
        },
        recheck,
    )
}

fn render(decision: Verdict, revision: &str) -> Served {
    match decision.answer {
        Ok(answer) => Served {
            status: StatusCode::OK,
            outcome: if answer.needs_sync { "yes" } else { "no" },
            decision: serde_json::to_string(&(answer.needs_sync, &answer.parameters)).ok(),
            body: Bytes::from(serde_json::to_vec(&answer).unwrap_or_default()),
        },
        Err(error) => Served {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            outcome: "error",
            decision: None,
            body: error_body(&error.to_string(), Some(revision)),
        },
    }
}

/// The body of a non-200 answer: the message for people, in the shape the protocol documents.
pub fn error_body(message: &str, revision: Option<&str>) -> Bytes {
    let mut body = serde_json::json!({ "error": message, "reason": message });
    if let Some(r) = revision {
        body["revision"] = r.into();
    }
    Bytes::from(body.to_string())
}

/// The first-parent history from the checked-out commit, newest first, marking the commits that
/// changed anything under `data_path`.
pub fn history(worktree: &Path, data_path: &str) -> Result<Vec<CommitFact>, String> {
    let repo = git2::Repository::open(worktree).map_err(|e| e.message().to_owned())?;
    let path = Path::new(data_path.trim_end_matches('/'));
    let entry_id = |commit: &git2::Commit| {
        commit
            .tree()
            .ok()
            .and_then(|t| t.get_path(path).ok())
            .map(|e| e.id())
    };
    let mut commit = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|e| e.message().to_owned())?;
    let mut facts = Vec::new();
    while facts.len() < HISTORY_LIMIT {
        let here = entry_id(&commit);
        // In a shallow clone the parent is missing: the walk ends there.
        let parent = if commit.parent_count() == 0 {
            None
        } else {
            commit.parent(0).ok()
        };
        let touches_data = match &parent {
            Some(p) => entry_id(p) != here,
            None => here.is_some(),
        };
        facts.push(CommitFact {
            id: commit.id().to_string(),
            touches_data,
        });
        match parent {
            Some(p) => commit = p,
            None => break,
        }
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::ModelRecord;

    fn routes() -> Arc<Vec<Route>> {
        let text = "mirror: {repo: x, root: r}\nmodels: {records: m}\nroutes:\n  /r: {lambda: retrain-if-stale, maxAge: 1h}\n";
        Arc::new(crate::config::parse(text, Path::new(".")).unwrap().routes)
    }

    fn model(created: DateTime<Utc>) -> ModelRecord {
        ModelRecord {
            id: "m1".into(),
            created,
            data_revision: None,
            metrics: Default::default(),
        }
    }

    async fn wait_for(
        answers: &ArcSwap<Answers>,
        check: impl Fn(&Answers) -> bool,
    ) -> Arc<Answers> {
        for _ in 0..200 {
            let now = answers.load_full();
            if check(&now) {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("answers never changed: {:?}", answers.load().routes);
    }

    fn needs_sync(a: &Answers) -> Option<bool> {
        let body: serde_json::Value = serde_json::from_slice(&a.routes["/r"].body).ok()?;
        body["needsSync"].as_bool()
    }

    #[test]
    fn changes_a_controller_acts_on_are_reported_and_nothing_else() {
        let served = |outcome, decision: Option<&str>, body: &str| Served {
            status: StatusCode::OK,
            body: Bytes::from(body.to_owned()),
            outcome,
            decision: decision.map(str::to_owned),
        };
        let answers = |routes: Vec<(&str, Served)>| Answers {
            ready: true,
            routes: routes.into_iter().map(|(p, s)| (p.to_owned(), s)).collect(),
            revision: None,
        };
        let no = Some("[false,{}]");
        let old = answers(vec![
            ("/reason", served("no", no, "model is fresh")),
            ("/params", served("yes", Some(r#"[true,{"m":"1"}]"#), "")),
            ("/error", served("error", None, "registry down")),
            ("/broke", served("no", no, "")),
            ("/flip", served("no", no, "")),
        ]);
        let new = answers(vec![
            ("/reason", served("no", no, "model is 2h old, still fresh")),
            ("/params", served("yes", Some(r#"[true,{"m":"2"}]"#), "")),
            ("/error", served("error", None, "registry still down")),
            ("/broke", served("error", None, "no model")),
            ("/flip", served("yes", Some("[true,{}]"), "")),
        ]);
        assert_eq!(
            changed_routes(&old, &new),
            vec!["/broke", "/flip", "/params"]
        );
        let before_first_sync = Answers::default();
        assert_eq!(
            changed_routes(&before_first_sync, &new),
            vec!["/flip", "/params"],
            "after start, only the routes answering yes"
        );
        assert!(changed_routes(&new, &new).is_empty());
    }

    #[tokio::test]
    async fn recomputes_on_a_new_commit_and_on_a_model_change() {
        let tree = tempfile::tempdir().unwrap();
        let answers = Arc::new(ArcSwap::from_pointee(Answers::not_ready(&routes())));
        let (mirror_tx, mirror_rx) = watch::channel(MirrorState::default());
        let (models_tx, models_rx) = watch::channel(None);
        tokio::spawn(run(
            routes(),
            mirror_rx,
            ModelInput::Polled(models_rx),
            answers.clone(),
            |_| {},
        ));

        let synced = |hash: &str| Synced {
            hash: hash.into(),
            worktree: tree.path().to_path_buf(),
        };
        mirror_tx.send_modify(|s| s.synced = Some(synced("aaaa")));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !answers.load().ready,
            "no answers before the model source has answered"
        );

        models_tx.send_replace(Some(Ok(vec![model(Utc::now())])));
        let a = wait_for(&answers, |a| a.ready).await;
        assert_eq!(needs_sync(&a), Some(false));
        assert_eq!(a.revision.as_deref(), Some("aaaa"));

        models_tx.send_replace(Some(Ok(vec![])));
        let a = wait_for(&answers, |a| needs_sync(a) == Some(true)).await;
        assert_eq!(a.routes["/r"].outcome, "yes");

        mirror_tx.send_modify(|s| s.synced = Some(synced("bbbb")));
        wait_for(&answers, |a| a.revision.as_deref() == Some("bbbb")).await;

        models_tx.send_replace(Some(Err("registry down".into())));
        let a = wait_for(&answers, |a| {
            a.routes["/r"].status == StatusCode::INTERNAL_SERVER_ERROR
        })
        .await;
        assert_eq!(a.routes["/r"].outcome, "error");
    }

    #[tokio::test]
    async fn a_model_turning_stale_is_noticed_without_any_change() {
        let tree = tempfile::tempdir().unwrap();
        let answers = Arc::new(ArcSwap::from_pointee(Answers::not_ready(&routes())));
        let (mirror_tx, mirror_rx) = watch::channel(MirrorState::default());
        // Stale in half a second: the engine must wake by itself to say so.
        let created = Utc::now() - chrono::Duration::hours(1) + chrono::Duration::milliseconds(500);
        let (_models_tx, models_rx) = watch::channel(Some(Ok(vec![model(created)])));
        tokio::spawn(run(
            routes(),
            mirror_rx,
            ModelInput::Polled(models_rx),
            answers.clone(),
            |_| {},
        ));
        mirror_tx.send_modify(|s| {
            s.synced = Some(Synced {
                hash: "aaaa".into(),
                worktree: tree.path().into(),
            })
        });
        let a = wait_for(&answers, |a| a.ready).await;
        assert_eq!(needs_sync(&a), Some(false));
        wait_for(&answers, |a| needs_sync(a) == Some(true)).await;
    }
}
