//! The embedded backend behind `signet up`: sign jobs live in the store's durable queue
//! table (a committed row is the "confirm"; it survives a restart), and events go over
//! an in-process broadcast. It serves one process; scale out with RabbitMQ or NATS.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use signet_store::Store;
use tokio::sync::{broadcast, mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::event::{EventBus, OutgoingEvent, ReceivedEvent};
use crate::queue::{enforce_max_deliver, DeadLetter, Delivery, JobQueue, Message, Settle};
use crate::{Bus, BusError, BusOptions, Names};

const BACKEND: &str = "embedded";
/// How often an idle consumer looks for messages whose retry delay or lease has passed;
/// new messages from this process wake it at once.
const IDLE_POLL: Duration = Duration::from_millis(250);
const EVENT_BUFFER: usize = 4096;

/// Opens the embedded job queue and event bus on `store`, with default options.
pub fn open(store: Store) -> Bus {
    open_with(store, Names::default(), BusOptions::default())
}

/// Opens the embedded job queue and event bus on `store`. The queue is named after
/// `names.jobs()`; `options.ack_wait` is the lease: how long a message taken by a
/// process that then died stays invisible. Workers settle well within it because every
/// KMS and registry call has its own shorter timeout.
pub fn open_with(store: Store, names: Names, options: BusOptions) -> Bus {
    Bus {
        jobs: Arc::new(EmbeddedQueue {
            store,
            queue: names.jobs(),
            lease: options.ack_wait,
            max_deliver: options.max_deliver,
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
    queue: String,
    lease: Duration,
    max_deliver: u32,
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
            .queue_push(&self.queue, &message.body, &message.headers)
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
        let (queue, lease, max_deliver) = (self.queue.clone(), self.lease, self.max_deliver);
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
                match store.queue_lease(&queue, lease).await {
                    Ok(Some(m)) => {
                        let settle = Box::new(EmbeddedSettle {
                            store: store.clone(),
                            id: m.id,
                            wake: wake.clone(),
                            settled: false,
                            _permit: permit,
                        });
                        // Row ids are never reused; the enqueue time also tells apart the
                        // rows of a database that was recreated.
                        let id = format!(
                            "embedded:{queue}:{}:{}",
                            m.id,
                            m.enqueued_at.timestamp_millis()
                        );
                        let delivery = Delivery::new(
                            Message {
                                body: m.body,
                                headers: m.headers,
                            },
                            m.deliveries,
                            settle,
                        )
                        .with_message_id(id);
                        let Some(delivery) = enforce_max_deliver(delivery, max_deliver).await
                        else {
                            continue;
                        };
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
            .queue_depth(&self.queue)
            .await
            .map(Some)
            .map_err(unavailable)
    }

    async fn oldest(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, BusError> {
        self.store
            .queue_oldest(&self.queue)
            .await
            .map_err(unavailable)
    }

    async fn check(&self) -> Result<(), BusError> {
        self.store.ping().await.map_err(unavailable)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let dead = self
            .store
            .queue_dead(&self.queue, limit)
            .await
            .map_err(unavailable)?;
        Ok(dead
            .into_iter()
            .map(|d| DeadLetter {
                message: Message {
                    body: d.body,
                    headers: d.headers,
                },
                reason: d.reason,
                delivery_count: d.deliveries,
            })
            .collect())
    }
}

struct EmbeddedSettle {
    store: Store,
    id: i64,
    wake: Arc<Notify>,
    settled: bool,
    /// Held until settled, so no more than `prefetch` deliveries are outstanding.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

#[async_trait]
impl Settle for EmbeddedSettle {
    async fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        self.settled = true;
        self.store.queue_ack(self.id).await.map_err(unavailable)
    }

    async fn retry(mut self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        self.settled = true;
        self.store
            .queue_retry(self.id, delay)
            .await
            .map_err(unavailable)?;
        if delay.is_zero() {
            self.wake.notify_waiters();
        }
        Ok(())
    }

    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<(), BusError> {
        self.settled = true;
        self.store
            .queue_dead_letter(self.id, reason)
            .await
            .map_err(unavailable)
    }
}

impl Drop for EmbeddedSettle {
    /// A delivery dropped unsettled in a live process (a worker that panicked) is
    /// released at once rather than after its lease; a dead process relies on the lease.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, id, wake) = (self.store.clone(), self.id, self.wake.clone());
        rt.spawn(async move {
            match store.queue_retry(id, Duration::ZERO).await {
                Ok(()) => wake.notify_waiters(),
                Err(e) => {
                    tracing::warn!(error = %e, "could not release a dropped delivery; it comes back when its lease ends")
                }
            }
        });
    }
}

#[derive(Debug)]
struct EmbeddedEvents {
    tx: broadcast::Sender<ReceivedEvent>,
}

#[async_trait]
impl EventBus for EmbeddedEvents {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn publish(&self, event: &OutgoingEvent) -> Result<(), BusError> {
        // No subscriber is not an error: verifiers catch up from the trust bundle.
        let _ = self.tx.send(ReceivedEvent::from(event));
        Ok(())
    }

    async fn subscribe(
        &self,
        shutdown: CancellationToken,
    ) -> Result<mpsc::Receiver<ReceivedEvent>, BusError> {
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
