//! Latency samples and their summary: count, throughput, p50/p90/p99 and max.
//!
//! Percentiles are exact over every sample (no histogram buckets): runs are bounded to a
//! few hundred thousand samples, which sort in milliseconds.

use std::fmt;
use std::time::Duration;

/// The nearest-rank percentile (`p` in 0..=100) of samples sorted ascending: the
/// smallest sample such that at least `p`% of all samples are at or below it.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What one scenario measured: its latencies and how long the whole run took.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: usize,
    /// Operations that did not succeed (not counted in the latencies).
    pub failed: usize,
    /// From the first operation sent to the last one finished.
    pub elapsed: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn new(mut samples: Vec<Duration>, failed: usize, elapsed: Duration) -> Self {
        samples.sort_unstable();
        Self {
            count: samples.len(),
            failed,
            elapsed,
            p50: percentile(&samples, 50.0),
            p90: percentile(&samples, 90.0),
            p99: percentile(&samples, 99.0),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    /// Successful operations per second over the whole run.
    pub fn throughput(&self) -> f64 {
        per_second(self.count, self.elapsed)
    }
}

/// `count` per second over `elapsed`; zero for an empty interval.
pub fn per_second(count: usize, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

/// Milliseconds with a precision that suits the magnitude.
pub fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v < 10.0 {
        format!("{v:.2} ms")
    } else if v < 1000.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={} failed={} in {:.2}s ({:.1}/s) p50={} p90={} p99={} max={}",
            self.count,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.throughput(),
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=100 ms: the p-th percentile is p ms exactly.
        let samples = millis(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 90.0), Duration::from_millis(90));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&samples, 0.0), Duration::from_millis(1));
    }

    #[test]
    fn small_sets_round_up_to_a_real_sample() {
        let samples = millis(&[10, 20, 30]);
        // 50% of 3 samples is 1.5: the 2nd sample is the first with >= 50% at or below.
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(20));
        // p99 of three samples is the largest, never an interpolated value.
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(30));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
        assert_eq!(
            percentile(&millis(&[7]), 50.0),
            Duration::from_millis(7),
            "one sample is every percentile"
        );
    }

    #[test]
    fn one_slow_outlier_in_a_hundred_is_the_max_not_the_p99() {
        let mut v = vec![1u64; 99];
        v.push(500);
        let s = Summary::new(millis(&v), 0, Duration::from_secs(1));
        assert_eq!(s.p99, Duration::from_millis(1));
        assert_eq!(s.max, Duration::from_millis(500));
        // Two in a hundred reach the p99.
        v[0] = 400;
        let s = Summary::new(millis(&v), 0, Duration::from_secs(1));
        assert_eq!(s.p99, Duration::from_millis(400));
    }

    #[test]
    fn summary_sorts_and_counts() {
        let s = Summary::new(millis(&[30, 10, 20, 40]), 2, Duration::from_secs(2));
        assert_eq!(s.count, 4);
        assert_eq!(s.failed, 2);
        assert_eq!(s.p50, Duration::from_millis(20));
        assert_eq!(s.max, Duration::from_millis(40));
        assert!((s.throughput() - 2.0).abs() < 1e-9);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
    }

    #[test]
    fn milliseconds_are_printed_for_their_magnitude() {
        assert_eq!(ms(Duration::from_micros(1234)), "1.23 ms");
        assert_eq!(ms(Duration::from_micros(45_678)), "45.7 ms");
        assert_eq!(ms(Duration::from_millis(2500)), "2500 ms");
    }
}
