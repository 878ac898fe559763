//! Retry delays: exponential growth capped at a maximum, with "equal jitter" (a uniform
//! draw between half the cap and the cap) so that jobs failing together do not retry
//! together, while every retry still waits at least half its ceiling.

use std::time::Duration;

use rand::Rng;

/// The delay before attempt `attempt + 1`, after `attempt` (1-based) failed.
pub fn delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let cap = ceiling(attempt, base, max);
    let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    // Never zero: a retry always yields to other work.
    Duration::from_millis(rand::thread_rng().gen_range(millis / 2..=millis.max(1)))
}

/// The upper bound of the delay after `attempt` failures: `base * 2^(attempt-1)`, capped.
pub fn ceiling(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    base.saturating_mul(1u32 << exp).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        assert_eq!(ceiling(1, base, max), Duration::from_millis(100));
        assert_eq!(ceiling(2, base, max), Duration::from_millis(200));
        assert_eq!(ceiling(5, base, max), Duration::from_millis(1600));
        assert_eq!(ceiling(20, base, max), max);
        assert_eq!(ceiling(u32::MAX, base, max), max);
    }

    #[test]
    fn jitter_stays_within_half_to_full_ceiling() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        for attempt in 1..12 {
            let c = ceiling(attempt, base, max);
            for _ in 0..50 {
                let d = delay(attempt, base, max);
                assert!(d <= c && d >= c / 2, "attempt {attempt}: {d:?} vs {c:?}");
            }
        }
    }
}
