//! Backoff between reconnection attempts, shared by the broker backends.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Delays for successive reconnection attempts: from 100ms, doubling, with jitter so a
/// fleet of replicas does not reconnect in lockstep, never above `max`, never giving up.
pub(crate) fn backoff(max: Duration) -> impl Iterator<Item = Duration> + Send {
    // Jitter adds up to the delay itself again, so the delay before jitter stops at half.
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100).min(max / 2))
        .with_max_delay(max / 2)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The next delay; the iterator never ends, the fallback only satisfies the types.
pub(crate) fn next(it: &mut impl Iterator<Item = Duration>, max: Duration) -> Duration {
    it.next().unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_stays_capped() {
        let max = Duration::from_secs(2);
        let mut it = backoff(max);
        let delays: Vec<_> = (0..20).map(|_| next(&mut it, max)).collect();
        assert!(delays.iter().all(|d| *d <= max), "{delays:?}");
        assert!(delays[0] <= Duration::from_millis(200), "{delays:?}");
        assert!(delays[19] >= max / 2, "{delays:?}");
    }
}
