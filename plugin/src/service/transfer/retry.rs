//! The daemon's own retry of a push, fetch or pull whose connection to the remote was lost or
//! could not be made: the same work again after 1 s, 2 s, 4 s and so on (at most
//! [`MAX_BACKOFF`]), up to the request's `retries`. A transfer is safe to repeat (what arrived
//! is kept and not sent again; refs move by compare-and-swap), so each try sends only what is
//! still missing. Refusals, divergence, protocol errors and TLS errors are not tried again.

use std::future::Future;
use std::time::Duration;

use dvol_api::{DEFAULT_RETRIES, MAX_RETRIES};
use tracing::warn;

use crate::error::{ServiceError, TransferError};

/// The wait before the first retry; it doubles for each further one.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The wait before retry `n` (0 for the first).
fn backoff(n: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(n))
        .min(MAX_BACKOFF)
}

/// The retries `asked` (the default when absent), refused above [`MAX_RETRIES`].
pub(super) fn retries(asked: Option<u32>) -> Result<u32, TransferError> {
    match asked.unwrap_or(DEFAULT_RETRIES) {
        n if n > MAX_RETRIES => Err(TransferError::TooManyRetries {
            retries: n,
            max: MAX_RETRIES,
        }),
        n => Ok(n),
    }
}

/// Whether trying `e`'s work again may succeed.
fn transient(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Transfer(t) if matches!(**t, TransferError::Unreachable { transient: true, .. }))
}

/// Runs `attempt` until it succeeds, fails for good, or has been tried `retries` more times
/// after lost connections; its answer with the number of tries. `what` names the work for
/// the log (`push of volume orders to b`).
pub(super) async fn retrying<T, F, Fut>(
    what: &str,
    retries: u32,
    mut attempt: F,
) -> Result<(T, u32), ServiceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Ok(answer) => return Ok((answer, tries)),
            Err(e) if tries <= retries && transient(&e) => {
                let wait = backoff(tries - 1);
                warn!(work = what, tries, error = %e, wait_ms = wait.as_millis() as u64, "the connection to the remote was lost; trying again (what arrived is kept)");
                tokio::time::sleep(wait).await;
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn lost() -> ServiceError {
        TransferError::Unreachable {
            remote: "b".into(),
            url: "tcp://10.0.0.2:7411".into(),
            reason: "connection reset".into(),
            transient: true,
        }
        .into()
    }

    #[test]
    fn retries_default_to_three_and_are_bounded() {
        assert_eq!(retries(None).unwrap(), DEFAULT_RETRIES);
        assert_eq!(retries(Some(0)).unwrap(), 0);
        assert_eq!(retries(Some(MAX_RETRIES)).unwrap(), MAX_RETRIES);
        let err = retries(Some(MAX_RETRIES + 1)).unwrap_err();
        assert!(err.to_string().contains("at most 20"), "{err}");
        assert_eq!(err.code(), "invalid_retries");
    }

    #[test]
    fn the_wait_doubles_up_to_its_limit() {
        let waits: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn lost_connections_are_tried_again_and_counted() {
        let calls = AtomicU32::new(0);
        let answer = retrying("push", 3, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(lost()),
                _ => Ok("done"),
            }
        })
        .await
        .unwrap();
        assert_eq!(answer, ("done", 3));
    }

    #[tokio::test(start_paused = true)]
    async fn tries_stop_at_the_limit_with_the_last_error() {
        let calls = AtomicU32::new(0);
        let err = retrying::<(), _, _>("push", 2, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(lost())
        })
        .await
        .unwrap_err();
        assert!(transient(&err), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), 3, "one try and two retries");
        let none = AtomicU32::new(0);
        let _ = retrying::<(), _, _>("push", 0, || async {
            none.fetch_add(1, Ordering::SeqCst);
            Err(lost())
        })
        .await;
        assert_eq!(none.load(Ordering::SeqCst), 1, "retries 0: one try");
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_and_tls_errors_are_not_tried_again() {
        for err in [
            TransferError::Unreachable {
                remote: "b".into(),
                url: "tcp://10.0.0.2:7411".into(),
                reason: "TLS handshake failed: unknown issuer".into(),
                transient: false,
            },
            TransferError::Refused {
                remote: "b".into(),
                status: 409,
                code: Some("diverged".into()),
                message: "no".into(),
                containers: Vec::new(),
            },
        ] {
            let calls = AtomicU32::new(0);
            let shown = err.to_string();
            let mut err = Some(err);
            let got = retrying::<(), _, _>("push", 3, || {
                calls.fetch_add(1, Ordering::SeqCst);
                let e = err.take();
                async move { Err(e.map(ServiceError::from).unwrap_or_else(lost)) }
            })
            .await
            .unwrap_err();
            assert_eq!(got.to_string(), shown);
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{shown}");
        }
    }
}
