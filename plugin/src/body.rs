//! Request bodies: both protocols parse raw bytes with serde, never trusting Content-Type.
//!
//! The Docker Engine sends no Content-Type and sometimes no body at all, so an empty body is
//! read as `{}`.

use serde::de::DeserializeOwned;

/// The largest request body accepted (1 MiB); larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Parses a JSON body; an empty or all-blank body counts as `{}`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice(b"{}")
    } else {
        serde_json::from_slice(body)
    }
}
