//! Asking a needs-sync lambda: `GET` with the protocol's headers, optional credentials, a
//! deadline, and a cap on the answer's size. The controller and `modelsync lambda-check` both
//! use this client, so they send the same request and judge the reply the same way. Any
//! failure is an error with a message saying exactly what went wrong; an error is never read
//! as "no". Redirects are reported, never followed; with [`EgressRules`] the client connects
//! only to addresses they allow (the resolver in `egress_resolver` drops the others).

mod egress_resolver;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::egress::{EgressRules, Refusal};
use crate::lambda::{
    AnswerError, HEADER_LAST_RUN, HEADER_NAME, HEADER_NAMESPACE, MAX_ANSWER_BYTES, NeedsSyncAnswer,
    parse_answer,
};
use egress_resolver::{GuardedResolver, Refused};

/// Characters of a bad answer quoted in messages.
const EXCERPT_CHARS: usize = 120;

/// Who is asking, and how long the lambda may take. Deliberately not `Debug`: it may hold a
/// credential, and credentials must not reach logs.
pub struct Ask<'a> {
    pub url: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub last_run: Option<&'a str>,
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer <token>` (a lambda server with `auth.bearerTokenFile`).
    pub bearer_token: Option<&'a str>,
}

/// What a failed call means for the ModelSync: the kind decides the condition reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The lambda could not be asked, or answered with a non-2xx status (`LambdaError`).
    Unavailable,
    /// The lambda answered, but not as the protocol says (`InvalidLambdaResponse`).
    InvalidResponse,
    /// The egress rules refused the lambda's address; no connection was made
    /// (`LambdaURLDenied`).
    Denied,
}

/// Why a lambda call did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No HTTP answer: refused connection, unknown host, reset.
    Unreachable { url: String, detail: String },
    /// The egress rules refused every address of the lambda, before any connection.
    Denied { url: String, refusal: Refusal },
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
    /// Whether the lambda could not be asked or answered wrongly.
    pub fn kind(&self) -> FailureKind {
        match self {
            CallError::Unreachable { .. } | CallError::Timeout { .. } => FailureKind::Unavailable,
            CallError::Denied { .. } => FailureKind::Denied,
            CallError::Answer {
                error: AnswerError::Status { .. } | AnswerError::Redirect { .. },
                ..
            } => FailureKind::Unavailable,
            CallError::TooLarge { .. } | CallError::Answer { .. } => FailureKind::InvalidResponse,
        }
    }

    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            CallError::Unreachable { .. } => "unreachable",
            CallError::Denied { .. } => "denied",
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
            CallError::Denied { url, refusal } => format!(
                "lambda GET {url} was refused before connecting: {refusal}; change needsSyncUrl \
                 or the controller's --lambda-allow-cidrs / --lambda-deny-cidrs"
            ),
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
                error: error @ (AnswerError::Status { .. } | AnswerError::Redirect { .. }),
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

/// How to build a [`LambdaClient`]. Deliberately not `Debug`: it may hold a private key.
#[derive(Clone, Copy, Default)]
pub struct ClientOptions<'a> {
    /// Sent as `User-Agent`, so a lambda's logs say who asked.
    pub user_agent: &'a str,
    /// PEM certificates trusted in addition to the system roots, for an https lambda whose
    /// certificate a private CA signed (a Secret's `ca.crt`).
    pub extra_ca_pem: Option<&'a [u8]>,
    /// A client certificate chain and its private key, PEM, for a lambda behind mutual TLS (a
    /// Secret's `tls.crt` and `tls.key` together).
    pub client_identity_pem: Option<&'a [u8]>,
    /// Connect only to addresses these rules allow. Proxies named in the environment are then
    /// not used: a proxy would connect on the client's behalf, to an address never checked.
    pub egress: Option<&'a EgressRules>,
}

/// Why a [`LambdaClient`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The CA bundle holds no `-----BEGIN CERTIFICATE-----` block.
    #[error(
        "the CA bundle holds no PEM certificate; give one or more -----BEGIN CERTIFICATE----- blocks"
    )]
    NoCertificate,
    /// The CA bundle is not valid PEM.
    #[error("the CA bundle is not a valid PEM certificate: {0}")]
    BadCertificate(String),
    /// The client certificate and key are not a PEM certificate chain with its private key.
    #[error(
        "the client certificate is not usable: {0}; give a PEM certificate chain and its \
         PEM private key (PKCS#8, PKCS#1 or SEC1)"
    )]
    BadIdentity(String),
    /// The HTTP client refused the settings (for example a TLS backend without extra roots).
    #[error("building the HTTP client for lambdas failed: {0}")]
    Build(String),
}

/// A pooled HTTP client for lambdas.
#[derive(Clone)]
pub struct LambdaClient {
    http: reqwest::Client,
    /// Also checked here for URLs whose host is an address: no resolver is asked for those.
    egress: Option<Arc<EgressRules>>,
}

/// A protocol-conforming reply and what `lambda-check` reports besides the answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub answer: NeedsSyncAnswer,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
}

impl LambdaClient {
    /// A client trusting the system roots only.
    pub fn new(user_agent: &str) -> Self {
        Self::with_options(&ClientOptions {
            user_agent,
            ..ClientOptions::default()
        })
        .expect("a client with static settings and no extra CA builds")
    }

    pub fn with_options(options: &ClientOptions<'_>) -> Result<Self, SetupError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(options.user_agent)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = options.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| SetupError::BadCertificate(describe(&e)))?;
            if certs.is_empty() {
                return Err(SetupError::NoCertificate);
            }
            builder = builder.tls_certs_merge(certs);
        }
        if let Some(pem) = options.client_identity_pem {
            let identity = reqwest::Identity::from_pem(pem)
                .map_err(|e| SetupError::BadIdentity(describe(&e)))?;
            builder = builder.identity(identity);
        }
        let egress = options.egress.map(|rules| Arc::new(rules.clone()));
        if let Some(rules) = &egress {
            builder = builder
                .dns_resolver(GuardedResolver::new(rules.clone()))
                .no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| match options.client_identity_pem {
                // rustls checks that the key belongs to the certificate only here.
                Some(_) => SetupError::BadIdentity(describe(&e)),
                None => SetupError::Build(describe(&e)),
            })?;
        Ok(LambdaClient { http, egress })
    }

    /// Asks the lambda; `Ok` only for an answer that follows the protocol.
    pub async fn ask(&self, ask: &Ask<'_>) -> Result<NeedsSyncAnswer, CallError> {
        self.ask_for_reply(ask).await.map(|reply| reply.answer)
    }

    /// Like [`LambdaClient::ask`], also returning what a protocol checker looks at.
    pub async fn ask_for_reply(&self, ask: &Ask<'_>) -> Result<Reply, CallError> {
        let started = Instant::now();
        match tokio::time::timeout(ask.timeout, self.ask_inner(ask, started)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout {
                url: ask.url.to_owned(),
                timeout: ask.timeout,
            }),
        }
    }

    async fn ask_inner(&self, ask: &Ask<'_>, started: Instant) -> Result<Reply, CallError> {
        let url = || ask.url.to_owned();
        if let (Some(rules), Some(ip)) = (&self.egress, literal_ip(ask.url)) {
            rules.check(ip).map_err(|refusal| CallError::Denied {
                url: url(),
                refusal,
            })?;
        }
        let mut req = self
            .http
            .get(ask.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(HEADER_NAMESPACE, ask.namespace)
            .header(HEADER_NAME, ask.name);
        if let Some(run) = ask.last_run {
            req = req.header(HEADER_LAST_RUN, run);
        }
        if let Some(token) = ask.bearer_token {
            // reqwest marks the header sensitive, so it is left out of its debug output.
            req = req.bearer_auth(token);
        }
        let mut res = req.send().await.map_err(|e| match cause::<Refused>(&e) {
            Some(Refused(refusal)) => CallError::Denied {
                url: url(),
                refusal: refusal.clone(),
            },
            None => CallError::Unreachable {
                url: url(),
                detail: describe(&e),
            },
        })?;
        let status = res.status().as_u16();
        let mut location = res
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let content_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
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
        // A lambda that echoes the token it was sent must not carry it into status or events.
        if let Some(token) = ask.bearer_token.filter(|t| !t.is_empty()) {
            body = redacted(&body, token.as_bytes());
            location = location.map(|l| l.replace(token, REDACTED));
        }
        let verdict = match status {
            300..=399 => Err(AnswerError::redirect(status, location.as_deref())),
            _ => parse_answer(status, &body),
        };
        let answer = verdict.map_err(|error| CallError::Answer {
            url: url(),
            error,
            excerpt: excerpt(&body),
            elapsed: started.elapsed(),
        })?;
        Ok(Reply {
            answer,
            content_type,
        })
    }
}

/// What stands in for a credential in quoted text.
const REDACTED: &str = "[redacted]";

fn redacted(body: &[u8], secret: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while !rest.is_empty() {
        if rest.starts_with(secret) {
            out.extend_from_slice(REDACTED.as_bytes());
            rest = &rest[secret.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

/// The address a URL names as its host, if it names one rather than a name to resolve.
fn literal_ip(url: &str) -> Option<IpAddr> {
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The first error of type `T` in `e`'s chain of sources.
fn cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}

/// The innermost cause: reqwest's own message ("error sending request") says little.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_error(error: AnswerError, body: &[u8]) -> CallError {
        CallError::Answer {
            url: "http://l/x".into(),
            error,
            excerpt: excerpt(body),
            elapsed: Duration::from_millis(1500),
        }
    }

    #[test]
    fn the_kind_decides_the_condition_and_the_message_quotes_the_body() {
        let down = CallError::Unreachable {
            url: "http://l/x".into(),
            detail: "connection refused".into(),
        };
        assert_eq!(down.kind(), FailureKind::Unavailable);
        assert_eq!(
            down.condition_message(),
            "lambda GET http://l/x failed: connection refused; is the lambda's Service up?"
        );
        let status = answer_error(
            AnswerError::Status {
                code: 503,
                body: String::new(),
            },
            b"",
        );
        assert_eq!(status.kind(), FailureKind::Unavailable);
        let not_json = answer_error(
            AnswerError::NotJson {
                detail: "expected value".into(),
            },
            b"<html>",
        );
        assert_eq!(not_json.kind(), FailureKind::InvalidResponse);
        assert_eq!(
            not_json.condition_message(),
            "lambda GET http://l/x answered wrongly: answer is not JSON: expected value; body: \"<html>\""
        );
        // The timing is for logs only: a condition message must not change between retries.
        assert!(not_json.to_string().ends_with("(after 1.5s)"));
        assert_eq!(
            CallError::TooLarge {
                url: "http://l/x".into()
            }
            .kind(),
            FailureKind::InvalidResponse
        );
    }

    #[test]
    fn refusals_and_redirects_have_their_own_kind_and_message() {
        let refusal = EgressRules::default()
            .check("169.254.169.254".parse().unwrap())
            .unwrap_err();
        let denied = CallError::Denied {
            url: "http://169.254.169.254/latest".into(),
            refusal,
        };
        assert_eq!(denied.kind(), FailureKind::Denied);
        assert_eq!(denied.metric_label(), "denied");
        assert_eq!(
            denied.condition_message(),
            "lambda GET http://169.254.169.254/latest was refused before connecting: address \
             169.254.169.254 is in 169.254.0.0/16 of --lambda-deny-cidrs; change needsSyncUrl or \
             the controller's --lambda-allow-cidrs / --lambda-deny-cidrs"
        );
        let moved = answer_error(AnswerError::redirect(302, Some("http://else/where")), b"");
        assert_eq!(moved.kind(), FailureKind::Unavailable);
        assert_eq!(moved.metric_label(), "redirect");
        assert!(
            moved.condition_message().starts_with(
                "lambda GET http://l/x: lambda answered HTTP 302 redirecting to http://else/where;"
            ),
            "{moved}"
        );
    }

    #[test]
    fn literal_addresses_are_recognised_and_names_are_not() {
        let cases = [
            ("http://169.254.169.254/latest", Some("169.254.169.254")),
            ("http://[fe80::1]:8080/x", Some("fe80::1")),
            // The URL parser reads other spellings of an IPv4 address as that address.
            ("http://0xa9.254.169.254/", Some("169.254.169.254")),
            ("https://lambda.ml.svc/needsTrain", None),
            ("not a url", None),
        ];
        for (url, want) in cases {
            assert_eq!(literal_ip(url), want.map(|w| w.parse().unwrap()), "{url}");
        }
    }

    #[test]
    fn a_secret_in_a_body_is_replaced_wherever_it_occurs() {
        assert_eq!(
            redacted(b"tok tok-x xtok", b"tok"),
            b"[redacted] [redacted]-x x[redacted]"
        );
        assert_eq!(redacted(b"nothing here", b"tok"), b"nothing here");
    }

    #[test]
    fn excerpts_are_short_quoted_and_say_when_empty() {
        assert_eq!(excerpt(b"  \n"), "(empty)");
        assert_eq!(excerpt(b" yes "), "\"yes\"");
        let long = "x".repeat(500);
        let quoted = excerpt(long.as_bytes());
        assert_eq!(
            quoted,
            format!("{:?}", format!("{}...", "x".repeat(EXCERPT_CHARS)))
        );
    }
}
