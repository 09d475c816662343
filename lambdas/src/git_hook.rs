//! `POST /hooks/git`: a git host's push webhook, which makes the mirror sync now instead of at
//! its next period. GitHub, Gitea and Forgejo sign the body with the webhook secret
//! (`X-Hub-Signature-256`); GitLab sends its secret as `X-Gitlab-Token`; anything else (a CI
//! step, curl) can send `Authorization: Bearer <token>`.
//!
//! What to do with a request is [`decide`]'s, pure; the handler reads secrets and headers and
//! wakes the mirror.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use modelsync_api::hook::{bearer_matches, signature_matches};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::config::{GitHookConfig, read_secret};

/// What the hook does.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Sync now; the pushed ref, when the body named one.
    Sync(Option<String>),
    /// Nothing to sync, and why.
    Ignore(String),
    /// GitHub's ping on creating a webhook.
    Pong,
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct Repository {
    default_branch: Option<String>,
}

/// Whether a hook with event header `event` (GitHub's `X-GitHub-Event`, Gitea's
/// `X-Gitea-Event`, GitLab's `X-Gitlab-Event`) and `body` concerns the mirror following
/// `mirror_ref`. A body that is not a push event (a bare `curl -X POST`) syncs: the caller
/// proved it may ask, and a sync without a new commit costs one fetch.
pub fn decide(event: Option<&str>, body: &[u8], mirror_ref: &str) -> Decision {
    match event {
        Some("ping") => return Decision::Pong,
        None | Some("push" | "Push Hook" | "Tag Push Hook") => {}
        Some(other) => return Decision::Ignore(format!("event {other} is not a push")),
    }
    let Ok(push) = serde_json::from_slice::<Push>(body) else {
        return Decision::Sync(None);
    };
    let Some(pushed) = push.git_ref else {
        return Decision::Sync(None);
    };
    let followed = match mirror_ref {
        "HEAD" => match push.repository.and_then(|r| r.default_branch) {
            Some(default) => default,
            // Which branch HEAD is, the body does not say: sync to be sure.
            None => return Decision::Sync(Some(pushed)),
        },
        other => other.to_owned(),
    };
    let same = pushed == followed
        || pushed.strip_prefix("refs/heads/") == Some(&followed)
        || pushed.strip_prefix("refs/tags/") == Some(&followed);
    if same {
        Decision::Sync(Some(pushed))
    } else {
        Decision::Ignore(format!("push to {pushed}; the mirror follows {followed}"))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// `modelsync_lambda_server_git_hooks_total{outcome}`: `sync`, `ignored`, `ping`, `unauthorized`,
/// `error`.
#[derive(Clone, Debug)]
pub struct GitHookMetrics(Family<Outcome, Counter>);

impl GitHookMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let family = Family::default();
        registry.register(
            "modelsync_lambda_server_git_hooks",
            "Git host push webhooks received, by outcome (sync, ignored, ping, unauthorized, error)",
            modelsync_telemetry::Declared(family.clone()),
        );
        GitHookMetrics(family)
    }

    fn count(&self, outcome: &'static str) {
        self.0.get_or_create(&Outcome { outcome }).inc();
    }
}

/// What the handler needs.
#[derive(Clone)]
pub struct GitHook {
    pub config: GitHookConfig,
    pub mirror_ref: Arc<str>,
    pub sync_now: Arc<Notify>,
    pub metrics: GitHookMetrics,
}

