//! Why a built-in lambda gives no answer. Served as HTTP 500 with the message, so each says
//! what is wrong and, where it can, what to do.

use super::pin::PinError;

#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The model source failed; its own message says how.
    #[error("cannot list models: {0}")]
    Models(String),
    /// `deploy-if-newer` has nothing to pin.
    #[error("no model to deploy: the model source lists none")]
    NoModel,
    /// The pinned file could not be read from the mirrored tree.
    #[error("cannot read {file} at {revision}: {reason}")]
    FileUnreadable {
        file: String,
        revision: String,
        reason: String,
    },
    /// The file holds no readable pin.
    #[error("{file} at {revision}: {problem}")]
    Pin {
        file: String,
        revision: String,
        problem: PinError,
    },
    /// The mirrored history could not be walked.
    #[error("cannot read the history of {data_path}: {reason}")]
    History { data_path: String, reason: String },
    #[error("newest model {model} has no dataRevision: record the commit it was trained on")]
    NoDataRevision { model: String },
    /// The commit a model was trained on is not among the mirrored ones.
    #[error(
        "commit {trained_on}, which model {model} was trained on, is not in the {commits} mirrored commit(s) of the branch: \
         was history rewritten, or is the mirror shallow (set mirror depth: 0)?"
    )]
    TrainedOnMissing {
        trained_on: String,
        model: String,
        commits: usize,
    },
}
