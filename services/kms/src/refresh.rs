//! Credentials that expire (STS sessions, Vault tokens from a login): fetched on first
//! use, kept until shortly before they expire, then fetched again. One fetch runs at a
//! time; callers arriving meanwhile wait for it instead of starting their own.
//!
//! Written here rather than taken from the AWS SDK's identity cache: that cache is wired
//! into the SDK's client runtime, and the same policy serves the Alibaba and Vault
//! providers, which have no SDK in Rust worth depending on.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;

/// A credential and when it stops working; `None`: it does not expire on its own.
pub(crate) struct Expiring<T> {
    pub value: T,
    pub expires: Option<SystemTime>,
}

/// The longest a credential is replaced ahead of its expiry, as the AWS SDKs do.
const MAX_MARGIN: Duration = Duration::from_secs(300);

/// When a credential fetched at `fetched` and expiring at `expires` is replaced: a
/// quarter of its lifetime before it expires, at most five minutes. An hour-long STS
/// session is renewed after 55 minutes, a 4-second Vault token after 3 seconds, so a
/// request never leaves with a credential about to expire in flight.
pub(crate) fn refresh_at(fetched: SystemTime, expires: SystemTime) -> SystemTime {
    let lifetime = expires.duration_since(fetched).unwrap_or_default();
    expires - (lifetime / 4).min(MAX_MARGIN)
}

struct Slot<T> {
    value: T,
    refresh_at: Option<SystemTime>,
    expires: Option<SystemTime>,
}

/// The cache. `T` is cheap to clone (strings, `Arc`s).
pub(crate) struct Refreshing<T> {
    slot: Mutex<Option<Slot<T>>>,
}

impl<T: Clone> Default for Refreshing<T> {
    fn default() -> Self {
        Self {
            slot: Mutex::new(None),
        }
    }
}

impl<T: Clone> Refreshing<T> {
    /// The cached credential, or a fresh one from `fetch` when none is cached or it is
    /// due for renewal. If the renewal fails while the old credential has not expired
    /// yet, the old one is used (and the next call tries again): a short outage of the
    /// credential endpoint does not stop signing.
    pub async fn get<E, F, Fut>(&self, fetch: F) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Expiring<T>, E>>,
    {
        self.get_at(SystemTime::now, fetch).await
    }

    /// [`Refreshing::get`] with the clock passed in, so the tests need not sleep.
    async fn get_at<E, F, Fut>(&self, clock: fn() -> SystemTime, fetch: F) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Expiring<T>, E>>,
    {
        let mut slot = self.slot.lock().await;
        let now = clock();
        if let Some(s) = slot.as_ref() {
            if s.refresh_at.is_none_or(|at| now < at) {
                return Ok(s.value.clone());
            }
        }
        match fetch().await {
            Ok(fresh) => {
                let refresh_at = fresh.expires.map(|e| refresh_at(now, e));
                *slot = Some(Slot {
                    value: fresh.value.clone(),
                    refresh_at,
                    expires: fresh.expires,
                });
                Ok(fresh.value)
            }
            Err(e) => match slot.as_ref() {
                Some(old) if old.expires.is_none_or(|at| clock() < at) => {
                    tracing::warn!(error = %e, "renewing a credential failed; the current one is still valid and is used meanwhile");
                    Ok(old.value.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// Forgets the cached credential: the service refused it (revoked, or expired early
    /// by the server's clock), so the next call fetches a new one.
    pub async fn invalidate(&self) {
        *self.slot.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    use super::*;

    #[test]
    fn renewal_is_a_quarter_of_the_lifetime_at_most_five_minutes_early() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = refresh_at(t0, t0 + Duration::from_secs(3600));
        assert_eq!(hour, t0 + Duration::from_secs(3300));
        let short = refresh_at(t0, t0 + Duration::from_secs(4));
        assert_eq!(short, t0 + Duration::from_secs(3));
        // Already expired when fetched (a skewed clock): renewed on the next call.
        assert_eq!(
            refresh_at(t0, t0 - Duration::from_secs(5)),
            t0 - Duration::from_secs(5)
        );
    }

    /// A clock the test moves by hand, in seconds after a fixed instant.
    static NOW: AtomicU64 = AtomicU64::new(0);
    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }
    fn clock() -> SystemTime {
        t(NOW.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn cached_until_due_then_fetched_again_and_kept_through_a_failed_renewal() {
        let cache: Refreshing<u32> = Refreshing::default();
        let fetches = AtomicU32::new(0);
        // Each fetch is numbered; the credential lives 400 s from the clock's "now".
        let fetch = |fail: bool| {
            let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if fail {
                    return Err(format!("endpoint down (fetch {n})"));
                }
                Ok(Expiring {
                    value: n,
                    expires: Some(clock() + Duration::from_secs(400)),
                })
            }
        };
        NOW.store(0, Ordering::SeqCst);
        assert_eq!(cache.get_at(clock, || fetch(false)).await, Ok(1));
        NOW.store(299, Ordering::SeqCst);
        assert_eq!(cache.get_at(clock, || fetch(false)).await, Ok(1), "cached");
        NOW.store(300, Ordering::SeqCst);
        assert_eq!(
            cache.get_at(clock, || fetch(false)).await,
            Ok(2),
            "renewed a quarter early"
        );
        NOW.store(650, Ordering::SeqCst);
        assert_eq!(
            cache.get_at(clock, || fetch(true)).await,
            Ok(2),
            "renewal failed, the old credential has not expired yet"
        );
        NOW.store(700, Ordering::SeqCst);
        assert_eq!(
            cache.get_at(clock, || fetch(true)).await,
            Err("endpoint down (fetch 4)".to_owned()),
            "expired and not renewed: the failure is reported"
        );
        assert_eq!(cache.get_at(clock, || fetch(false)).await, Ok(5));
        cache.invalidate().await;
        assert_eq!(
            cache.get_at(clock, || fetch(false)).await,
            Ok(6),
            "refused: fetched again"
        );
    }
}
