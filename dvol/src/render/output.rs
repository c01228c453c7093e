//! How a command that does something reports it: text for people, the REST API's answer as
//! JSON for scripts (`--json`), or only what a script needs (`--quiet`).

use anyhow::Result;
use serde::Serialize;

use super::json::print_json;

/// The output a command was asked for (`--json`, `--quiet`, neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Lines for people, and progress on stderr.
    Text,
    /// The result as JSON on stdout (progress still on stderr).
    Json,
    /// Only the id or name a command made, if any; no progress.
    Quiet,
}

impl Output {
    /// Whether progress is shown on stderr.
    pub fn shows_progress(self) -> bool {
        self != Output::Quiet
    }

    /// Prints `value` as JSON under `--json` and answers `true`; answers `false` (printing
    /// nothing) otherwise, so the caller goes on to its text.
    pub fn json<T: Serialize>(self, value: &T) -> Result<bool> {
        if self != Output::Json {
            return Ok(false);
        }
        print_json(value)?;
        Ok(true)
    }

    /// Prints `value` as JSON under `--json`, `id` alone under `--quiet`, and runs `text`
    /// otherwise.
    pub fn result<T: Serialize>(
        self,
        value: &T,
        id: Option<&str>,
        text: impl FnOnce(),
    ) -> Result<()> {
        match self {
            Output::Json => print_json(value),
            Output::Quiet => {
                if let Some(id) = id {
                    println!("{id}");
                }
                Ok(())
            }
            Output::Text => {
                text();
                Ok(())
            }
        }
    }
}
