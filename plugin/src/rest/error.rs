//! API failures: a [`ServiceError`] or a malformed request, answered as
//! `{"error": {"code", "message"}}` ([`ErrorBody`]) with a status from its [`ErrorClass`].

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dvol_api::{ErrorBody, ErrorDetail};
use serde::de::DeserializeOwned;
use utoipa::IntoResponses;

use crate::body::parse_json;
use crate::error::{ErrorClass, ServiceError};

/// An API failure.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// A failure with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl ToString) -> Self {
        ApiError {
            status,
            code,
            message: message.to_string(),
        }
    }

    /// The code and message, as the error body and the last line of a stream carry them.
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code.to_string(),
            message: self.message.clone(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let status = match e.class() {
            ErrorClass::Invalid => StatusCode::BAD_REQUEST,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Conflict => StatusCode::CONFLICT,
            ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal => {
                tracing::error!(error = %e, "API call failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.code(), e)
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(
            status,
            code,
            format!("request body rejected: {}", rejection.body_text()),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.detail(),
        };
        (self.status, Json(body)).into_response()
    }
}

/// Parses a `what` request's JSON body (any Content-Type, an empty body read as `{}`).
pub fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, ApiError> {
    parse_json(&body?).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("malformed {what} request: {e}"),
        )
    })
}

/// The failures any call on a volume can answer, as the OpenAPI document lists them.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum VolumeErrors {
    /// The request is wrong: a bad name, body, option, size or revision.
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// No such volume, revision, branch or tag.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// It conflicts with the volume's state: another profile than the name says, in use, being
    /// removed, busy with another operation, uncommitted changes, an existing branch or tag,
    /// containers that could not be stopped.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The request body is over 1 MiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// dvol or the host failed; the daemon's log has details. A remove that failed halfway
    /// leaves the volume listed as `removing`, with the reason, until a retried remove (or the
    /// next start) finishes it.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// The volume's backend cannot run on this host (`dvol profile ls` says why).
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The failure of a call that needs no volume: dvol or the host failed.
#[derive(IntoResponses)]
#[response(status = 500)]
#[allow(dead_code)]
pub struct InternalError(ErrorBody);

/// The parsed query string of a request, or a `bad_query` error showing the `usage`.
pub fn parse_query<T>(query: Result<Query<T>, QueryRejection>, usage: &str) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("{}: use {usage}", e.body_text()),
        )
    })
}
