//! The progress stream of long calls (commit, checkout, reset, fsck, gc).
//!
//! Asked with `Accept: application/x-ndjson`, such a call answers `200` with one JSON object
//! per line: zero or more `{"progress": {...}}` lines, then one `{"result": ...}` (the answer
//! the call gives without streaming) or `{"error": {"code", "message"}}`. A failure before the
//! first progress line is answered as without streaming, with its error status.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ErrorDetail;

/// The media type of a streamed answer: one JSON object per line.
pub const NDJSON: &str = "application/x-ndjson";

/// What a phase counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Bytes of file or device data.
    Bytes,
    /// Files, objects or references.
    Items,
}

/// How far one phase of an operation is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProgressEvent {
    /// The phase, e.g. `scan`, `read`, `checkout`, `verify objects`, `sweep`.
    pub phase: String,
    /// Units done so far in this phase.
    pub done: u64,
    /// Units in the whole phase, when known.
    pub total: Option<u64>,
    /// What the units are.
    pub unit: Unit,
    /// Whether the phase is over (its last event).
    #[serde(default)]
    pub finished: bool,
}

/// One line of a streamed answer: exactly one of `progress`, `result` or `error`; the last
/// line is a result or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamLine<T> {
    /// How far the operation is.
    Progress(ProgressEvent),
    /// The operation's answer, as the call without streaming returns it.
    Result(T),
    /// Why the operation failed, as the call without streaming returns it.
    Error(ErrorDetail),
}

impl<T: Serialize> StreamLine<T> {
    /// The line as bytes, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|e| {
            format!(
                r#"{{"error":{{"code":"internal","message":"cannot encode the answer: {e}"}}}}"#
            )
            .into_bytes()
        });
        line.push(b'\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_externally_tagged() {
        let line = StreamLine::<u32>::Result(7).to_line();
        assert_eq!(line, b"{\"result\":7}\n");
        let error = StreamLine::<u32>::Error(ErrorDetail::new("busy", "m"));
        assert_eq!(
            String::from_utf8(error.to_line()).unwrap(),
            "{\"error\":{\"code\":\"busy\",\"message\":\"m\"}}\n"
        );
    }
}
