//! `modelsync lambda-check URL`: calls a lambda as the controller does and says precisely
//! whether its answer follows the protocol.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use modelsync_api::lambda::{self, MAX_ANSWER_BYTES, NeedsSyncAnswer};

/// `modelsync lambda-check`.
#[derive(Clone, Debug, clap::Args)]
pub struct LambdaCheckArgs {
    /// The lambda's URL, as it would be in a ModelSync's needsSyncUrl.
    pub url: String,
    /// How long to wait for the answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// File holding a bearer token to send.
    #[arg(long)]
    pub bearer_token_file: Option<PathBuf>,
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

/// Calls the lambda once and judges the reply; `Err` says what does not follow the protocol.
pub async fn check(args: &LambdaCheckArgs) -> Result<Report, String> {
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    let mut request = client
        .get(&args.url)
        .header("Accept", "application/json")
        .header(lambda::HEADER_NAMESPACE, &args.namespace)
        .header(lambda::HEADER_NAME, &args.name);
    if let Some(file) = &args.bearer_token_file {
        let token = std::fs::read_to_string(file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        request = request.bearer_auth(token.trim());
    }
    let mut response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            format!(
                "no answer within {}",
                humantime::format_duration(args.timeout)
            )
        } else {
            format!("calling the lambda: {e}")
        }
    })?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Read at most one byte past the limit: enough to tell it was exceeded, no more.
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER_BYTES {
            break;
        }
    }
    let answer = lambda::parse_answer(status, &body).map_err(|e| e.to_string())?;
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
        return Err(format!(
            "needsSync is {}, expected {expected}",
            answer.needs_sync
        ));
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
        Err(e) => anyhow::bail!(
            "{} does not follow the modelsync lambda protocol v1: {e}",
            args.url
        ),
    }
}
