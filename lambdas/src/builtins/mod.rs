//! The built-in lambdas: pure functions from a snapshot of the world to an answer, so every
//! decision is computed ahead of requests and tested without IO.

pub mod deploy_if_newer;
pub mod error;
pub mod pin;
pub mod retrain_if_stale;
pub mod retrain_on_new_data;
pub mod stores;

use std::time::Duration;

use chrono::{DateTime, Utc};
use modelsync_api::lambda::NeedsSyncAnswer;
use modelsync_api::lineage::Dataset;

use deploy_if_newer::Pin;
pub use error::AnswerError;
pub use stores::{ModelStore, Stores};

/// A path served by a built-in lambda with its settings, as `lambdas.yaml` configures it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub path: String,
    pub lambda: Lambda,
}

/// A built-in lambda and its settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lambda {
    RetrainIfStale { max_age: Duration },
    RetrainOnNewData { data_path: String },
    DeployIfNewer(Pin),
}

/// The names `lambda:` accepts.
pub const LAMBDAS: [&str; 3] = ["retrain-if-stale", "retrain-on-new-data", "deploy-if-newer"];

/// A built-in lambda's verdict.
#[derive(Debug)]
pub struct Verdict {
    /// The answer, or why none can be given (served as a non-200 with the message).
    pub answer: Result<NeedsSyncAnswer, AnswerError>,
    /// When the answer may change with no new commit and no model change (time passing).
    pub recheck_at: Option<DateTime<Utc>>,
}

impl Verdict {
    fn yes(reason: String, revision: &str) -> Self {
        Self::answer(true, reason, revision)
    }

    fn no(reason: String, revision: &str) -> Self {
        Self::answer(false, reason, revision)
    }

    fn answer(needs_sync: bool, reason: String, revision: &str) -> Self {
        Verdict {
            answer: Ok(NeedsSyncAnswer {
                needs_sync,
                parameters: Default::default(),
                reason: Some(reason),
                revision: Some(revision.to_owned()),
                ..Default::default()
            }),
            recheck_at: None,
        }
    }

    fn error(error: AnswerError) -> Self {
        Verdict {
            answer: Err(error),
            recheck_at: None,
        }
    }

    fn reading(mut self, input: Dataset) -> Self {
        if let Ok(a) = &mut self.answer {
            a.inputs.push(input);
        }
        self
    }

    fn writing(mut self, output: Dataset) -> Self {
        if let Ok(a) = &mut self.answer {
            a.outputs.push(output);
        }
        self
    }

    fn with_param(mut self, key: &str, value: &str) -> Self {
        if let Ok(a) = &mut self.answer {
            a.parameters.insert(key.to_owned(), value.into());
        }
        self
    }
}

/// A duration for people: whole minutes (or seconds below a minute).
fn human(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0) as u64;
    let rounded = if secs >= 60 { secs / 60 * 60 } else { secs };
    humantime::format_duration(std::time::Duration::from_secs(rounded)).to_string()
}
