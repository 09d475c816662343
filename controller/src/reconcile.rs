//! One reconcile pass over one ModelSync: gather the facts, let [`plan`] decide, carry the plan
//! out with [`actions`] (delete old runs, ask the lambda and plan again with its answer, cancel,
//! create, write status), requeue when the plan says the next pass is due.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;
use modelsync_api::{ModelSync, ModelSyncStatus};
use tracing::{info, warn};

use crate::plan::{self, Answer, Facts, Now};
use crate::shard::{self, Adoption};
use crate::{actions, notify};

pub use crate::actions::{Error, FIELD_MANAGER};
pub use crate::context::Context;

pub async fn reconcile(ms: Arc<ModelSync>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_pass(&ms, &ctx).await;
    let label = match &result {
        Ok(_) => "success",
        Err(_) => "error",
    };
    ctx.metrics.reconciled(started.elapsed(), label);
    ctx.metrics.indexed_runs.set(ctx.runs.len() as i64);
    result
}

pub fn error_policy(ms: Arc<ModelSync>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(
        modelsync = %format!("{}/{}", ms.namespace().unwrap_or_default(), ms.name_any()),
        kind = error.metric_label(),
        "reconcile failed, retrying in 5s: {error}"
    );
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile_pass(ms: &ModelSync, ctx: &Context) -> Result<Action, Error> {
    // Before the first full list of runs, "no runs" means "unknown": acting on it could start
    // a second run after a restart.
    if !ctx.runs.ready() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    // Being deleted (foreground deletion waits for its runs to go): start nothing new.
    if ms.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ms.namespace().ok_or(Error::Incomplete("namespace"))?;
    let name = ms.name_any();
    let uid = ms.uid().ok_or(Error::Incomplete("uid"))?;
    let who = format!("{ns}/{name}");
    if !adopt_runs(ms, ctx, &ns, &name, &uid).await? {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let mut facts = Facts {
        modelsync: ms,
        namespace: &ns,
        name: &name,
        uid: &uid,
        runs: ctx
            .runs
            .runs_of(&ns, &name)
            .into_iter()
            .filter(|r| r.controller_uid.as_deref() == Some(uid.as_str()))
            .collect(),
        schedule: ctx.schedule.entry(&uid),
        now: Now::read(),
        jitter: rand::random::<f64>(),
        answer: None,
    };
    let mut plan = plan::plan(&facts);
    let polled_before = facts.schedule.poll.is_some();
    let failures_before = facts.schedule.failures();

    for run in &plan.delete {
        if actions::delete_run(ctx, &ns, run).await? {
            info!(modelsync = %who, run = %run, "collected old run");
            if let Some(record) = facts.runs.iter().find(|r| &r.name == run) {
                actions::record_collected(ms, ctx, record).await;
            }
        }
    }
    if let Some(ask) = &plan.ask {
        let asked = Instant::now();
        let result = ctx.lambdas.ask(ms, ask).await?;
        let outcome = match &result {
            Ok(a) if a.needs_sync => "yes",
            Ok(_) => "no",
            Err(e) => e.metric_label(),
        };
        ctx.metrics
            .lambda_called(&ns, &name, asked.elapsed(), outcome, result.is_ok());
        facts.answer = Some(Answer {
            result,
            at: Now::read(),
        });
        plan = plan::plan(&facts);
    }
    if let Some(lag) = plan.poll_lag {
        ctx.metrics.poll_lag.observe(lag.as_secs_f64());
        if ms.spec.poll_interval().is_ok_and(|interval| lag > interval) {
            ctx.metrics.polls_late.inc();
        }
    }
    if let Some(warning) = &plan.warning {
        warn!(modelsync = %who, "{warning}");
    }
    if let Some(old) = &plan.cancel {
        actions::cancel_run(ctx, &ns, old).await?;
        info!(modelsync = %who, run = %old, "cancelled run with outdated parameters (Replace)");
    }
    if let Some(run) = plan.create.take() {
        let created = actions::create_run(ctx, &ns, &run.name, run.body).await?;
        if !matches!(created, plan::Created::Rejected(_)) {
            info!(modelsync = %who, run = %run.name, "started run");
        }
        plan.created(&ns, &run.name, created, Now::read());
    }
    ctx.schedule.put(&uid, plan.schedule.clone());
    let written = actions::write_status(ms, ctx, &plan.observation, plan.status_time).await?;
    // Queued only once status records the change, so a restart finds it there (see notify).
    let replay = ctx.notifier.first_pass(&uid);
    if !ms.spec.notify.is_empty() {
        let ready = |s: Option<&ModelSyncStatus>| {
            s.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned())
        };
        let (before, after) = (ready(Some(&written.before)), ready(Some(&written.status)));
        let notices = notify::decide(&notify::PassFacts {
            namespace: &ns,
            name: &name,
            uid: &uid,
            told: &written.events,
            runs: &facts.runs,
            failures_before,
            failures_after: plan.schedule.failures(),
            answered: plan.observation.decision.is_some() && plan.schedule.failures() == 0,
            polled_before,
            ready_before: before.as_ref(),
            ready_after: after.as_ref(),
            replay,
            replay_window: ctx.notifier.replay_window(),
            now: Now::read().wall,
        });
        ctx.notifier.enqueue(&ms.spec.notify, notices);
    }
    Ok(match plan.due {
        None => Action::await_change(),
        Some(due) => {
            let wait = due.saturating_duration_since(Instant::now());
            Action::requeue(wait.max(Duration::from_millis(10)))
        }
    })
}

/// Whether this shard's index holds every run of the ModelSync, so a pass may act on it. A
/// ModelSync moved in from another shard brings runs labelled for that shard: they are
/// relabelled here and the pass waits (false) until the run watch shows them; see
/// [`crate::shard`] for why relabelling.
async fn adopt_runs(
    ms: &ModelSync,
    ctx: &Context,
    ns: &str,
    name: &str,
    uid: &str,
) -> Result<bool, Error> {
    let indexed: HashSet<String> = ctx
        .runs
        .runs_of(ns, name)
        .iter()
        .map(|r| r.name.clone())
        .collect();
    // A run this process just created is named in status before the watch shows it.
    let pending = ctx.schedule.entry(uid).pending.map(|p| p.name);
    let known = |run: &str| indexed.contains(run) || pending.as_deref() == Some(run);
    let mut unknown = shard::unknown_runs(ms.status.as_ref(), known);
    unknown.retain(|run| !ctx.run_known_missing(uid, run));
    if unknown.is_empty() {
        return Ok(true);
    }
    let listed = actions::list_runs_of(ctx, ns, name).await?;
    match shard::adoption(&ctx.shard, uid, &listed, known) {
        Adoption::Complete => {
            // Every run it owns is indexed, so the ones status names are gone.
            ctx.mark_runs_missing(uid, unknown);
            Ok(true)
        }
        Adoption::WaitForWatch => Ok(false),
        Adoption::Relabel(runs) => {
            for run in &runs {
                actions::relabel_run(ctx, ns, run, &ctx.shard).await?;
            }
            info!(modelsync = %format!("{ns}/{name}"), runs = ?runs, "adopted runs from another shard: relabelled for {}", ctx.shard.describe());
            Ok(false)
        }
    }
}
