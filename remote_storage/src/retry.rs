//! Whole-operation retries with exponential backoff and jitter.
//!
//! Two levels retry a failed transfer. `object_store` retries each HTTP request on 5xx, 429, timeouts and
//! connection errors ([`object_store::RetryConfig`], set from [`RetryPolicy::request_retry_config`]).
//! Around that, an operation that still fails with a transient error ([`RemoteError::is_transient`]) is
//! started over from scratch here: a multipart upload is aborted and begun again, a download writes a new
//! temporary file. Errors that a retry cannot fix (refused credentials, missing objects, checksum
//! mismatches, local IO errors) are returned at once.
//!
//! Two more loops are bounded here:
//! - A conditional write of the index that loses to another writer (`412 Precondition Failed`, or the
//!   object created by someone else first) is done again from a fresh read of the index, up to
//!   [`RetryPolicy::conflict_attempts`] times with [`RetryPolicy::backoff`] between them, then it is
//!   [`RemoteError::IndexConflict`].
//! - Aborting a multipart upload is retried with backoff for up to [`RetryPolicy::abort_window`] (an
//!   outage of some seconds must not leave the upload's parts behind); an upload still not aborted then
//!   is remembered and tried again by [`RemoteStorage::remove_orphans`](crate::RemoteStorage::remove_orphans).

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::error::RemoteError;

/// How often and how patiently an operation is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts of one whole operation (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Retries of one HTTP request inside `object_store`.
    pub request_retries: usize,
    /// Time limit of one HTTP request's retries inside `object_store`.
    pub request_retry_timeout: Duration,
    /// Conditional writes of the index tried before [`RemoteError::IndexConflict`] (at least 1).
    pub conflict_attempts: u32,
    /// How long an abort of a multipart upload is retried (with [`backoff`](Self::backoff)) while the
    /// store fails transiently.
    pub abort_window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            request_retries: 6,
            request_retry_timeout: Duration::from_secs(60),
            conflict_attempts: 32,
            abort_window: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The per-request policy handed to `object_store`: its own exponential backoff from
    /// `initial_backoff` up to `max_backoff`.
    pub fn request_retry_config(&self) -> object_store::RetryConfig {
        object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: self.initial_backoff,
                max_backoff: self.max_backoff,
                base: 2.0,
            },
            max_retries: self.request_retries,
            retry_timeout: self.request_retry_timeout,
        }
    }

    /// The wait after failed attempt `attempt` (1-based): `initial * 2^(attempt-1)`, capped, with up to
    /// half of it taken off at random so that many clients do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let jitter = rand::rng().random_range(0.5..=1.0);
        exp.mul_f64(jitter)
    }
}

/// Runs `op(attempt)` until it succeeds, fails with an error that is not transient, or `max_attempts`
/// are spent; waits [`RetryPolicy::backoff`] between attempts. The last error is returned with the
/// number of attempts made recorded in it.
pub(crate) async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut op: F,
) -> Result<T, RemoteError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, RemoteError>>,
{
    let max = policy.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt < max => {
                let wait = policy.backoff(attempt);
                tracing::warn!(
                    operation = what,
                    attempt,
                    max_attempts = max,
                    wait_ms = wait.as_millis() as u64,
                    error = %e,
                    "remote operation failed, retrying"
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(mut e) => {
                if let RemoteError::Store { attempts, .. } = &mut e {
                    *attempts = attempt;
                }
                return Err(e);
            }
        }
    }
}

/// The wait before attempt `attempt + 1` of a request retried for at most `window` since `start`, or
/// `None` if that wait would end past the window.
pub(crate) fn wait_within(
    policy: &RetryPolicy,
    start: std::time::Instant,
    window: Duration,
    attempt: u32,
) -> Option<Duration> {
    let wait = policy.backoff(attempt);
    (start.elapsed() + wait <= window).then_some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn transient() -> RemoteError {
        RemoteError::Store {
            store: "test".into(),
            op: "put",
            key: "k".into(),
            attempts: 1,
            source: Box::new(object_store::Error::Generic {
                store: "test",
                source: "connection reset".into(),
            }),
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            ..RetryPolicy::default()
        }
    }

    #[tokio::test]
    async fn retries_transient_until_success() {
        let calls = AtomicU32::new(0);
        let out = with_retries(&fast(), "t", |attempt| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move {
                if attempt < 3 {
                    Err(transient())
                } else {
                    Ok(attempt)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(out, 3);
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn gives_up_and_reports_attempts() {
        let err = with_retries(&fast(), "t", |_| async { Err::<(), _>(transient()) })
            .await
            .unwrap_err();
        assert!(
            matches!(err, RemoteError::Store { attempts: 3, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let err = with_retries(&fast(), "t", |_| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>(RemoteError::NotUploaded { layer: "x".into() }) }
        })
        .await
        .unwrap_err();
        assert!(matches!(err, RemoteError::NotUploaded { .. }));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            ..RetryPolicy::default()
        };
        assert!(p.backoff(1) <= Duration::from_millis(100));
        assert!(p.backoff(1) >= Duration::from_millis(50));
        assert!(p.backoff(10) <= Duration::from_millis(300));
        assert!(p.backoff(10) >= Duration::from_millis(150));
    }
}
