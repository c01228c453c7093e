//! Telling the service manager how the daemon is doing, for systemd's `Type=notify`
//! (`scripts/systemd/dvol.service`): `STATUS=` lines while it starts, `READY=1` once every
//! socket it was asked for serves, `STOPPING=1` when it begins to shut down.
//!
//! The messages go to the datagram socket named by `$NOTIFY_SOCKET` (see `sd_notify(3)`);
//! without that variable every call here does nothing. A message that cannot be sent is
//! logged and otherwise ignored: the daemon serves the same with or without a service
//! manager listening.

use sd_notify::NotifyState;
use tracing::warn;

/// Says what the daemon is doing now (`STATUS=`), e.g. while it opens its state.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)], "status");
}

/// Says the daemon serves (`READY=1`), with what it serves (`STATUS=`). Call it once, after
/// every listener is bound and served: the service manager then starts the units ordered
/// after the daemon (the Docker Engine, whose containers mount dvol volumes).
pub fn ready(status: &str) {
    send(
        &[NotifyState::Ready, NotifyState::Status(status)],
        "readiness",
    );
}

/// Says the daemon is shutting down (`STOPPING=1`), with why or what it waits for
/// (`STATUS=`).
pub fn stopping(status: &str) {
    send(
        &[NotifyState::Stopping, NotifyState::Status(status)],
        "shutdown",
    );
}

/// Sends `states` to `$NOTIFY_SOCKET`, if set (else nothing); a failure is logged with
/// `what` was being said.
fn send(states: &[NotifyState<'_>], what: &str) {
    if let Err(e) = sd_notify::notify(states) {
        let socket = std::env::var_os("NOTIFY_SOCKET").unwrap_or_default();
        warn!(
            notify_socket = %socket.to_string_lossy(),
            error = %e,
            "cannot tell the service manager about the daemon's {what} through \
             NOTIFY_SOCKET={}: {e}; under systemd the unit may time out starting (check that \
             the unit has Type=notify and NotifyAccess=main, or unset NOTIFY_SOCKET)",
            socket.to_string_lossy()
        );
    }
}
