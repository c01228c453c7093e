//! The path parameters the routes share.

use serde::Deserialize;
use utoipa::IntoParams;

/// The `{name}` path segment of a volume's routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VolumePath {
    /// `NAME` or `NAME@PROFILE`.
    pub name: String,
}
