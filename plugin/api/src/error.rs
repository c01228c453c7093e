//! The error body: every failing call answers `{"error": {"code", "message"}}` with a status
//! that tells the kind of failure (400 the request, 404 no such thing, 409 a conflict with the
//! volume's state, 413 a body over 1 MiB, 503 the backend cannot run here, 500 dvol or the
//! host; 401 without the bearer token on TCP).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of a failed call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `busy`, `uncommitted_changes`.
    pub code: String,
    /// What failed, for which volume, and what to do.
    pub message: String,
    /// For `in_use` and `in_use_elsewhere`: the running containers that use the volume, by
    /// name, as the Docker Engine of the node that has it listed them (absent when it was not
    /// asked or did not answer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
}

impl ErrorDetail {
    /// An error with this code and message, naming no containers.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorDetail {
            code: code.into(),
            message: message.into(),
            containers: Vec::new(),
        }
    }
}
