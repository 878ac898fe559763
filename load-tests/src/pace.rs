//! Sending operations at a fixed rate (open loop) or as fast as a fixed number of workers
//! can (closed loop), each bounded in count and in time.
//!
//! Open loop: operation `i` is due at `start + i / rate`, whether or not earlier ones have
//! finished. In-flight operations are capped; an operation that has to wait for a free
//! slot (because the server is slow to answer earlier ones) has its latency measured
//! **from when it was due**, so a server that falls behind shows up in the latencies
//! instead of silently lowering the offered rate (the "coordinated omission" mistake).
//! Other operations are timed from when they were sent: tokio's timer fires up to a
//! millisecond after the instant asked for, and that is the client's lateness, not the
//! server's. How late sends were is reported on its own ([`Paced::send_lag`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stats::Summary;

/// When operation `i` is due at `rate` per second, counted from the start.
pub fn due_after(rate: f64, i: u64) -> Duration {
    if rate <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(i as f64 / rate)
}

/// Bounds for one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most operations started.
    pub count: u64,
    /// No operation is started after this long.
    pub duration: Duration,
    /// Most operations in flight at once.
    pub in_flight: usize,
}

/// What an open-loop run measured.
#[derive(Debug, Clone)]
pub struct Paced {
    pub summary: Summary,
    /// The rate asked for.
    pub offered: f64,
    /// Operations that could not start when due because `in_flight` were running.
    pub late: u64,
    /// How long after their due time operations were sent (timer and scheduling lag).
    pub send_lag: Summary,
}

impl Paced {
    /// The rate actually completed (successes per second).
    pub fn achieved(&self) -> f64 {
        self.summary.throughput()
    }
}

/// Runs `op(i)` at `rate` per second within `limits`. `op` answers whether the operation
/// succeeded; failures are counted, not timed.
pub async fn open_loop<F, Fut>(rate: f64, limits: Limits, op: F) -> Paced
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.in_flight.max(1)));
    let start = Instant::now();
    let stop = start + limits.duration;
    let mut tasks = JoinSet::new();
    let mut late = 0;
    let mut lags = Vec::new();
    for i in 0..limits.count {
        let scheduled = start + due_after(rate, i);
        if scheduled > stop {
            break;
        }
        tokio::time::sleep_until(scheduled).await;
        let (permit, from) = match slots.clone().try_acquire_owned() {
            Ok(p) => (p, Instant::now()),
            Err(_) => {
                late += 1;
                match slots.clone().acquire_owned().await {
                    Ok(p) => (p, scheduled),
                    Err(_) => break,
                }
            }
        };
        lags.push(Instant::now().saturating_duration_since(scheduled));
        let fut = op(i);
        tasks.spawn(async move {
            let ok = fut.await;
            drop(permit);
            (ok, from.elapsed())
        });
    }
    let (samples, failed) = collect(&mut tasks).await;
    let elapsed = start.elapsed();
    Paced {
        summary: Summary::new(samples, failed, elapsed),
        offered: rate,
        late,
        send_lag: Summary::new(lags, 0, elapsed),
    }
}

/// Runs `op(i)` from `workers` loops, each starting its next operation when the last one
/// finished, until `limits.count` operations were started or `limits.duration` passed.
/// Measures the highest rate the server sustains.
pub async fn closed_loop<F, Fut>(workers: usize, limits: Limits, op: F) -> Summary
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let stop = start + limits.duration;
    let mut loops = JoinSet::new();
    for _ in 0..workers.max(1) {
        let (op, next) = (op.clone(), next.clone());
        loops.spawn(async move {
            let mut samples = Vec::new();
            let mut failed = 0;
            while Instant::now() < stop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= limits.count {
                    break;
                }
                let t = Instant::now();
                if op(i).await {
                    samples.push(t.elapsed());
                } else {
                    failed += 1;
                }
            }
            (samples, failed)
        });
    }
    let mut samples = Vec::new();
    let mut failed = 0;
    while let Some(r) = loops.join_next().await {
        if let Ok((s, f)) = r {
            samples.extend(s);
            failed += f;
        }
    }
    Summary::new(samples, failed, start.elapsed())
}

