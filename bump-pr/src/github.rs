//! The GitHub side: find, open and update the one pull request for a branch.

use std::time::Duration;

use octocrab::Octocrab;
use octocrab::models::IssueState;
use octocrab::params::State;

use crate::secret::Token;

/// What bump-pr needs to know about a pull request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
    pub open: bool,
    pub merged: bool,
    pub title: String,
    pub body: String,
    pub head: String,
}

/// Why a GitHub call failed, worded for the person running the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error(
        "GitHub rejected the token (401 {message}) at {api}; check that --token-file holds a current token"
    )]
    Unauthorized { api: String, message: String },
    #[error(
        "the token may not {action} in {repo} (403 {message}); it needs pull-requests: write and contents: write on that repository"
    )]
    Forbidden {
        action: &'static str,
        repo: String,
        message: String,
    },
    #[error(
        "repository {repo} not found at {api} (404 {message}); check --github-repo / --repo and --github-api, and that the token can see the repository"
    )]
    NotFound {
        api: String,
        repo: String,
        message: String,
    },
    #[error("GitHub refused to {action} (422 validation failed: {message})")]
    Validation {
        action: &'static str,
        message: String,
    },
    #[error("GitHub answered {status} when asked to {action}: {message}")]
    Status {
        action: &'static str,
        status: u16,
        message: String,
    },
    #[error("cannot reach the GitHub API at {api} to {action}: {detail}")]
    Network {
        api: String,
        action: &'static str,
        detail: String,
    },
    #[error("invalid --github-api {api:?}: {detail}")]
    BadApiUrl { api: String, detail: String },
}

/// A client for one repository.
pub struct GitHub {
    client: Octocrab,
    api: String,
    owner: String,
    repo: String,
}

