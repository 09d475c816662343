//! `modelsync lambda-check URL`: calls a lambda with the controller's own client
//! (`modelsync_api::lambda_client`) and says precisely whether its answer follows the protocol.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use modelsync_api::lambda::{MAX_ANSWER_BYTES, NeedsSyncAnswer};
use modelsync_api::lambda_client::{Ask, CallError, ClientOptions, LambdaClient, SetupError};

/// `modelsync lambda-check`.
#[derive(Clone, Debug, clap::Args)]
pub struct LambdaCheckArgs {
    /// The lambda's URL, as it would be in a ModelSync's needsSyncUrl.
    pub url: String,
    /// How long to wait for the answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// File holding a bearer token, sent as `Authorization: Bearer` (what a lambda server with
    /// `auth.bearerTokenFile` expects).
    #[arg(long = "token-file", visible_alias = "bearer-token-file")]
    pub bearer_token_file: Option<PathBuf>,
    /// PEM file of CA certificates trusted besides the system roots, for an https lambda whose
    /// certificate a private CA signed.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Sent as X-ModelSync-Namespace.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Sent as X-ModelSync-Name.
    #[arg(long, default_value = "lambda-check")]
    pub name: String,
    /// Also fail unless needsSync has this value.
    #[arg(long)]
    pub expect_needs_sync: Option<bool>,
}

/// A valid answer and what is worth a warning in it.
#[derive(Debug)]
pub struct Report {
    pub answer: NeedsSyncAnswer,
    pub warnings: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.answer;
        writeln!(f, "needsSync: {}", a.needs_sync)?;
        for (k, v) in &a.parameters {
            writeln!(f, "parameter {k}: {v}")?;
        }
        writeln!(f, "reason: {}", a.reason.as_deref().unwrap_or("(none)"))?;
        writeln!(f, "revision: {}", a.revision.as_deref().unwrap_or("(none)"))?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// Why `lambda-check` failed: the shared client's error, or a local problem before the call.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The token or CA file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The client could not be built with the CA file at `path`.
    #[error("{path}: {source}")]
    Setup {
        path: String,
        #[source]
        source: SetupError,
    },
    /// The call failed, or its answer does not follow the protocol.
    #[error("{}", call_problem(.0))]
    Call(CallError),
    /// A valid answer, but not the one `--expect-needs-sync` asked for.
    #[error("needsSync is {got}, expected {expected}")]
    Unexpected { got: bool, expected: bool },
}

/// The call's failure in `lambda-check`'s words: the protocol breach alone (the URL is already
/// in the verdict line), so a lambda author reads first what to fix.
fn call_problem(e: &CallError) -> String {
    match e {
        CallError::Unreachable { detail, .. } => format!("calling the lambda: {detail}"),
        CallError::Denied { refusal, .. } => format!("not called: {refusal}"),
        CallError::Timeout { timeout, .. } => {
            format!("no answer within {}", humantime::format_duration(*timeout))
        }
        CallError::TooLarge { .. } => {
            format!("the answer is longer than the {MAX_ANSWER_BYTES} bytes a lambda may send")
        }
        CallError::Answer { error, .. } => error.to_string(),
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, CheckError> {
    std::fs::read(path).map_err(|source| CheckError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Calls the lambda once, with the controller's client, and judges the reply; `Err` says what
/// does not follow the protocol.
pub async fn check(args: &LambdaCheckArgs) -> Result<Report, CheckError> {
    let ca = args.ca_file.as_deref().map(read).transpose()?;
    let client = LambdaClient::with_options(&ClientOptions {
        user_agent: concat!("modelsync-lambda-check/", env!("CARGO_PKG_VERSION")),
        extra_ca_pem: ca.as_deref(),
        ..ClientOptions::default()
    })
    .map_err(|source| CheckError::Setup {
        path: args
            .ca_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        source,
    })?;
    let token = match &args.bearer_token_file {
        Some(file) => Some(String::from_utf8_lossy(&read(file)?).trim().to_owned()),
        None => None,
    };
    let reply = client
        .ask_for_reply(&Ask {
            url: &args.url,
            namespace: &args.namespace,
            name: &args.name,
            last_run: None,
            timeout: args.timeout,
            bearer_token: token.as_deref(),
        })
        .await
        .map_err(CheckError::Call)?;
    let answer = reply.answer;
    let content_type = reply.content_type;
    let mut warnings = Vec::new();
    if !content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/json"))
    {
        warnings.push(format!(
            "Content-Type is {}, not application/json",
            content_type.as_deref().unwrap_or("missing")
        ));
    }
    for (k, v) in &answer.parameters {
        if v.is_empty() {
            warnings.push(format!("parameter {k} is empty: a run would get no value"));
        }
    }
    if answer.reason.is_none() {
        warnings.push("no reason: people reading status will not know why".into());
    }
    if let Some(expected) = args.expect_needs_sync
        && answer.needs_sync != expected
    {
        return Err(CheckError::Unexpected {
            got: answer.needs_sync,
            expected,
        });
    }
    Ok(Report { answer, warnings })
}

/// Runs `modelsync lambda-check`; prints the verdict and fails when the answer is not valid.
pub fn run(args: LambdaCheckArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match runtime.block_on(check(&args)) {
        Ok(report) => {
            println!(
                "OK: {} answers following the modelsync lambda protocol v1",
                args.url
            );
            print!("{report}");
            Ok(())
        }
        Err(CheckError::Call(CallError::Answer { error, excerpt, .. })) => anyhow::bail!(
            "{} does not follow the modelsync lambda protocol v1: {error}; body: {excerpt}",
            args.url
        ),
        Err(e) => anyhow::bail!("{}", verdict(&args.url, &e)),
    }
}

/// The failure line: a lambda that could not be asked is reported as unreachable (with the
/// operating system's reason), not as breaking the protocol, since its author has nothing to
/// fix in the answer.
pub fn verdict(url: &str, e: &CheckError) -> String {
    match e {
        CheckError::Call(CallError::Unreachable { detail, .. }) => format!(
            "{url} is unreachable: {detail}; check the URL and that the lambda is running and \
             reachable from here"
        ),
        CheckError::Call(CallError::Timeout { timeout, .. }) => format!(
            "{url} did not answer within {}; is the lambda overloaded, or is --timeout too short?",
            humantime::format_duration(*timeout)
        ),
        CheckError::Call(CallError::Denied { refusal, .. }) => {
            format!("{url} was not called: {refusal}")
        }
        CheckError::Read { .. } | CheckError::Setup { .. } => {
            format!("could not call {url}: {e}")
        }
        _ => format!("{url} does not follow the modelsync lambda protocol v1: {e}"),
    }
}
