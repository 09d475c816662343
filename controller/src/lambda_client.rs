//! Asking a needs-sync lambda: `GET` with the protocol's headers, a deadline, and a cap on the
//! answer's size. Any failure is an error with a message saying exactly what went wrong; an
//! error is never read as "no".

use std::time::{Duration, Instant};

use modelsync_api::lambda::{
    AnswerError, HEADER_LAST_RUN, HEADER_NAME, HEADER_NAMESPACE, MAX_ANSWER_BYTES, NeedsSyncAnswer,
    parse_answer,
};

/// Characters of a bad answer quoted in messages.
const EXCERPT_CHARS: usize = 120;

/// Who is asking, and how long the lambda may take.
pub struct Ask<'a> {
    pub url: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub last_run: Option<&'a str>,
    pub timeout: Duration,
}

/// Why a lambda call did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No HTTP answer: refused connection, unknown host, reset.
    Unreachable { url: String, detail: String },
    /// No complete answer within `lambdaTimeout`.
    Timeout { url: String, timeout: Duration },
    /// The body exceeded [`MAX_ANSWER_BYTES`]; reading stopped there.
    TooLarge { url: String },
    /// An answer that breaks the protocol (status, JSON, types).
    Answer {
        url: String,
        error: AnswerError,
        excerpt: String,
        elapsed: Duration,
    },
}

impl CallError {
    /// The condition reason: the lambda could not be asked, or answered wrongly.
    pub fn reason(&self) -> &'static str {
        match self {
            CallError::Unreachable { .. } | CallError::Timeout { .. } => "LambdaError",
            CallError::Answer {
                error: AnswerError::Status { .. },
                ..
            } => "LambdaError",
            CallError::TooLarge { .. } | CallError::Answer { .. } => "InvalidLambdaResponse",
        }
    }

    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            CallError::Unreachable { .. } => "unreachable",
            CallError::Timeout { .. } => "timeout",
            CallError::TooLarge { .. } => "too_large",
            CallError::Answer { error, .. } => error.kind(),
        }
    }

    /// The message for status conditions: stable across retries of the same failure (no
    /// timings), so a lambda that keeps failing the same way causes no status writes.
    pub fn condition_message(&self) -> String {
        match self {
            CallError::Unreachable { url, detail } => {
                format!("lambda GET {url} failed: {detail}; is the lambda's Service up?")
            }
            CallError::Timeout { url, timeout } => format!(
                "lambda GET {url} did not answer within {}s (spec.lambdaTimeout)",
                timeout.as_secs_f64()
            ),
            CallError::TooLarge { url } => format!(
                "lambda GET {url} sent more than {MAX_ANSWER_BYTES} bytes; an answer must be a \
                 small JSON object"
            ),
            CallError::Answer {
                url,
                error: error @ AnswerError::Status { .. },
                ..
            } => format!("lambda GET {url}: {error}"),
            CallError::Answer {
                url,
                error,
                excerpt,
                ..
            } => format!("lambda GET {url} answered wrongly: {error}; body: {excerpt}"),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Answer { elapsed, .. } => write!(
                f,
                "{} (after {:.1}s)",
                self.condition_message(),
                elapsed.as_secs_f64()
            ),
            _ => f.write_str(&self.condition_message()),
        }
    }
}

impl std::error::Error for CallError {}

/// A pooled HTTP client for lambdas.
#[derive(Clone)]
pub struct LambdaClient {
    http: reqwest::Client,
}

impl Default for LambdaClient {
    fn default() -> Self {
        Self::new()
    }
}

impl LambdaClient {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("modelsync-controller/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .expect("a client with static settings builds");
        LambdaClient { http }
    }

    /// Asks the lambda; `Ok` only for an answer that follows the protocol.
    pub async fn ask(&self, ask: &Ask<'_>) -> Result<NeedsSyncAnswer, CallError> {
        let started = Instant::now();
        match tokio::time::timeout(ask.timeout, self.ask_inner(ask, started)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout {
                url: ask.url.to_owned(),
                timeout: ask.timeout,
            }),
        }
    }

    async fn ask_inner(
        &self,
        ask: &Ask<'_>,
        started: Instant,
    ) -> Result<NeedsSyncAnswer, CallError> {
        let url = || ask.url.to_owned();
        let mut req = self
            .http
            .get(ask.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(HEADER_NAMESPACE, ask.namespace)
            .header(HEADER_NAME, ask.name);
        if let Some(run) = ask.last_run {
            req = req.header(HEADER_LAST_RUN, run);
        }
        let mut res = req.send().await.map_err(|e| CallError::Unreachable {
            url: url(),
            detail: describe(&e),
        })?;
        let status = res.status().as_u16();
        let mut body = Vec::new();
        loop {
            match res.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                        return Err(CallError::TooLarge { url: url() });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(CallError::Unreachable {
                        url: url(),
                        detail: format!("reading the answer failed: {}", describe(&e)),
                    });
                }
            }
        }
        parse_answer(status, &body).map_err(|error| CallError::Answer {
            url: url(),
            error,
            excerpt: excerpt(&body),
            elapsed: started.elapsed(),
        })
    }
}

/// The innermost cause: reqwest's own message ("error sending request") says little.
fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty)".to_owned();
    }
    let mut out: String = text.chars().take(EXCERPT_CHARS).collect();
    if out.len() < text.len() {
        out.push_str("...");
    }
    format!("{out:?}")
}