impl GitHub {
    /// `api` is `https://api.github.com` or a GitHub Enterprise `https://HOST/api/v3`.
    pub fn new(api: &str, token: &Token, owner: &str, repo: &str) -> Result<Self, GitHubError> {
        let bad = |detail: String| GitHubError::BadApiUrl {
            api: api.to_string(),
            detail,
        };
        let client = Octocrab::builder()
            .base_uri(api.trim_end_matches('/'))
            .map_err(|e| bad(e.to_string()))?
            .personal_token(token.expose().to_string())
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            client,
            api: api.to_string(),
            owner: owner.to_string(),
            repo: repo.to_string(),
        })
    }

    pub fn slug(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    fn map(&self, action: &'static str, e: octocrab::Error) -> GitHubError {
        match e {
            octocrab::Error::GitHub { source, .. } => {
                let mut message = source.message.clone();
                if let Some(errors) = &source.errors {
                    let details: Vec<String> = errors
                        .iter()
                        .map(|e| {
                            e.get("message")
                                .and_then(|m| m.as_str())
                                .map(str::to_string)
                                .unwrap_or_else(|| e.to_string())
                        })
                        .collect();
                    if !details.is_empty() {
                        message = format!("{message}: {}", details.join("; "));
                    }
                }
                match source.status_code.as_u16() {
                    401 => GitHubError::Unauthorized {
                        api: self.api.clone(),
                        message,
                    },
                    403 => GitHubError::Forbidden {
                        action,
                        repo: self.slug(),
                        message,
                    },
                    404 => GitHubError::NotFound {
                        api: self.api.clone(),
                        repo: self.slug(),
                        message,
                    },
                    422 => GitHubError::Validation { action, message },
                    status => GitHubError::Status {
                        action,
                        status,
                        message,
                    },
                }
            }
            other => GitHubError::Network {
                api: self.api.clone(),
                action,
                detail: error_chain(&other),
            },
        }
    }

    /// Every pull request, open or closed, whose head is `branch` of this repository.
    pub async fn pulls_for_branch(&self, branch: &str) -> Result<Vec<PullRequest>, GitHubError> {
        let action = "list pull requests";
        let page = self
            .client
            .pulls(&self.owner, &self.repo)
            .list()
            .state(State::All)
            .head(format!("{}:{branch}", self.owner))
            .per_page(100u8)
            .send()
            .await
            .map_err(|e| self.map(action, e))?;
        // The head filter is the server's; checking it again guards against a server that
        // ignores it and would have us update someone else's pull request.
        Ok(page
            .items
            .into_iter()
            .map(convert)
            .filter(|pr| pr.head == branch)
            .collect())
    }

    pub async fn create(
        &self,
        title: &str,
        body: &str,
        branch: &str,
        base: &str,
        draft: bool,
    ) -> Result<PullRequest, GitHubError> {
        let pr = self
            .client
            .pulls(&self.owner, &self.repo)
            .create(title, branch, base)
            .body(body)
            .draft(draft)
            .send()
            .await
            .map_err(|e| self.map("open a pull request", e))?;
        Ok(convert(pr))
    }

    pub async fn update(
        &self,
        number: u64,
        title: &str,
        body: &str,
    ) -> Result<PullRequest, GitHubError> {
        let pr = self
            .client
            .pulls(&self.owner, &self.repo)
            .update(number)
            .title(title)
            .body(body)
            .send()
            .await
            .map_err(|e| self.map("update the pull request", e))?;
        Ok(convert(pr))
    }

    pub async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), GitHubError> {
        self.client
            .issues(&self.owner, &self.repo)
            .add_labels(number, labels)
            .await
            .map(|_| ())
            .map_err(|e| self.map("label the pull request", e))
    }

    pub async fn request_reviewers(
        &self,
        number: u64,
        reviewers: &[String],
    ) -> Result<(), GitHubError> {
        let (teams, people): (Vec<String>, Vec<String>) =
            reviewers.iter().cloned().partition(|r| r.contains('/'));
        let teams: Vec<String> = teams
            .into_iter()
            .map(|t| t.rsplit('/').next().unwrap_or_default().to_string())
            .collect();
        // GitHub answers with the pull request, which octocrab's review type does not fit; the
        // answer is not needed, so it is read as plain JSON.
        let route = format!(
            "/repos/{}/{}/pulls/{number}/requested_reviewers",
            self.owner, self.repo
        );
        let body = serde_json::json!({ "reviewers": people, "team_reviewers": teams });
        self.client
            .post::<_, serde_json::Value>(route, Some(&body))
            .await
            .map(|_| ())
            .map_err(|e| self.map("request reviewers", e))
    }
}

fn convert(pr: octocrab::models::pulls::PullRequest) -> PullRequest {
    PullRequest {
        number: pr.number,
        url: pr
            .html_url
            .map(|u| u.to_string())
            .unwrap_or_else(|| pr.url.clone()),
        open: matches!(pr.state, Some(IssueState::Open)),
        merged: pr.merged_at.is_some() || pr.merged.unwrap_or(false),
        title: pr.title.unwrap_or_default(),
        body: pr.body.unwrap_or_default(),
        head: pr.head.ref_field,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `owner/name` from a GitHub clone URL (`https://HOST/owner/name(.git)`, `git@HOST:owner/name`).
pub fn slug_from_url(url: &str) -> Option<(String, String)> {
    let rest = if let Some((_, after)) = url.split_once("://") {
        after.split_once('/')?.1
    } else {
        url.split_once(':')?.1
    };
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = rest.rsplitn(3, '/');
    let name = parts.next()?.to_string();
    let owner = parts.next()?.to_string();
    (!owner.is_empty() && !name.is_empty()).then_some((owner, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_come_from_clone_urls() {
        let s = |u| slug_from_url(u).map(|(o, n)| format!("{o}/{n}"));
        assert_eq!(
            s("https://github.com/acme/gitops.git").as_deref(),
            Some("acme/gitops")
        );
        assert_eq!(
            s("https://ghe.example.com/acme/gitops").as_deref(),
            Some("acme/gitops")
        );
        assert_eq!(
            s("git@github.com:acme/gitops.git").as_deref(),
            Some("acme/gitops")
        );
        assert_eq!(s("https://github.com/"), None);
    }
}
