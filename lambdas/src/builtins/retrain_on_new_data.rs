//! `retrain-on-new-data`: yes when a commit after the one the newest model was trained on
//! changed the data path.

use super::{AnswerError, Stores, Verdict};
use crate::sources::{Models, newest};

/// One commit of the mirrored history, newest first, as the engine reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitFact {
    pub id: String,
    /// Whether this commit changed anything under the data path (compared with its first parent).
    pub touches_data: bool,
}

/// The answer parameter carrying the commit to train on.
pub const PARAM: &str = "dataRevision";

/// Reads the data path at `revision`; a run writes a new model into the model store.
pub fn decide(
    stores: &Stores,
    models: &Models,
    history: &Result<Vec<CommitFact>, String>,
    data_path: &str,
    revision: &str,
) -> Verdict {
    decide_data(models, history, data_path, revision)
        .reading(stores.file(data_path, revision))
        .writing(stores.model_store())
}

fn decide_data(
    models: &Models,
    history: &Result<Vec<CommitFact>, String>,
    data_path: &str,
    revision: &str,
) -> Verdict {
    let models = match models {
        Ok(m) => m,
        Err(e) => return Verdict::error(AnswerError::Models(e.to_string())),
    };
    let history = match history {
        Ok(h) => h,
        Err(e) => {
            return Verdict::error(AnswerError::History {
                data_path: data_path.to_owned(),
                reason: e.clone(),
            });
        }
    };
    let Some(newest) = newest(models) else {
        return Verdict::yes("no model exists yet".into(), revision).with_param(PARAM, revision);
    };
    let Some(trained_on) = newest.data_revision.as_deref().filter(|r| !r.is_empty()) else {
        return Verdict::error(AnswerError::NoDataRevision {
            model: newest.id.clone(),
        });
    };
    let mut changed = Vec::new();
    for commit in history {
        if commit.id.starts_with(trained_on) || trained_on.starts_with(&commit.id) {
            return match changed.first() {
                None => Verdict::no(
                    format!("{data_path} has not changed since {trained_on}, which model {} was trained on", newest.id),
                    revision,
                ),
                Some(latest) => Verdict::yes(
                    format!(
                        "{data_path} changed in {} commit(s) after {trained_on}, which model {} was trained on (latest {latest})",
                        changed.len(),
                        newest.id
                    ),
                    revision,
                )
                .with_param(PARAM, revision),
            };
        }
        if commit.touches_data {
            changed.push(short(&commit.id));
        }
    }
    Verdict::error(AnswerError::TrainedOnMissing {
        trained_on: trained_on.to_owned(),
        model: newest.id.clone(),
        commits: history.len(),
    })
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::ModelRecord;
    use modelsync_api::lineage::Dataset;

    fn model(rev: Option<&str>) -> Models {
        Ok(vec![ModelRecord {
            id: "m1".into(),
            created: "2026-01-01T00:00:00Z".parse().unwrap(),
            data_revision: rev.map(str::to_owned),
            metrics: Default::default(),
        }])
    }

    fn history(commits: &[(&str, bool)]) -> Result<Vec<CommitFact>, String> {
        Ok(commits
            .iter()
            .map(|(id, t)| CommitFact {
                id: (*id).into(),
                touches_data: *t,
            })
            .collect())
    }

    #[test]
    fn data_changed_after_training_means_yes() {
        let h = history(&[("ccc", false), ("bbb", true), ("aaa", true)]);
        let a = decide(&Stores::example(), &model(Some("aaa")), &h, "data/", "ccc")
            .answer
            .unwrap();
        assert!(a.needs_sync, "{a:?}");
        assert_eq!(a.parameters[PARAM], "ccc".into());
        let repo = "http://git.test/ml.git";
        assert_eq!(a.inputs, vec![Dataset::new(repo, "data").at_version("ccc")]);
        assert_eq!(a.outputs, vec![Dataset::new(repo, "models")]);
        assert!(
            a.reason
                .unwrap()
                .contains("changed in 1 commit(s) after aaa")
        );
    }

    #[test]
    fn other_changes_mean_no() {
        let h = history(&[("ccc", false), ("bbb", false), ("aaa", true)]);
        let a = decide(&Stores::example(), &model(Some("aaa")), &h, "data/", "ccc")
            .answer
            .unwrap();
        assert!(!a.needs_sync);
        assert_eq!(a.revision.as_deref(), Some("ccc"));
    }

    #[test]
    fn no_model_means_yes() {
        assert!(
            decide(
                &Stores::example(),
                &Ok(vec![]),
                &history(&[]),
                "data/",
                "ccc"
            )
            .answer
            .unwrap()
            .needs_sync
        );
    }

    #[test]
    fn unknown_training_commit_and_failures_are_errors() {
        let h = history(&[("ccc", true)]);
        let err = decide(&Stores::example(), &model(Some("zzz")), &h, "data/", "ccc")
            .answer
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("commit zzz") && err.contains("depth: 0"),
            "{err}"
        );
        let err = decide(&Stores::example(), &model(None), &h, "data/", "ccc")
            .answer
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no dataRevision"), "{err}");
        let err = decide(&Stores::example(), &Err("boom".into()), &h, "data/", "ccc")
            .answer
            .unwrap_err()
            .to_string();
        assert_eq!(err, "cannot list models: boom");
    }
}
