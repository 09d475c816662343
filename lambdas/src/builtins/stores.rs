//! Where the datasets the built-ins read live, named the way OpenLineage names datasets, so
//! the answers can say what a decision read and a run will write.
//!
//! A model is named by its record: the trainer's `train-notebook` Task reports the record it
//! commits under the same name (`<repo>#<records path>/<id>.yaml`), which is what lets a
//! lineage graph join the training run's output to the deploy run's input.

use modelsync_api::lineage::Dataset;

/// The stores of one lambda server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stores {
    /// The mirrored repository's URL, as configured (`mirror.repo`).
    pub repo: String,
    pub models: ModelStore,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelStore {
    /// Records at this path of the mirrored repository: a folder of one file per model, or one
    /// file listing them.
    Records(String),
    /// A registered model of an MLflow tracking server.
    Mlflow { url: String, model: String },
}

impl Stores {
    /// The dataset of one model.
    pub fn model(&self, id: &str) -> Dataset {
        match &self.models {
            ModelStore::Records(path) if is_file(path) => {
                Dataset::new(&self.repo, path.trim_matches('/'))
            }
            ModelStore::Records(path) => {
                Dataset::new(&self.repo, format!("{}/{id}.yaml", path.trim_matches('/')))
            }
            ModelStore::Mlflow { url, .. } => Dataset::new(url.trim_end_matches('/'), id),
        }
    }

    /// The dataset of all models: where a model-age decision looks.
    pub fn model_store(&self) -> Dataset {
        match &self.models {
            ModelStore::Records(path) => Dataset::new(&self.repo, path.trim_matches('/')),
            ModelStore::Mlflow { url, model } => {
                Dataset::new(url.trim_end_matches('/'), format!("models:/{model}"))
            }
        }
    }

    /// A path of the mirrored repository, at a commit.
    pub fn file(&self, path: &str, revision: &str) -> Dataset {
        Dataset::new(&self.repo, path.trim_matches('/')).at_version(revision)
    }
}

#[cfg(test)]
impl Stores {
    /// A records folder in a repository, for the built-ins' tests.
    pub fn example() -> Self {
        Stores {
            repo: "http://git.test/ml.git".into(),
            models: ModelStore::Records("models".into()),
        }
    }
}

/// A URL without `user:password@`: dataset names are sent to lineage servers and shown to
/// people, and a repository URL may carry a token.
pub fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

fn is_file(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_named_by_their_record() {
        let folder = Stores {
            repo: "http://git/r.git".into(),
            models: ModelStore::Records("models/".into()),
        };
        assert_eq!(
            folder.model("m-1"),
            Dataset::new("http://git/r.git", "models/m-1.yaml")
        );
        assert_eq!(
            folder.model("m-1").uri(),
            "http://git/r.git#models/m-1.yaml"
        );
        let file = Stores {
            models: ModelStore::Records("models.yaml".into()),
            ..folder
        };
        assert_eq!(file.model("m-1").name, "models.yaml");
        let mlflow = Stores {
            repo: "r".into(),
            models: ModelStore::Mlflow {
                url: "http://mlflow:5000/".into(),
                model: "bot".into(),
            },
        };
        assert_eq!(
            mlflow.model("models:/bot/3"),
            Dataset::new("http://mlflow:5000", "models:/bot/3")
        );
        assert_eq!(mlflow.model_store().name, "models:/bot");
        assert_eq!(
            without_userinfo("https://x:t0k@git.example/o/r.git"),
            "https://git.example/o/r.git"
        );
        assert_eq!(without_userinfo("git@host:o/r.git"), "git@host:o/r.git");
    }
}
