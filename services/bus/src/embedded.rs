//! The embedded backend behind `signet up`: sign jobs live in the store's durable queue
//! table (a committed row is the "confirm"; it survives a restart), and events go over
//! an in-process broadcast. It serves one process; scale out with RabbitMQ or NATS.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use signet_store::Store;
use tokio::sync::{broadcast, mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::event::{Event, EventBus};
use crate::queue::{Delivery, JobQueue, Message, Settle};
use crate::{Bus, BusError, JOBS_QUEUE};

const BACKEND: &str = "embedded";
/// How long a leased message stays invisible to other consumers. A crashed process's
/// messages come back after this; workers settle well within it because every KMS and
/// registry call has its own shorter timeout.
const LEASE: Duration = Duration::from_secs(30);
/// How often an idle consumer looks for messages whose retry delay or lease has passed;
/// new messages from this process wake it at once.
const IDLE_POLL: Duration = Duration::from_millis(250);
const EVENT_BUFFER: usize = 4096;

/// Opens the embedded job queue and event bus on `store`.
pub fn open(store: Store) -> Bus {
    Bus {
        jobs: Arc::new(EmbeddedQueue {
            store,
            wake: Arc::new(Notify::new()),
        }),
        events: Arc::new(EmbeddedEvents {
            tx: broadcast::channel(EVENT_BUFFER).0,
        }),
    }
}

#[derive(Debug)]
struct EmbeddedQueue {
    store: Store,
    wake: Arc<Notify>,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable {
        backend: BACKEND,
        reason: e.to_string(),
    }
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn publish(&self, message: Message) -> Result<(), BusError> {
        self.store
            .queue_push(JOBS_QUEUE, &message.body, &message.headers)
            .await
            .map_err(unavailable)?;
        self.wake.notify_waiters();
        Ok(())
    }

    async fn consume(
        &self,
        prefetch: usize,
        shutdown: CancellationToken,
    ) -> Result<mpsc::Receiver<Delivery>, BusError> {
        let prefetch = prefetch.max(1);
        let (tx, rx) = mpsc::channel(prefetch);
        let store = self.store.clone();
        let wake = self.wake.clone();
        let permits = Arc::new(Semaphore::new(prefetch));
        tokio::spawn(async move {
            loop {
                let permit = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                };
                // Register interest before looking, so a publish between the lease
                // attempt and the wait is not missed.
                let notified = wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                match store.queue_lease(JOBS_QUEUE, LEASE).await {
                    Ok(Some(m)) => {
                        let settle = Box::new(EmbeddedSettle {
                            store: store.clone(),
                            id: m.id,
                            wake: wake.clone(),
                            _permit: permit,
                        });
                        let delivery = Delivery::new(
                            Message {
                                body: m.body,
                                headers: m.headers,
                            },
                            m.deliveries,
                            settle,
                        );
                        if tx.send(delivery).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        drop(permit);
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = notified => {}
                            _ = tokio::time::sleep(IDLE_POLL) => {}
                        }
                    }
                    Err(e) => {
                        drop(permit);
                        tracing::warn!(error = %e, "embedded queue: cannot lease a job; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        });
        Ok(rx)
    }

    async fn depth(&self) -> Result<Option<u64>, BusError> {
        self.store
            .queue_depth(JOBS_QUEUE)
            .await
            .map(Some)
            .map_err(unavailable)
    }

    async fn check(&self) -> Result<(), BusError> {
        self.store.ping().await.map_err(unavailable)
    }
}

struct EmbeddedSettle {
    store: Store,
    id: i64,
    wake: Arc<Notify>,
    /// Held until settled, so no more than `prefetch` deliveries are outstanding.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

#[async_trait]
impl Settle for EmbeddedSettle {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.store.queue_ack(self.id).await.map_err(unavailable)
    }

    async fn retry(self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        self.store
            .queue_retry(self.id, delay)
            .await
            .map_err(unavailable)?;
        if delay.is_zero() {
            self.wake.notify_waiters();
        }
        Ok(())
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), BusError> {
        self.store
            .queue_dead_letter(self.id, reason)
            .await
            .map_err(unavailable)
    }
}

#[derive(Debug)]
struct EmbeddedEvents {
    tx: broadcast::Sender<Event>,
}

#[async_trait]
impl EventBus for EmbeddedEvents {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        // No subscriber is not an error: verifiers catch up from the trust bundle.
        let _ = self.tx.send(event.clone());
        Ok(())
    }

    async fn subscribe(
        &self,
        shutdown: CancellationToken,
    ) -> Result<mpsc::Receiver<Event>, BusError> {
        let mut sub = self.tx.subscribe();
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = sub.recv() => n,
                };
                match next {
                    Ok(e) => {
                        if tx.send(e).await.is_err() {
                            return;
                        }
                    }
                    // A slow subscriber lost events; it sees the revision gap and re-syncs.
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "embedded event subscriber lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(rx)
    }
}
