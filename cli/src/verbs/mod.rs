//! The day-two verbs: `get`, `suspend`, `resume`, `sync` (and `sync --dry-run`), `history`. Each error names what was wrong and
//! what to do, and its kind decides the exit code scripts see.

pub mod dry_run;
pub mod get;
pub mod history;
pub mod suspend;
pub mod sync;

use std::process::ExitCode;

use kube::Api;
use modelsync_api::ModelSync;
use modelsync_api::lambda::ParamValue;

/// Why a verb failed.
#[derive(Debug, thiserror::Error)]
pub enum VerbError {
    /// The thing asked for failed: the run failed, the lambda erred, the cluster refused.
    #[error("{0}")]
    Failed(String),
    /// The command cannot be carried out as given: a bad flag, no such ModelSync, no cluster.
    #[error("{0}")]
    Usage(String),
}

impl VerbError {
    /// 1 when the thing failed, 2 when the command was wrong (like clap's own usage errors).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            VerbError::Failed(_) => ExitCode::from(1),
            VerbError::Usage(_) => ExitCode::from(2),
        }
    }
}

/// A Kubernetes API error in words: a missing ModelSync is a usage error, the rest failures.
pub fn api_error(what: &str, ns: &str, e: kube::Error) -> VerbError {
    match &e {
        kube::Error::Api(s) if s.code == 404 => VerbError::Usage(format!(
            "{what}: not found in namespace {ns}; `modelsync get -n {ns}` lists the ModelSyncs \
             there (is the CRD installed? `modelsync crd | kubectl apply -f -`)"
        )),
        kube::Error::Api(s) if s.code == 403 => VerbError::Failed(format!(
            "{what}: forbidden: {}; ask for RBAC on modelsyncs.modelsync.dev in {ns}",
            s.message
        )),
        _ => VerbError::Failed(format!(
            "{what}: {e}; is the cluster reachable (check --kubeconfig / --context)?"
        )),
    }
}

/// The ModelSyncs of `namespace` (or every namespace).
pub fn modelsyncs(client: &kube::Client, namespace: Option<&str>) -> Api<ModelSync> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Pipeline params as `name=value name=[a,b]`, for one line of a table or a report.
pub fn params_text(params: &std::collections::BTreeMap<String, ParamValue>) -> String {
    let words: Vec<String> = params
        .iter()
        .map(|(k, v)| match v {
            ParamValue::String(s) => format!("{k}={s}"),
            ParamValue::Array(items) => format!("{k}=[{}]", items.join(",")),
        })
        .collect();
    words.join(" ")
}

/// Rows as aligned columns like kubectl's, three spaces apart; the first row is the header.
pub fn align(lines: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..lines.first().map_or(0, Vec::len))
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// The runtime for one verb: a single thread is plenty for a few API calls.
pub fn block_on<T>(
    work: impl std::future::Future<Output = Result<T, VerbError>>,
) -> Result<T, VerbError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| VerbError::Failed(format!("starting the async runtime: {e}")))?
        .block_on(work)
}
