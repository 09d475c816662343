//! Lineage facts that cross crates: datasets in OpenLineage's naming, the Tekton Chains
//! type-hinted artifact results runs emit, and what a run records at creation for the lineage
//! events sent when it ends (the lambda's answer is gone by then).

use serde::{Deserialize, Serialize};

/// Annotation on a run holding its [`RunLineage`] (JSON), written when the run is created.
pub const ANNOTATION_LINEAGE: &str = "modelsync.dev/lineage";
/// Result name Tekton Chains reads as the run's artifacts; also any name ending in `_` + this.
pub const ARTIFACT_OUTPUTS: &str = "ARTIFACT_OUTPUTS";

/// A dataset as OpenLineage names it: `namespace` is a URI of the store (a git repository's
/// URL, `s3://bucket`, an MLflow server), `name` the path inside it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dataset {
    pub namespace: String,
    pub name: String,
    /// The version read or written (a commit, a registry version), when the lambda knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Dataset {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Dataset {
            namespace: namespace.into(),
            name: name.into(),
            version: None,
        }
    }

    pub fn at_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// The artifact URI naming this dataset, the inverse of [`Dataset::from_uri`]: a file in a
    /// git repository is `<repository URL>#<path>`, since nothing in a git URL says where the
    /// repository ends and the path begins.
    pub fn uri(&self) -> String {
        format!("{}#{}", self.namespace, self.name)
    }

    /// The dataset an artifact URI names. `<store>#<path>` splits at the `#`; other URIs split
    /// after the authority (`s3://bucket/key` is `s3://bucket` + `key`), as OpenLineage's
    /// naming does for object stores.
    pub fn from_uri(uri: &str) -> Result<Self, String> {
        let uri = uri.trim();
        if let Some((store, path)) = uri.split_once('#') {
            if store.is_empty() || path.is_empty() {
                return Err(format!(
                    "artifact uri {uri:?} has an empty store or path around '#'"
                ));
            }
            return Ok(Dataset::new(store, path));
        }
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(format!(
                "artifact uri {uri:?} is neither <store>#<path> nor scheme://authority/path"
            ));
        };
        match rest.split_once('/') {
            Some((authority, path)) if !authority.is_empty() && !path.is_empty() => {
                Ok(Dataset::new(format!("{scheme}://{authority}"), path))
            }
            _ => Err(format!(
                "artifact uri {uri:?} has no path after {scheme}://<authority>/"
            )),
        }
    }

    /// True when both name the same dataset, whatever versions they carry.
    pub fn same_as(&self, other: &Dataset) -> bool {
        self.namespace == other.namespace && self.name == other.name
    }
}

/// One type-hinted artifact result of a run: `{uri, digest}` plus whatever else the Task put
/// in the object (bump-model-pr adds the pull request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactOutput {
    /// The result's name, e.g. `model_ARTIFACT_OUTPUTS`.
    pub result: String,
    pub uri: String,
    /// `<algorithm>:<hex>`, e.g. `sha1:<commit>`.
    pub digest: String,
    /// The other string properties of the result, e.g. `pr-url`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, String>,
}

impl ArtifactOutput {
    /// The result names Tekton Chains reads as outputs.
    pub fn is_artifact_result(name: &str) -> bool {
        name == ARTIFACT_OUTPUTS || name.ends_with(&format!("_{ARTIFACT_OUTPUTS}"))
    }

    /// Reads one object result; says what is missing when it is not `{uri, digest}`.
    pub fn parse(result: &str, value: &serde_json::Value) -> Result<Self, String> {
        let serde_json::Value::Object(fields) = value else {
            return Err(format!(
                "result {result} is not an object {{uri, digest}}: declare it `type: object` in the Task"
            ));
        };
        let field = |key: &str| {
            fields
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("result {result} has no non-empty string {key}"))
        };
        let (uri, digest) = (field("uri")?, field("digest")?);
        if !digest.contains(':') {
            return Err(format!(
                "result {result} has digest {digest:?}, expected <algorithm>:<hex> like sha1:3f2c..."
            ));
        }
        let extra = fields
            .iter()
            .filter(|(k, _)| k.as_str() != "uri" && k.as_str() != "digest")
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        Ok(ArtifactOutput {
            result: result.to_owned(),
            uri,
            digest,
            extra,
        })
    }

    /// The dataset the artifact is, its digest as the version.
    pub fn dataset(&self) -> Result<Dataset, String> {
        Ok(Dataset::from_uri(&self.uri)?.at_version(self.digest.clone()))
    }
}

/// What a run keeps from its decision for the lineage events sent when it ends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunLineage {
    /// The needs-sync URL that was asked.
    pub lambda_url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<Dataset>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Dataset>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uris_split_into_store_and_path() {
        let git = Dataset::from_uri("http://git.example/models.git#models/m-1.yaml").unwrap();
        assert_eq!(
            git,
            Dataset::new("http://git.example/models.git", "models/m-1.yaml")
        );
        assert_eq!(git.uri(), "http://git.example/models.git#models/m-1.yaml");
        let s3 = Dataset::from_uri("s3://bucket/runs/m-1").unwrap();
        assert_eq!(s3, Dataset::new("s3://bucket", "runs/m-1"));
        for bad in ["m-1", "s3://bucket", "#x", "http://h/r.git#"] {
            assert!(Dataset::from_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn artifact_results_parse_or_say_what_is_wrong() {
        assert!(ArtifactOutput::is_artifact_result("model_ARTIFACT_OUTPUTS"));
        assert!(ArtifactOutput::is_artifact_result("ARTIFACT_OUTPUTS"));
        assert!(!ArtifactOutput::is_artifact_result("modelARTIFACT_OUTPUTS"));
        let pr = ArtifactOutput::parse(
            "pr_ARTIFACT_OUTPUTS",
            &json!({"uri": "https://h/o/r.git#deploy/model.yaml", "digest": "sha1:abc", "pr-url": "https://h/o/r/pull/1"}),
        )
        .unwrap();
        assert_eq!(pr.extra["pr-url"], "https://h/o/r/pull/1");
        assert_eq!(pr.dataset().unwrap().version.as_deref(), Some("sha1:abc"));
        let cases = [
            (json!("s3://b/k"), "not an object"),
            (json!({"digest": "sha1:abc"}), "no non-empty string uri"),
            (
                json!({"uri": "s3://b/k", "digest": "abc"}),
                "<algorithm>:<hex>",
            ),
        ];
        for (value, want) in cases {
            let err = ArtifactOutput::parse("x_ARTIFACT_OUTPUTS", &value).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }
}
