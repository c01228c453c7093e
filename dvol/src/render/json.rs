//! `--json` output: the typed answer, pretty-printed.

use anyhow::Result;
use serde::Serialize;

/// Prints `value` as pretty JSON. It goes through [`serde_json::Value`] so that the keys of
/// each object come in the order `dvol` has always printed them (sorted), whatever the order
/// of the type's fields.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let value = serde_json::to_value(value)?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}
