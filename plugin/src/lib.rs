//! The dvol daemon as a library.
//!
//! - [`service::VolumeService`] owns volume state: the metadata database ([`store`]), the
//!   backends, mount bookkeeping and crash recovery.
//! - [`docker`] speaks the Docker volume plugin protocol; [`api`] the REST control API. Both
//!   are thin: they parse a request, call the service, and shape the answer.
//! - [`daemon`] binds the sockets and serves both until shutdown.
//! - [`config`], [`profile`] and [`names`] turn user input into validated values.
//!
//! `dvol daemon` (the `dvol` crate) is a few lines over [`daemon::run`].

pub mod api;
pub mod body;
pub mod config;
pub mod containers;
pub mod daemon;
pub mod docker;
pub mod error;
pub mod history;
pub mod names;
pub mod profile;
pub mod progress;
pub mod service;
pub mod store;
pub mod volume;

pub use error::{ErrorClass, ServiceError};
pub use service::VolumeService;
