//! Where the lambdas learn which models exist: records in the mirrored repository, or MLflow's
//! model registry.

pub mod id_order;
pub mod mlflow;
pub mod records;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One trained model, as a source reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRecord {
    /// What a deployment pins, e.g. `m-20261122` or `models:/label-bot/3`.
    pub id: String,
    /// When the model was made; the newest model is the one with the greatest `created`.
    pub created: DateTime<Utc>,
    /// The commit of the mirrored repository the model was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_revision: Option<String>,
    /// Evaluation metrics, for people and later lambdas.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

/// The newest model: greatest `created`, ties broken by the greater id in [`id_order`] (`m10`
/// after `m9`) so the choice is stable and follows the numbering.
pub fn newest(models: &[ModelRecord]) -> Option<&ModelRecord> {
    models.iter().max_by(|a, b| {
        a.created
            .cmp(&b.created)
            .then_with(|| id_order::cmp(&a.id, &b.id))
    })
}

/// What a source reported, as the built-ins read it: the models, or in words why the source
/// could not list them ([`records::RecordsError`], [`mlflow::MlflowError`], or no answer yet).
/// Words rather than the error because a report is kept, compared with the next one to see
/// whether answers must be computed again, and sent between tasks.
pub type Models = Result<Vec<ModelRecord>, String>;

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, created: &str) -> ModelRecord {
        ModelRecord {
            id: id.into(),
            created: created.parse().unwrap(),
            data_revision: None,
            metrics: BTreeMap::new(),
        }
    }

    #[test]
    fn equal_created_numbered_ids_take_the_highest_number() {
        // Records written by one script often share `created`: m10 came after m9.
        let models: Vec<_> = (0..=10)
            .map(|i| rec(&format!("m{i}"), "2099-01-01T00:00:00Z"))
            .collect();
        assert_eq!(newest(&models).unwrap().id, "m10");
    }

    #[test]
    fn newest_is_greatest_created_then_id() {
        let models = [
            rec("b", "2026-01-02T00:00:00Z"),
            rec("c", "2026-01-03T00:00:00Z"),
            rec("a", "2026-01-03T00:00:00Z"),
        ];
        assert_eq!(newest(&models).unwrap().id, "c");
        assert!(newest(&[]).is_none());
    }
}
