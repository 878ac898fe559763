//! The publishing connection: one per bus, shared by the job queue and the event bus,
//! reopened with backoff by a task whenever it breaks. While it is down, publishing
//! fails at once instead of waiting for it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{connect, declare, publish_confirmed, unavailable, Config};
use crate::{reconnect, BusError};

/// How often the keeper looks at the connection's state. lapin marks a connection
/// broken as soon as its socket fails; this only bounds how long the keeper takes to
/// notice when no publish did first.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct Link {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    /// Stops the keeper when the last user of the link goes away.
    _stop: DropGuard,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("cfg", &self.cfg).finish()
    }
}

struct Shared {
    current: Mutex<Option<Arc<Session>>>,
    /// A publish saw the channel or connection fail.
    broken: Notify,
}

/// An open connection with a channel in confirm mode. Also used for short-lived
/// channels (queue depth, dead-letter peeks).
pub(crate) struct Session {
    pub(crate) conn: Connection,
    channel: Channel,
}

impl Session {
    fn healthy(&self) -> bool {
        self.conn.status().connected() && self.channel.status().connected()
    }
}

impl Link {
    /// Opens the first connection (so a wrong URL or an absent broker is reported now)
    /// and starts the keeper.
    pub(crate) async fn start(cfg: Arc<Config>) -> Result<Arc<Self>, BusError> {
        let first = open_session(&cfg).await?;
        let shared = Arc::new(Shared {
            current: Mutex::new(Some(Arc::new(first))),
            broken: Notify::new(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(keep(cfg.clone(), shared.clone(), stop.clone()));
        Ok(Arc::new(Self {
            cfg,
            shared,
            _stop: stop.drop_guard(),
        }))
    }

    /// The open session, or [`BusError::Unavailable`] while there is none.
    pub(crate) fn session(&self) -> Result<Arc<Session>, BusError> {
        let current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match current {
            Some(s) if s.healthy() => Ok(s),
            _ => Err(unavailable(format!(
                "not connected to RabbitMQ at {}; reconnecting",
                self.cfg.redacted
            ))),
        }
    }

    /// Publishes and waits for the confirm.
    pub(crate) async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), BusError> {
        let session = self.session()?;
        let result = publish_confirmed(
            &session.channel,
            exchange,
            routing_key,
            body,
            properties,
            mandatory,
            self.cfg.options.publish_timeout,
        )
        .await;
        if matches!(result, Err(BusError::Unavailable { .. })) {
            self.shared.broken.notify_one();
        }
        result
    }
}

async fn open_session(cfg: &Config) -> Result<Session, BusError> {
    let conn = connect(cfg, "publisher").await?;
    let setup = async {
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| unavailable(format!("opening a channel: {e}")))?;
        declare(&channel, &cfg.names).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| unavailable(format!("enabling publisher confirms: {e}")))?;
        Ok::<_, BusError>(channel)
    };
    let channel = tokio::time::timeout(cfg.options.connect_timeout, setup)
        .await
        .map_err(|_| unavailable("RabbitMQ did not answer while setting up the connection"))??;
    Ok(Session { conn, channel })
}

/// Watches the session and replaces it when it breaks, until `stop`.
async fn keep(cfg: Arc<Config>, shared: Arc<Shared>, stop: CancellationToken) {
    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let current = shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(session) = current {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = shared.broken.notified() => {}
                    _ = watch.tick() => {}
                }
                // A notification may be stale (from a session already replaced), so the
                // state decides.
                if !session.healthy() {
                    break;
                }
            }
        }
        *shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        tracing::warn!(broker = %cfg.redacted, "lost the RabbitMQ publishing connection; reconnecting");
        let max = cfg.options.reconnect_max_delay;
        let mut backoff = reconnect::backoff(max);
        loop {
            let attempt = tokio::select! {
                _ = stop.cancelled() => return,
                a = open_session(&cfg) => a,
            };
            match attempt {
                Ok(session) => {
                    *shared
                        .current
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(session));
                    tracing::warn!(broker = %cfg.redacted, "reconnected the RabbitMQ publishing connection");
                    break;
                }
                Err(e) => {
                    let delay = reconnect::next(&mut backoff, max);
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot reconnect to RabbitMQ");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}
