//! The trust cache's verdicts: which (image digest, witness key) pairs have a signature
//! the verifier checked itself, from an event or from the registry. It is the biggest
//! thing a verifier holds (100,000 entries by default), so it is kept compact: the key is
//! the digest's and the key fingerprint's 32 bytes each (no prefix: a shorter digest
//! would let someone who can have one image signed look for another with the same
//! prefix), the value its 4-byte expiry, in quick_cache's table (S3-FIFO-like eviction,
//! a few bytes of bookkeeping per entry). moka, used before, spent about 350 bytes of
//! bookkeeping per entry on its timer wheels and access-order deques.

use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, UnitWeighter};

use crate::trust::{DigestId, KeyId};

type Key = (DigestId, KeyId);

/// When a verdict stops counting, in whole seconds since the cache was made. Whether it
/// came from an event or the registry is not kept: nothing decides on it.
type Verdict = u32;

/// Counts the entries evicted for room (not those removed or expired).
#[derive(Debug, Clone)]
struct CountEvictions(Counter);

impl Lifecycle<Key, Verdict> for CountEvictions {
    type RequestState = ();

    fn begin_request(&self) -> Self::RequestState {}

    fn on_evict(&self, _state: &mut Self::RequestState, _key: Key, _val: Verdict) {
        self.0.inc();
    }
}

/// Verdicts that expire `ttl` after they were made, at most `capacity` of them.
pub struct Verdicts {
    cache: Cache<Key, Verdict, UnitWeighter, DefaultHashBuilder, CountEvictions>,
    epoch: Instant,
    ttl: Duration,
}

impl Verdicts {
    pub fn new(capacity: u64, ttl: Duration, evictions: Counter) -> Self {
        let capacity = capacity.max(1);
        Self {
            cache: Cache::with(
                usize::try_from(capacity).unwrap_or(usize::MAX),
                capacity,
                UnitWeighter,
                DefaultHashBuilder::default(),
                CountEvictions(evictions),
            ),
            epoch: Instant::now(),
            ttl,
        }
    }

    fn now(&self) -> u32 {
        u32::try_from(self.epoch.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// Whether `(digest, key)` has a verdict that has not expired.
    pub fn contains(&self, key: &Key) -> bool {
        self.contains_at(key, self.now())
    }

    fn contains_at(&self, key: &Key, now: u32) -> bool {
        match self.cache.get(key) {
            Some(expires) if expires > now => true,
            Some(_) => {
                self.cache.remove(key);
                false
            }
            None => false,
        }
    }

    /// Records a verdict, good for the cache's `ttl` from now.
    pub fn insert(&self, key: Key) {
        let ttl = u32::try_from(self.ttl.as_secs()).unwrap_or(u32::MAX);
        let expires = self.now().saturating_add(ttl.max(1));
        self.cache.insert(key, expires);
    }

    /// Drops a verdict (a revoked signature).
    pub fn invalidate(&self, key: &Key) {
        self.cache.remove(key);
    }

    /// Entries held, expired ones included until they are next looked up or purged.
    pub fn entry_count(&self) -> u64 {
        self.cache.len() as u64
    }

    /// Drops the expired entries (for figures and tests; lookups ignore them anyway).
    pub fn purge_expired(&self) {
        let now = self.now();
        self.cache.retain(|_, expires| *expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_expire_are_invalidated_and_are_bounded() {
        let evicted = Counter::default();
        let v = Verdicts::new(1_000, Duration::from_secs(3600), evicted.clone());
        let key = ([1u8; 32], [2u8; 32]);
        assert!(!v.contains(&key));
        v.insert(key);
        assert!(v.contains(&key));
        assert!(
            !v.contains(&([1u8; 32], [3u8; 32])),
            "another key's verdict"
        );
        v.invalidate(&key);
        assert!(!v.contains(&key));

        // An hour later the verdict no longer counts, and the lookup drops it.
        v.insert(key);
        assert!(v.contains_at(&key, v.now() + 3599));
        assert!(!v.contains_at(&key, v.now() + 3601));
        assert_eq!(v.entry_count(), 0);

        for i in 0..5_000u32 {
            let mut d = [0u8; 32];
            d[..4].copy_from_slice(&i.to_be_bytes());
            v.insert((d, [9u8; 32]));
        }
        assert!(v.entry_count() <= 1_000, "{}", v.entry_count());
        assert!(
            evicted.get() >= 4_000,
            "evictions counted: {}",
            evicted.get()
        );
    }
}
