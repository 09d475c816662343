//! One reconcile pass over one ModelSync: gather the facts, let [`plan`] decide, carry the plan
//! out with [`actions`] (delete old runs, ask the lambda and plan again with its answer, cancel,
//! create, write status), requeue when the plan says the next pass is due.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;
use modelsync_api::ModelSync;
use modelsync_api::lambda::NeedsSyncAnswer;
use modelsync_api::lambda_client::Ask;
use tracing::{info, warn};

use crate::actions;
use crate::lambda_clients::LookupError;
use crate::plan::{self, Answer, AskError, AskLambda, Facts, Now};

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

    for run in &plan.delete {
        if actions::delete_run(ctx, &ns, run).await? {
            info!(modelsync = %who, run = %run, "collected old run");
        }
    }
    if let Some(ask) = &plan.ask {
        let asked = Instant::now();
        let result = ask_lambda(ctx, ms, &ns, &name, ask).await?;
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
    actions::write_status(ms, ctx, &plan.observation, plan.status_time).await?;
    Ok(match plan.due {
        None => Action::await_change(),
        Some(due) => {
            let wait = due.saturating_duration_since(Instant::now());
            Action::requeue(wait.max(Duration::from_millis(10)))
        }
    })
}

/// Asks the lambda with the credentials of the ModelSync's Secret, if it names one. `Err` only
/// when the API server failed to hand out the Secret; everything else is the answer's outcome.
async fn ask_lambda(
    ctx: &Context,
    ms: &ModelSync,
    ns: &str,
    name: &str,
    ask: &AskLambda,
) -> Result<Result<NeedsSyncAnswer, AskError>, Error> {
    let secret = ms.spec.lambda_secret_ref.as_ref();
    let lambda = match ctx.lambdas.for_secret(ns, secret).await {
        Ok(lambda) => lambda,
        Err(LookupError::Secret(e)) => return Ok(Err(AskError::Secret(e))),
        Err(LookupError::Api { secret, source }) => {
            return Err(Error::Kube {
                doing: format!("reading Secret {secret}"),
                source,
            });
        }
    };
    let result = lambda
        .client
        .ask(&Ask {
            url: &ms.spec.needs_sync_url,
            namespace: ns,
            name,
            last_run: ask.last_run.as_deref(),
            timeout: ask.timeout,
            bearer_token: lambda.token(),
        })
        .await;
    if let (Err(_), Some(secret)) = (&result, secret) {
        // A rotated token or certificate may be why it failed: the retry reads the Secret again.
        ctx.lambdas.forget(ns, &secret.name);
    }
    Ok(result.map_err(AskError::Call))
}
