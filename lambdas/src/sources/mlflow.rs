//! MLflow's model registry (REST API 2.0): the versions of one registered model, optionally only
//! those in a stage, or the one version an alias points at.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::ModelRecord;

/// The version tag a training run sets to the commit it trained on.
pub const DATA_REVISION_TAG: &str = "dataRevision";

/// Which versions to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlflowSpec {
    /// Tracking server base URL, e.g. `http://mlflow.mlops:5000`.
    pub url: String,
    /// Registered model name.
    pub model: String,
    /// Only versions in this stage (`Staging`, `Production`, ...).
    pub stage: Option<String>,
    /// Only the version this alias points at.
    pub alias: Option<String>,
}

#[derive(Deserialize)]
struct Version {
    name: String,
    version: String,
    creation_timestamp: i64,
    #[serde(default)]
    current_stage: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
}

#[derive(Deserialize)]
struct Tag {
    key: String,
    value: String,
}

#[derive(Deserialize)]
struct SearchPage {
    #[serde(default)]
    model_versions: Vec<Version>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct AliasAnswer {
    model_version: Version,
}

/// The HTTP client for MLflow could not be built (the TLS backend failed to start).
#[derive(Debug, thiserror::Error)]
#[error("building the MLflow HTTP client: {0}")]
pub struct ClientError(reqwest::Error);

/// Why MLflow's model registry could not be read. Every message starts with the server, or the
/// version, at fault.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// No answer: refused, timed out, or cut off before the status line.
    #[error("MLflow at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The answer's body could not be read.
    #[error("MLflow at {url}: reading the answer: {source}")]
    Body {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// MLflow answered with an error status; `message` is its own, or the start of the body.
    #[error("MLflow at {url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
        message: String,
    },
    /// A success answer not in the shape of MLflow's REST API 2.0.
    #[error("MLflow at {url}: unexpected answer: {source}")]
    Shape {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    /// A version whose creation time is not a time.
    #[error("MLflow version {version} of {model}: bad creation_timestamp {timestamp}")]
    CreationTime {
        model: String,
        version: String,
        timestamp: i64,
    },
}

/// Reads MLflow with its own HTTP client and deadline.
#[derive(Clone, Debug)]
pub struct MlflowSource {
    spec: MlflowSpec,
    client: reqwest::Client,
}

impl MlflowSource {
    pub fn new(spec: MlflowSpec, timeout: Duration) -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(ClientError)?;
        Ok(MlflowSource { spec, client })
    }

    /// The matching versions as model records (id `models:/<name>/<version>`).
    pub async fn models(&self) -> Result<Vec<ModelRecord>, MlflowError> {
        let base = self.spec.url.trim_end_matches('/');
        let versions = match &self.spec.alias {
            Some(alias) => {
                let url = format!("{base}/api/2.0/mlflow/registered-models/alias");
                let query = [
                    ("name", self.spec.model.as_str()),
                    ("alias", alias.as_str()),
                ];
                vec![self.get::<AliasAnswer>(&url, &query).await?.model_version]
            }
            None => self.search(base).await?,
        };
        let mut models = Vec::new();
        for v in versions {
            if v.status.as_deref().is_some_and(|s| s != "READY") {
                continue;
            }
            if let Some(stage) = &self.spec.stage
                && !v
                    .current_stage
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(stage))
            {
                continue;
            }
            models.push(to_record(v)?);
        }
        Ok(models)
    }

    async fn search(&self, base: &str) -> Result<Vec<Version>, MlflowError> {
        let url = format!("{base}/api/2.0/mlflow/model-versions/search");
        let filter = format!("name='{}'", self.spec.model.replace('\'', "\\'"));
        let mut versions = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("filter", filter.as_str()), ("max_results", "1000")];
            if let Some(t) = &token {
                query.push(("page_token", t));
            }
            let page: SearchPage = self.get(&url, &query).await?;
            versions.extend(page.model_versions);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(versions),
            }
        }
    }

    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<T, MlflowError> {
        let url = url.to_owned();
        let response = match self.client.get(&url).query(query).send().await {
            Ok(response) => response,
            Err(source) => return Err(MlflowError::Unreachable { url, source }),
        };
        let status = response.status();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(source) => return Err(MlflowError::Body { url, source }),
        };
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(MlflowError::Status {
                url,
                status,
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|source| MlflowError::Shape { url, source })
    }
}

fn to_record(v: Version) -> Result<ModelRecord, MlflowError> {
    let Some(created) = DateTime::<Utc>::from_timestamp_millis(v.creation_timestamp) else {
        return Err(MlflowError::CreationTime {
            model: v.name,
            version: v.version,
            timestamp: v.creation_timestamp,
        });
    };
    let data_revision = v
        .tags
        .into_iter()
        .find(|t| t.key == DATA_REVISION_TAG)
        .map(|t| t.value);
    Ok(ModelRecord {
        id: format!("models:/{}/{}", v.name, v.version),
        created,
        data_revision,
        metrics: Default::default(),
    })
}
