//! How the commands show what the daemon answers: tables, formatted values, JSON, the log and
//! its graph, and the progress of long operations. Names and text from the daemon are
//! escaped in text output ([`quote`]), never in JSON.

pub mod changes;
pub mod format;
pub mod graph;
pub mod json;
pub mod log;
pub mod output;
pub mod progress;
pub mod quote;
pub mod show;
pub mod stat;
pub mod table;
pub mod template;
