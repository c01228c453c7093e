//! The end-to-end tests: real `dvol daemon` processes, the real `dvol` CLI and the real Docker
//! Engine, in one test binary with a module per feature (one binary links once, and its tests
//! share one pool of test threads).
//!
//! Every test runs its own daemon (own root, own sockets, own Docker driver name) and uses names
//! of its own, so the tests run in parallel. The shared harness is the `dvol_tests` library:
//! the daemon and the engine in `dvol_tests`, the Docker and REST helpers in
//! `dvol_tests::fixtures`.
//!
//! Run one feature with `cargo test -p dvol-tests --test e2e -- docker::`.

mod api_schema;
mod block_volumes;
mod checkout_journal;
mod cli;
mod cli_history;
mod cli_inspect;
mod cli_output;
mod cli_tools;
mod cluster;
mod copy_on_write;
mod database;
mod docker;
mod engine_restart;
mod history;
mod history_safety;
mod hosts;
mod managed_plugin;
mod metrics;
mod robustness;
mod service_unit;
mod space_safety;
mod special_files;
mod state_safety;
mod tcp_listener;
mod transfer;