async fn collect(tasks: &mut JoinSet<(bool, Duration)>) -> (Vec<Duration>, usize) {
    let mut samples = Vec::new();
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((true, d)) => samples.push(d),
            _ => failed += 1,
        }
    }
    (samples, failed)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn operations_are_due_at_even_intervals() {
        assert_eq!(due_after(100.0, 0), Duration::ZERO);
        assert_eq!(due_after(100.0, 1), Duration::from_millis(10));
        assert_eq!(due_after(100.0, 250), Duration::from_millis(2500));
        assert_eq!(due_after(4000.0, 3), Duration::from_micros(750));
        assert_eq!(due_after(0.0, 9), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_sends_on_schedule_and_stops_at_its_count() {
        let started = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let seen = started.clone();
        let run = open_loop(
            50.0,
            Limits {
                count: 10,
                duration: Duration::from_secs(60),
                in_flight: 100,
            },
            move |i| {
                let seen = seen.clone();
                async move {
                    if let Ok(mut s) = seen.lock() {
                        s.push((i, t0.elapsed()));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    true
                }
            },
        )
        .await;
        let mut started = started.lock().map(|s| s.clone()).unwrap_or_default();
        started.sort();
        assert_eq!(started.len(), 10);
        for (i, at) in started {
            assert_eq!(at, Duration::from_millis(20 * i), "operation {i}");
        }
        assert_eq!(run.summary.count, 10);
        assert_eq!(run.late, 0);
        assert_eq!(run.send_lag.max, Duration::ZERO);
        // Each took 5 ms of (paused, exact) time from when it was due.
        assert_eq!(run.summary.p99, Duration::from_millis(5));
        assert_eq!(run.summary.max, Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_stops_at_its_duration() {
        let run = open_loop(
            100.0,
            Limits {
                count: 1_000_000,
                duration: Duration::from_secs(2),
                in_flight: 10,
            },
            |_| async { true },
        )
        .await;
        // Due at 0, 10 ms, ..., 2000 ms: 201 operations.
        assert_eq!(run.summary.count, 201);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_server_shows_in_the_latencies_not_in_a_lower_rate() {
        // One slot, 100 ms per operation, 4 due every 10 ms: the later ones wait.
        let run = open_loop(
            100.0,
            Limits {
                count: 4,
                duration: Duration::from_secs(60),
                in_flight: 1,
            },
            |_| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                true
            },
        )
        .await;
        assert_eq!(run.late, 3);
        assert_eq!(
            run.send_lag.max,
            Duration::from_millis(270),
            "the 4th was sent at 300 ms"
        );
        // The 4th was due at 30 ms and finished at 400 ms.
        assert_eq!(run.summary.max, Duration::from_millis(370));
        assert_eq!(run.summary.p50, Duration::from_millis(190));
        assert_eq!(run.summary.elapsed, Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_counted_not_timed() {
        let run = open_loop(
            1000.0,
            Limits {
                count: 10,
                duration: Duration::from_secs(1),
                in_flight: 10,
            },
            |i| async move { i % 2 == 0 },
        )
        .await;
        assert_eq!(run.summary.count, 5);
        assert_eq!(run.summary.failed, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn closed_loop_keeps_each_worker_busy_until_the_deadline() {
        let summary = closed_loop(
            4,
            Limits {
                count: 1_000_000,
                duration: Duration::from_millis(1000),
                in_flight: 4,
            },
            |_| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                true
            },
        )
        .await;
        // 4 workers, 100 operations each in 1 s.
        assert_eq!(summary.count, 400);
        assert!((summary.throughput() - 400.0).abs() < 1.0);
        let bounded = closed_loop(
            4,
            Limits {
                count: 7,
                duration: Duration::from_secs(10),
                in_flight: 4,
            },
            |_| async { true },
        )
        .await;
        assert_eq!(bounded.count, 7);
    }
}
