//! `retrain-if-stale`: yes when there is no model, or the newest is older than `maxAge`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{AnswerError, Stores, Verdict, human};
use crate::sources::{Models, newest};

pub fn decide(
    stores: &Stores,
    models: &Models,
    max_age: Duration,
    now: DateTime<Utc>,
    revision: &str,
) -> Verdict {
    decide_age(models, max_age, now, revision).reading(stores.model_store())
}

fn decide_age(models: &Models, max_age: Duration, now: DateTime<Utc>, revision: &str) -> Verdict {
    let models = match models {
        Ok(m) => m,
        Err(e) => return Verdict::error(AnswerError::Models(e.to_string())),
    };
    let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
    let max_age_text = human(max_age);
    let Some(newest) = newest(models) else {
        return Verdict::yes("no model exists yet".into(), revision);
    };
    let age = now - newest.created;
    if age > max_age {
        return Verdict::yes(
            format!(
                "newest model {} is {} old, more than maxAge {max_age_text}",
                newest.id,
                human(age)
            ),
            revision,
        );
    }
    let mut decision = Verdict::no(
        format!(
            "newest model {} is {} old, within maxAge {max_age_text}",
            newest.id,
            human(age)
        ),
        revision,
    );
    decision.recheck_at = newest.created.checked_add_signed(max_age);
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::ModelRecord;
    use modelsync_api::lineage::Dataset;

    fn model(id: &str, created: &str) -> ModelRecord {
        ModelRecord {
            id: id.into(),
            created: created.parse().unwrap(),
            data_revision: None,
            metrics: Default::default(),
        }
    }

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn no_model_means_yes() {
        let d = decide(&Stores::example(), &Ok(vec![]), DAY, Utc::now(), "abc");
        let a = d.answer.unwrap();
        assert!(a.needs_sync);
        assert_eq!(a.reason.as_deref(), Some("no model exists yet"));
        assert_eq!(a.revision.as_deref(), Some("abc"));
        assert_eq!(
            a.inputs,
            vec![Dataset::new("http://git.test/ml.git", "models")]
        );
    }

    #[test]
    fn age_against_max_age() {
        let now: DateTime<Utc> = "2026-01-02T02:00:00Z".parse().unwrap();
        let models = Ok(vec![
            model("old", "2025-12-01T00:00:00Z"),
            model("new", "2026-01-01T00:00:00Z"),
        ]);
        let stale = decide(&Stores::example(), &models, DAY, now, "abc")
            .answer
            .unwrap();
        assert!(stale.needs_sync);
        assert_eq!(
            stale.reason.as_deref(),
            Some("newest model new is 1day 2h old, more than maxAge 1day")
        );

        let fresh = decide(&Stores::example(), &models, 2 * DAY, now, "abc");
        assert!(!fresh.answer.as_ref().unwrap().needs_sync);
        assert_eq!(
            fresh.recheck_at,
            Some("2026-01-03T00:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn a_failing_source_is_an_error_not_a_yes() {
        let d = decide(
            &Stores::example(),
            &Err("MLflow at http://x: HTTP 500".into()),
            DAY,
            Utc::now(),
            "abc",
        );
        assert_eq!(
            d.answer.unwrap_err().to_string(),
            "cannot list models: MLflow at http://x: HTTP 500"
        );
    }
}
