//! `deploy-if-newer`: yes, with the newest model id as a parameter, when it differs from the
//! model pinned in a file of the GitOps repository.
//!
//! No model, or a pin that cannot be read, is an error answer, never a yes with an empty id
//! (the original controller once deployed a placeholder that way).

use super::pin::{self, Locator};
use super::{AnswerError, Stores, Verdict};
use crate::sources::{Models, newest};

/// The route's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The file, relative to the repository root.
    pub file: String,
    pub locator: Locator,
    /// The answer key the newest model id is sent under.
    pub parameter: String,
}

pub fn decide(
    stores: &Stores,
    models: &Models,
    pin: &Pin,
    file: &Result<String, String>,
    revision: &str,
) -> Verdict {
    let models = match models {
        Ok(m) => m,
        Err(e) => return Verdict::error(AnswerError::Models(e.to_string())),
    };
    let Some(newest) = newest(models).filter(|m| !m.id.trim().is_empty()) else {
        return Verdict::error(AnswerError::NoModel);
    };
    let text = match file {
        Ok(t) => t,
        Err(e) => {
            return Verdict::error(AnswerError::FileUnreadable {
                file: pin.file.clone(),
                revision: revision.to_owned(),
                reason: e.clone(),
            });
        }
    };
    let pinned = match pin::read(text, &pin.locator) {
        Ok(v) => v,
        Err(problem) => {
            return Verdict::error(AnswerError::Pin {
                file: pin.file.clone(),
                revision: revision.to_owned(),
                problem,
            });
        }
    };
    // The model is named as the trainer's run names its output, so lineage joins the two; the
    // pin file is what a deploy run changes.
    let model = stores.model(&newest.id);
    let pin_file = stores.file(&pin.file, revision);
    if pinned == newest.id {
        return Verdict::no(
            format!(
                "{} pins the newest model {} at {}",
                pin.file, newest.id, pin.locator
            ),
            revision,
        )
        .reading(model)
        .writing(pin_file);
    }
    Verdict::yes(
        format!(
            "newest model {} differs from {pinned:?} pinned at {} in {}",
            newest.id, pin.locator, pin.file
        ),
        revision,
    )
    .with_param(&pin.parameter, &newest.id)
    .reading(model)
    .writing(pin_file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::ModelRecord;
    use modelsync_api::lineage::Dataset;
    use modelsync_gitops::YamlPath;

    fn models(ids: &[(&str, &str)]) -> Models {
        Ok(ids
            .iter()
            .map(|(id, c)| ModelRecord {
                id: (*id).into(),
                created: c.parse().unwrap(),
                data_revision: None,
                metrics: Default::default(),
            })
            .collect())
    }

    fn pin() -> Pin {
        Pin {
            file: "manifests/model.yaml".into(),
            locator: Locator::Path(YamlPath::parse("data.model").unwrap()),
            parameter: "model".into(),
        }
    }

    const FILE: &str = "kind: ConfigMap\ndata:\n  model: m1\n";

    #[test]
    fn newer_model_means_yes_with_its_id() {
        let m = models(&[
            ("m1", "2026-01-01T00:00:00Z"),
            ("m2", "2026-01-02T00:00:00Z"),
        ]);
        let a = decide(&Stores::example(), &m, &pin(), &Ok(FILE.into()), "abc")
            .answer
            .unwrap();
        assert!(a.needs_sync);
        assert_eq!(a.parameters["model"], "m2".into());
        assert_eq!(a.revision.as_deref(), Some("abc"));
        let repo = "http://git.test/ml.git";
        assert_eq!(a.inputs, vec![Dataset::new(repo, "models/m2.yaml")]);
        assert_eq!(
            a.outputs,
            vec![Dataset::new(repo, "manifests/model.yaml").at_version("abc")]
        );
    }

    #[test]
    fn a_tenth_record_with_the_same_created_is_newer_than_the_ninth() {
        // The push benchmark's state at its tenth sample: m9 pinned, m10 pushed, one timestamp.
        let ids: Vec<String> = (0..=10).map(|i| format!("m{i}")).collect();
        let same: Vec<(&str, &str)> = ids
            .iter()
            .map(|id| (id.as_str(), "2099-01-01T00:00:00Z"))
            .collect();
        let file = "kind: ConfigMap\ndata:\n  model: m9\n";
        let a = decide(
            &Stores::example(),
            &models(&same),
            &pin(),
            &Ok(file.into()),
            "abc",
        )
        .answer
        .unwrap();
        assert!(a.needs_sync, "{:?}", a.reason);
        assert_eq!(a.parameters["model"], "m10".into());
    }

    #[test]
    fn equal_ids_mean_no() {
        let m = models(&[("m1", "2026-01-01T00:00:00Z")]);
        let a = decide(&Stores::example(), &m, &pin(), &Ok(FILE.into()), "abc")
            .answer
            .unwrap();
        assert!(!a.needs_sync);
        assert!(a.parameters.is_empty());
    }

    #[test]
    fn no_model_missing_path_unreadable_file_and_failing_source_are_errors() {
        let m = models(&[("m2", "2026-01-02T00:00:00Z")]);
        let cases = [
            decide(
                &Stores::example(),
                &models(&[]),
                &pin(),
                &Ok(FILE.into()),
                "abc",
            ),
            decide(
                &Stores::example(),
                &m,
                &pin(),
                &Ok("kind: ConfigMap\ndata: {}\n".into()),
                "abc",
            ),
            decide(
                &Stores::example(),
                &m,
                &pin(),
                &Err("No such file or directory".into()),
                "abc",
            ),
            decide(
                &Stores::example(),
                &Err("HTTP 503".into()),
                &pin(),
                &Ok(FILE.into()),
                "abc",
            ),
        ];
        let wanted = [
            "no model to deploy",
            "manifests/model.yaml at abc: there is no value at data.model",
            "cannot read manifests/model.yaml at abc: No such file",
            "cannot list models: HTTP 503",
        ];
        for (d, want) in cases.iter().zip(wanted) {
            let err = d.answer.as_ref().unwrap_err().to_string();
            assert!(err.starts_with(want), "got {err:?}, want {want:?}");
        }
    }
}
