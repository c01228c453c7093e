//! API failures: a [`ServiceError`] or a malformed request, answered as
//! `{"error": {"code", "message"}}` ([`ErrorBody`]) with a status from its [`ErrorClass`].

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, Request};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
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
    containers: Vec<String>,
}

impl ApiError {
    /// A failure with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl ToString) -> Self {
        ApiError {
            status,
            code,
            message: message.to_string(),
            containers: Vec::new(),
        }
    }

    /// The code and message, as the error body and the last line of a stream carry them.
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code.to_string(),
            message: self.message.clone(),
            containers: self.containers.clone(),
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
        let containers = e.containers().to_vec();
        ApiError {
            containers,
            ..ApiError::new(status, e.code(), e)
        }
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

/// The longest text of a plain refusal kept as an error message.
const MAX_REFUSAL_TEXT: usize = 4096;

/// Makes every refusal the JSON error envelope, whoever refused: a request path or query that
/// is not valid UTF-8 once percent-decoded is refused here (`bad_path`, `bad_query`), before
/// an extractor answers it in plain text or decodes it lossily; any other error answer that is not JSON (an extractor's or the
/// router's own) is rewrapped with a code for its status and its text as the message.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if std::str::from_utf8(&percent_decode(path.as_bytes())).is_err() {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            format!(
                "the request path {path} is not valid UTF-8 once percent-decoded; volume, \
                 branch and tag names are UTF-8 text, percent-encoded as UTF-8"
            ),
        )
        .into_response();
    }
    if let Some(query) = request.uri().query() {
        if std::str::from_utf8(&percent_decode(query.as_bytes())).is_err() {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!(
                    "the query string {query} is not valid UTF-8 once percent-decoded; \
                     revisions and names are UTF-8 text, percent-encoded as UTF-8"
                ),
            )
            .into_response();
        }
    }
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), MAX_REFUSAL_TEXT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    } else {
        text
    };
    ApiError::new(status, code_of_status(status), message).into_response()
}

/// The error code of a refusal known only by its status.
fn code_of_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "no_route",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(high), Some(low)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(high << 4 | low);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_keeps_stray_percent_signs() {
        assert_eq!(percent_decode(b"/v1/volumes/a%20b"), b"/v1/volumes/a b");
        assert_eq!(percent_decode(b"%FF%c3%a9"), [0xff, 0xc3, 0xa9]);
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%4"), b"%4");
        assert_eq!(percent_decode(b"%zz%41"), b"%zzA");
    }
}
