//! Console sessions (see [`crate::session`]): sign in with an API token, get a cookie;
//! read the session back after a reload; sign out. Plain API routes: `curl` can use
//! them as the console does.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::ExposeSecret;
use signet_core::NewAudit;

use crate::auth::{issue_session, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::session;
use crate::AppState;

/// What the console knows of its session.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Session {
    /// The session's own name, `<token>.console.<hex>`: the actor of what it does.
    pub name: String,
    /// `admin` or `viewer`, the role of the token it was opened with.
    pub role: String,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Send it as `X-CSRF-Token` with every change made with the session cookie.
    pub csrf_token: String,
}

#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "sessions",
    summary = "Sign in to the console",
    description = "Opens a console session with the bearer token (admin or viewer) and sets \
        the `signet_session` cookie (HttpOnly, SameSite=Strict, Secure unless on loopback). \
        The session lasts 8 hours, or less when the token expires sooner, and ends when the \
        token is revoked. Changes made with the cookie need the answer's `csrf_token` in \
        `X-CSRF-Token`. Role: admin or viewer.",
    responses(
        (status = 201, description = "Signed in; the cookie is set", body = Session),
        (status = 400, description = "The bearer is itself a session", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
) -> ApiResult<Response> {
    let issued = issue_session(&state.store, &caller).await?;
    let secret = issued.secret.expose_secret();
    tracing::info!(session = %issued.token.name, role = %issued.token.role, "console session opened");
    let body = Session {
        name: issued.token.name.clone(),
        role: issued.token.role.to_string(),
        expires_at: issued.token.expires_at,
        csrf_token: session::csrf_token(secret),
    };
    let cookie = session::set_cookie(
        &headers,
        secret,
        issued.token.expires_at.unwrap_or_else(chrono::Utc::now),
    );
    Ok((StatusCode::CREATED, [(session::SET, cookie)], Json(body)).into_response())
}

/// The session the request's cookie carries, checked.
fn current(headers: &HeaderMap, caller: &Caller) -> Result<String, ApiError> {
    match session::from_cookie(headers) {
        Some(s) if caller.session => Ok(s),
        _ => Err(ApiError::Unauthenticated(
            "no console session: sign in with POST /v1/sessions",
        )),
    }
}

#[utoipa::path(
    get,
    path = "/v1/sessions/current",
    tag = "sessions",
    summary = "The console session of the cookie",
    description = "Who the session is, until when, and its CSRF token (a reloaded page \
        gets it back here; another site cannot read it). Role: any session.",
    responses((status = 200, description = "The session", body = Session)),
    security(("bearer" = [])),
)]
pub async fn show(headers: HeaderMap, caller: Caller) -> ApiResult<Json<Session>> {
    let secret = current(&headers, &caller)?;
    Ok(Json(Session {
        name: caller.name.clone(),
        role: caller.role.to_string(),
        expires_at: caller.expires_at,
        csrf_token: session::csrf_token(&secret),
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/sessions/current",
    tag = "sessions",
    summary = "Sign out of the console",
    description = "Ends the cookie's session for good (its record is revoked) and clears the \
        cookie. Needs `X-CSRF-Token`. Role: any session.",
    responses((status = 204, description = "Signed out")),
    security(("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
) -> ApiResult<Response> {
    current(&headers, &caller)?;
    state
        .store
        .revoke_token(
            &caller.name,
            &NewAudit::new(
                caller.actor(),
                "session.delete",
                &caller.name,
                serde_json::json!({}),
            ),
        )
        .await?;
    tracing::info!(session = %caller.name, "console session closed");
    Ok((
        StatusCode::NO_CONTENT,
        [(session::SET, session::clear_cookie(&headers))],
    )
        .into_response())
}