impl GitHook {
    /// Checks the credentials, decides, and wakes the mirror; returns the status and JSON body.
    pub fn handle(&self, headers: &HeaderMap, body: &Bytes) -> (StatusCode, Value) {
        match self.authorized(headers, body) {
            Ok(true) => {}
            Ok(false) => {
                self.metrics.count("unauthorized");
                tracing::warn!("git hook refused: missing or wrong credentials");
                return (
                    StatusCode::UNAUTHORIZED,
                    json!({"error": self.what_to_send()}),
                );
            }
            Err(e) => {
                self.metrics.count("error");
                tracing::error!(error = %e, "git hook cannot read its secret");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": format!("the lambda server cannot read its gitHook secret: {e}")}),
                );
            }
        }
        let event = ["x-github-event", "x-gitea-event", "x-gitlab-event"]
            .iter()
            .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()));
        match decide(event, body, &self.mirror_ref) {
            Decision::Sync(pushed) => {
                self.metrics.count("sync");
                tracing::info!(pushed = ?pushed, "git hook: syncing the mirror now");
                self.sync_now.notify_one();
                (
                    StatusCode::ACCEPTED,
                    json!({"sync": "started", "ref": pushed}),
                )
            }
            Decision::Ignore(why) => {
                self.metrics.count("ignored");
                tracing::info!(%why, "git hook ignored");
                (StatusCode::OK, json!({"ignored": why}))
            }
            Decision::Pong => {
                self.metrics.count("ping");
                (StatusCode::OK, json!({"pong": true}))
            }
        }
    }

    fn authorized(&self, headers: &HeaderMap, body: &[u8]) -> Result<bool, String> {
        let header = |name: &str| headers.get(name).map(|v| v.as_bytes());
        if let Some(file) = &self.config.secret_file {
            let secret =
                read_secret("gitHook: field secretFile", file).map_err(|e| e.to_string())?;
            if signature_matches(header("x-hub-signature-256"), secret.as_bytes(), body) {
                return Ok(true);
            }
        }
        if let Some(file) = &self.config.token_file {
            let token = read_secret("gitHook: field tokenFile", file).map_err(|e| e.to_string())?;
            let gitlab = header("x-gitlab-token")
                .is_some_and(|given| bool::from(given.ct_eq(token.as_bytes())));
            if gitlab || bearer_matches(header("authorization"), token.as_bytes()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn what_to_send(&self) -> String {
        let mut ways = Vec::new();
        if self.config.secret_file.is_some() {
            ways.push(
                "X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body keyed with the webhook \
                 secret of gitHook.secretFile>",
            );
        }
        if self.config.token_file.is_some() {
            ways.push(
                "Authorization: Bearer <token> or X-Gitlab-Token: <token>, the token of \
                 gitHook.tokenFile",
            );
        }
        format!("missing or wrong credentials: send {}", ways.join(", or "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(git_ref: &str, default_branch: Option<&str>) -> Vec<u8> {
        let mut body =
            json!({"ref": git_ref, "after": "3f2c9e1", "repository": {"full_name": "org/gitops"}});
        if let Some(d) = default_branch {
            body["repository"]["default_branch"] = json!(d);
        }
        body.to_string().into_bytes()
    }

    #[test]
    fn a_push_to_the_followed_branch_syncs_and_others_do_not() {
        let main = push("refs/heads/main", Some("main"));
        assert_eq!(
            decide(Some("push"), &main, "main"),
            Decision::Sync(Some("refs/heads/main".into()))
        );
        assert_eq!(
            decide(Some("push"), &main, "refs/heads/main"),
            Decision::Sync(Some("refs/heads/main".into()))
        );
        assert_eq!(
            decide(Some("push"), &push("refs/heads/dev", Some("main")), "main"),
            Decision::Ignore("push to refs/heads/dev; the mirror follows main".into())
        );
        assert_eq!(
            decide(Some("Tag Push Hook"), &push("refs/tags/v2", None), "v2"),
            Decision::Sync(Some("refs/tags/v2".into()))
        );
    }

    #[test]
    fn head_is_the_default_branch_when_the_body_says_which() {
        assert!(matches!(
            decide(Some("push"), &push("refs/heads/main", Some("main")), "HEAD"),
            Decision::Sync(_)
        ));
        assert!(matches!(
            decide(Some("push"), &push("refs/heads/x", Some("main")), "HEAD"),
            Decision::Ignore(_)
        ));
        assert!(matches!(
            decide(Some("push"), &push("refs/heads/x", None), "HEAD"),
            Decision::Sync(_)
        ));
    }

    #[test]
    fn pings_other_events_and_bare_posts() {
        assert_eq!(decide(Some("ping"), b"{}", "main"), Decision::Pong);
        assert_eq!(
            decide(Some("issues"), b"{}", "main"),
            Decision::Ignore("event issues is not a push".into())
        );
        assert_eq!(decide(None, b"", "main"), Decision::Sync(None));
        assert_eq!(decide(None, b"{}", "main"), Decision::Sync(None));
    }

    fn hook(dir: &std::path::Path, secret: bool, token: bool) -> GitHook {
        std::fs::write(dir.join("secret"), "It's a Secret to Everybody\n").unwrap();
        std::fs::write(dir.join("token"), "t0k\n").unwrap();
        GitHook {
            config: GitHookConfig {
                secret_file: secret.then(|| dir.join("secret")),
                token_file: token.then(|| dir.join("token")),
            },
            mirror_ref: Arc::from("main"),
            sync_now: Arc::new(Notify::new()),
            metrics: GitHookMetrics::register(&mut Registry::default()),
        }
    }

    #[test]
    fn credentials_are_checked_the_way_each_host_sends_them() {
        let dir = tempfile::tempdir().unwrap();
        let body = Bytes::from(push("refs/heads/main", None));
        let signed = modelsync_api::hook::sign(b"It's a Secret to Everybody", &body);
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        let both = hook(dir.path(), true, true);
        for good in [
            headers(&[("x-hub-signature-256", &signed)]),
            headers(&[("authorization", "Bearer t0k")]),
            headers(&[("x-gitlab-token", "t0k")]),
        ] {
            assert_eq!(
                both.handle(&good, &body).0,
                StatusCode::ACCEPTED,
                "{good:?}"
            );
        }
        let (status, reply) = both.handle(&headers(&[("authorization", "Bearer no")]), &body);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let message = reply["error"].as_str().unwrap();
        assert!(message.contains("X-Hub-Signature-256") && message.contains("X-Gitlab-Token"));

        let secret_only = hook(dir.path(), true, false);
        let (status, reply) =
            secret_only.handle(&headers(&[("authorization", "Bearer t0k")]), &body);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(!reply["error"].as_str().unwrap().contains("Bearer"));
        let tampered = Bytes::from(push("refs/heads/dev", None));
        let (status, _) =
            secret_only.handle(&headers(&[("x-hub-signature-256", &signed)]), &tampered);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}
