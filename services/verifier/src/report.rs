//! Admission decisions go to the control plane in batches: every `interval` or when a
//! batch is full. Admissions never wait for this: a decision is queued (or, when the
//! queue is full, dropped and counted) and the reporter keeps what it could not send
//! while the control plane is down, up to a bound. Break-glass decisions, which must
//! never be dropped, do not come here: see [`crate::break_glass`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use signet_core::AdmissionDecision;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::control::ControlPlane;

/// Decisions waiting to be picked up by the reporter task.
const QUEUE: usize = 10_000;
/// Decisions kept while the control plane is unreachable; the oldest go first.
const BACKLOG: usize = 50_000;
/// How long the final flush at shutdown may take.
const FINAL_FLUSH: Duration = Duration::from_secs(3);

/// The admission side of the reporter: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct Reporter {
    tx: mpsc::Sender<AdmissionDecision>,
    urgent: Arc<Notify>,
    dropped: Arc<AtomicU64>,
}

impl Reporter {
    /// Queues a decision; `urgent` sends it (and whatever waits with it) right away.
    pub fn record(&self, decision: AdmissionDecision, urgent: bool) {
        if self.tx.try_send(decision).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "admission decision queue is full; dropping decisions (the control plane is slow or down)");
            }
        } else if urgent {
            self.urgent.notify_one();
        }
    }

    /// Decisions dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
impl Reporter {
    /// A reporter whose decisions land in the returned receiver.
    pub(crate) fn for_tests() -> (Self, mpsc::Receiver<AdmissionDecision>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Self {
                tx,
                urgent: Arc::new(Notify::new()),
                dropped: Arc::default(),
            },
            rx,
        )
    }
}

/// Starts the reporter task; it flushes what it holds when `shutdown` fires and ends.
pub fn start(
    control: ControlPlane,
    interval: Duration,
    batch: usize,
    shutdown: CancellationToken,
) -> (Reporter, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let urgent = Arc::new(Notify::new());
    let reporter = Reporter {
        tx,
        urgent: urgent.clone(),
        dropped: Arc::default(),
    };
    let task = tokio::spawn(run(control, rx, urgent, interval, batch.max(1), shutdown));
    (reporter, task)
}

async fn run(
    control: ControlPlane,
    mut rx: mpsc::Receiver<AdmissionDecision>,
    urgent: Arc<Notify>,
    interval: Duration,
    batch: usize,
    shutdown: CancellationToken,
) {
    let mut backlog: VecDeque<AdmissionDecision> = VecDeque::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush_now = tokio::select! {
            _ = shutdown.cancelled() => break,
            d = rx.recv() => match d {
                Some(d) => {
                    push(&mut backlog, d);
                    backlog.len() >= batch
                }
                None => break,
            },
            _ = urgent.notified() => true,
            _ = tick.tick() => !backlog.is_empty(),
        };
        if flush_now {
            // Pick up whatever else is already queued, so one request carries it.
            while backlog.len() < batch {
                match rx.try_recv() {
                    Ok(d) => push(&mut backlog, d),
                    Err(_) => break,
                }
            }
            flush(&control, &mut backlog, batch).await;
        }
    }
    while let Ok(d) = rx.try_recv() {
        push(&mut backlog, d);
    }
    if !backlog.is_empty() {
        let _ = tokio::time::timeout(FINAL_FLUSH, flush(&control, &mut backlog, batch)).await;
        if !backlog.is_empty() {
            tracing::warn!(
                unsent = backlog.len(),
                "shutting down with admission decisions not reported"
            );
        }
    }
}

fn push(backlog: &mut VecDeque<AdmissionDecision>, d: AdmissionDecision) {
    if backlog.len() >= BACKLOG {
        backlog.pop_front();
    }
    backlog.push_back(d);
}

/// Sends the backlog in batches; stops at the first failure and keeps the rest.
async fn flush(control: &ControlPlane, backlog: &mut VecDeque<AdmissionDecision>, batch: usize) {
    while !backlog.is_empty() {
        let n = backlog.len().min(batch);
        let chunk: Vec<AdmissionDecision> = backlog.iter().take(n).cloned().collect();
        match control.report(&chunk).await {
            Ok(_) => {
                backlog.drain(..n);
            }
            Err(e) => {
                tracing::warn!(error = %e, waiting = backlog.len(), "cannot report admission decisions; keeping them for the next attempt");
                return;
            }
        }
    }
}
