//! `dvol`: the daemon and the command-line client of its REST API.
//!
//! `dvol daemon` runs the server (see the `dvol-plugin` crate); every other command talks to a
//! running daemon over its REST API.
//!
//! - [`cli`]: the command line, as clap sees it.
//! - [`client`]: the typed REST client, one method per endpoint.
//! - `command`: one module per command (or small family), each a few lines over the client.
//! - `render`: how answers are shown: tables, formats, JSON, the log graph, progress.
//! - `current`: the current volume; `author`: who commits by default.

pub mod cli;
pub mod client;

mod author;
mod command;
mod current;
mod render;

pub use command::run;
pub use render::quote::escape_text;
