//! One error type for every HTTP answer: `{"error": …, "detail": …}` with the status
//! that fits. 4xx say exactly what was wrong with the request; 5xx hide internals from
//! the client and log them with the request id instead.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use signet_kms::{KmsError, KmsErrorKind};
use signet_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or malformed bearer token: {0}")]
    Unauthenticated(&'static str),
    /// A webhook whose sender could not be authenticated; says what the sender must fix.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    /// Logged in full; the client sees only that something failed on our side.
    #[error("internal error")]
    Internal(String),
}

/// The body of every error answer (`Error` in the API document).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct Body<'a> {
    /// What kind of failure: `bad_request`, `unauthenticated`, `forbidden`, `not_found`,
    /// `conflict`, `unprocessable`, `too_large`, `too_many_requests`, `bad_gateway`, `unavailable`,
    /// `internal` (and `sign_failed` from `POST /v1/sign?wait=`).
    #[schema(example = "not_found")]
    error: &'a str,
    /// What exactly was wrong, in words a user can act on; for 5xx, only that the
    /// cause is in the gateway's log.
    detail: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) | Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthenticated(_) | Self::Unauthorized(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Unprocessable(_) => "unprocessable",
            Self::TooLarge(_) => "too_large",
            Self::TooManyRequests(_) => "too_many_requests",
            Self::BadGateway(_) => "bad_gateway",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "request failed");
                "the gateway failed to handle this request; the cause is in its log".to_owned()
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error = %cause, "dependency unavailable");
                cause.clone()
            }
            other => other.to_string(),
        };
        let mut resp = (
            status,
            axum::Json(Body {
                error: self.code(),
                detail,
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"signet\""),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // The store's own words ("witness \"prod\" already exists"), not just the name.
            e @ StoreError::Conflict(_) => Self::Conflict(e.to_string()),
            e @ StoreError::NotFound(_) => Self::NotFound(e.to_string()),
            e if e.retryable() => Self::Unavailable(format!("the store is unavailable: {e}")),
            e => Self::Internal(e.to_string()),
        }
    }
}

impl From<KmsError> for ApiError {
    fn from(e: KmsError) -> Self {
        match &e.kind {
            KmsErrorKind::InvalidUri(_) | KmsErrorKind::Unsupported(_) => {
                Self::BadRequest(e.to_string())
            }
            KmsErrorKind::WrongKeyType(_) => Self::Unprocessable(e.to_string()),
            KmsErrorKind::NotFound(_) => Self::NotFound(e.to_string()),
            KmsErrorKind::PermissionDenied(_) => Self::BadGateway(e.to_string()),
            KmsErrorKind::Throttled(_) | KmsErrorKind::Timeout | KmsErrorKind::Unavailable(_) => {
                Self::Unavailable(e.to_string())
            }
            _ => Self::BadGateway(e.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => {
                Self::BadRequest("send the body as JSON with Content-Type: application/json".into())
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::TooLarge(
                "the request body is larger than the gateway accepts (gateway.body_limit_bytes)"
                    .into(),
            ),
            other => Self::BadRequest(format!("request body is not valid: {}", other.body_text())),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::BadRequest(format!("query string is not valid: {}", r.body_text()))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// [`ApiError`]'s JSON body, as the API document names it (`Error`).
pub(crate) type ErrorBody = Body<'static>;

/// `Json<T>` whose rejections are [`ApiError`]s, so a malformed body gets the same
/// `{error, detail}` shape as every other 4xx.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `Query<T>` with [`ApiError`] rejections.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
