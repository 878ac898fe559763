//! `GET /v1/events/stream`: signet's events and admission decisions as server-sent
//! events, for the console (and `curl -N`). See [`crate::live`].

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::AppState;

/// How often an idle stream says it is alive (proxies close silent connections).
const KEEPALIVE: Duration = Duration::from_secs(15);

#[utoipa::path(
    get,
    path = "/v1/events/stream",
    tag = "records",
    summary = "Follow events live (server-sent events)",
    description = "A `text/event-stream`: one message per signet event (`event:` is its \
        name, `signature.published`, `witness.revoked`, …) and per admission decision \
        reported to this gateway (`admission.decision`); `data:` is JSON \
        `{type, subject, time, data}`. Only events the control plane sealed are passed on. \
        A stream that falls behind gets a `lagged` message and should re-read what it shows. \
        Role: admin or viewer.",
    responses((status = 200, description = "The stream", content_type = "text/event-stream")),
    security(("bearer" = [])),
)]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require_read()?;
    let rx = state
        .live
        .subscribe(state.bus.events.clone(), state.control_key.public_key());
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(m) => {
                let data = serde_json::to_string(&m).unwrap_or_default();
                Event::default().event(m.kind).data(data)
            }
            Err(RecvError::Lagged(n)) => Event::default()
                .event("lagged")
                .data(format!("{{\"missed\":{n}}}")),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    // The first message goes out at once, so a browser knows the stream is open (and how
    // soon to reconnect) without waiting for an event or the first keep-alive.
    let hello = Event::default()
        .retry(Duration::from_secs(3))
        .comment("signet events");
    let stream = futures::stream::once(async { Ok(hello) })
        .chain(stream)
        .take_until(state.live.closed());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEPALIVE).text("keepalive")))
}
