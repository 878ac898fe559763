//! Bearer API tokens.
//!
//! A token reads `sgt_<id>_<secret>`: the id (a UUID in hex) finds the stored record,
//! and the SHA-256 of the secret is compared with the stored hash in constant time.
//! Only the hash is stored; the secret is shown once, when the token is created. The
//! secret is 32 random bytes, so a plain SHA-256 (not a password hash) is enough.
//!
//! A token may expire (`expires_at`), and a verifier token names the one cluster it may
//! read and report for. When a request last authenticated with a token is kept to the
//! minute, written in the background so that it costs no write per request.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use signet_core::{validate_name, ApiToken, NewAudit, Role};
use signet_store::Store;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::error::ApiError;
use crate::scope::Scope;
use crate::AppState;

const PREFIX: &str = "sgt_";
/// `last_used_at` is rewritten when it is older than this.
const LAST_USED_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: Uuid,
    pub name: String,
    pub role: Role,
    /// The cluster a verifier token is bound to.
    pub cluster: Option<String>,
    /// Where a scoped signer token may sign; `None`: anywhere.
    pub scope: Option<Scope>,
    /// A console session (sent as a cookie) rather than an API token.
    pub session: bool,
    /// When the token (or session) stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Caller {
    /// The audit log's "who".
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }

    /// Fails unless the caller has one of `roles` (admin may do everything).
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.role == Role::Admin || roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token {:?} has role {}; this needs {}",
                self.name,
                self.role,
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .chain(std::iter::once("admin"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require(&[])
    }

    /// Reads an admin may make: admins and viewers (who change nothing).
    pub fn require_read(&self) -> Result<(), ApiError> {
        self.require(&[Role::Viewer])
    }

    /// Fails (403) when the token is scoped and `image` is outside its scope.
    pub fn require_in_scope(&self, image: &signet_core::ImageRef) -> Result<(), ApiError> {
        match &self.scope {
            Some(scope) if !scope.allows(image) => Err(ApiError::Forbidden(
                scope.refusal(&format!("token {:?}", self.name), image),
            )),
            _ => Ok(()),
        }
    }

    /// Whether the caller may see what concerns `image` (a job): unscoped callers see
    /// everything.
    pub fn sees(&self, image: &str) -> bool {
        match (&self.scope, signet_core::ImageRef::parse(image)) {
            (None, _) => true,
            (Some(scope), Ok(image)) => scope.allows(&image),
            (Some(_), Err(_)) => false,
        }
    }

    /// Fails unless the caller may act for `cluster`: an admin may act for any, a
    /// verifier token only for the cluster it was created for.
    pub fn require_cluster(&self, cluster: &str) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            return Ok(());
        }
        match &self.cluster {
            Some(c) if c == cluster => Ok(()),
            Some(c) => Err(ApiError::Forbidden(format!(
                "token {:?} is bound to cluster {c:?}, not {cluster:?}; each cluster's verifier needs a token of its own (`signet token create --role verifier --cluster {cluster}`)",
                self.name
            ))),
            None => Err(ApiError::Forbidden(format!(
                "token {:?} is bound to no cluster (it was created before verifier tokens carried one); create one with `signet token create --role verifier --cluster {cluster}` and revoke this one",
                self.name
            ))),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = match parts.headers.get(axum::http::header::AUTHORIZATION) {
            Some(header) => {
                let value = header.to_str().map_err(|_| {
                    ApiError::Unauthenticated("the Authorization header is not ASCII")
                })?;
                let token = value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                    .ok_or(ApiError::Unauthenticated("use the Bearer scheme"))?;
                let caller = authenticate(&state.store, token.trim()).await?;
                if caller.session {
                    return Err(ApiError::Unauthenticated(
                        "a console session is sent as the console's cookie, not as a bearer token",
                    ));
                }
                caller
            }
            None => {
                let session = crate::session::from_cookie(&parts.headers).ok_or(
                    ApiError::Unauthenticated(
                        "send Authorization: Bearer <token>, or sign in to the console",
                    ),
                )?;
                let caller = authenticate(&state.store, &session).await?;
                if !caller.session {
                    return Err(ApiError::Unauthenticated(
                        "the session cookie holds an API token; sign in to the console again",
                    ));
                }
                crate::session::check_change(&parts.method, &parts.headers, &session)?;
                caller
            }
        };
        // A viewer changes nothing, whatever a route checks after its body is read:
        // refused here, before any handler runs.
        let reads = matches!(
            parts.method,
            axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
        );
        // Opening and closing one's own console session changes nothing an admin manages.
        let own_session =
            parts.uri.path() == "/v1/sessions" || parts.uri.path() == "/v1/sessions/current";
        if caller.role == Role::Viewer && !reads && !own_session {
            return Err(ApiError::Forbidden(format!(
                "token {:?} has role viewer: it reads what an admin reads and changes nothing",
                caller.name
            )));
        }
        Ok(caller)
    }
}

/// Checks a presented token against the store.
pub async fn authenticate(store: &Store, token: &str) -> Result<Caller, ApiError> {
    let (id, secret) = parse(token).ok_or(ApiError::Unauthenticated(
        "the token is not a signet token (sgt_…)",
    ))?;
    let Some((record, stored_hash)) = store.get_token(id).await? else {
        return Err(ApiError::Unauthenticated("unknown or revoked token"));
    };
    let presented = Sha256::digest(secret.as_bytes());
    let matches: bool = presented.as_slice().ct_eq(&stored_hash).into();
    if !matches || record.revoked {
        return Err(ApiError::Unauthenticated("unknown or revoked token"));
    }
    // Scopes are checked when written; a stored one that no longer compiles (a
    // hand-edited database) leaves the token unable to sign rather than unscoped.
    let scope = match Scope::new(&record.scope) {
        Ok(scope) => scope,
        Err(e) => {
            tracing::error!(token = %record.name, error = %e, "token scope does not compile; the token is refused");
            return Err(ApiError::Unauthenticated(
                "the token's scope is unusable; ask an admin for a new token",
            ));
        }
    };
    let now = Utc::now();
    if record.expired(now) {
        return Err(ApiError::Unauthorized(format!(
            "token {:?} expired at {}; create a new one",
            record.name,
            record
                .expires_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        )));
    }
    if record
        .last_used_at
        .is_none_or(|t| now - t >= LAST_USED_RESOLUTION)
    {
        // In the background: a slow write never delays the request it describes.
        let (store, id) = (store.clone(), record.id);
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(id, now).await {
                tracing::debug!(error = %e, token = %id, "cannot record when a token was used");
            }
        });
    }
    Ok(Caller {
        token_id: record.id,
        name: record.name,
        role: record.role,
        cluster: record.cluster,
        scope,
        session: record.session_of.is_some(),
        expires_at: record.expires_at,
    })
}

/// The id part of a token string, without checking the secret.
pub fn token_id(token: &str) -> Option<Uuid> {
    parse(token.trim()).map(|(id, _)| id)
}

fn parse(token: &str) -> Option<(Uuid, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if secret.is_empty() {
        return None;
    }
    Some((Uuid::try_parse(id).ok()?, secret))
}

/// A newly minted token; `secret` is the only copy of the full token, zeroized when
/// dropped.
pub struct IssuedToken {
    pub token: ApiToken,
    pub secret: SecretString,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &self.token)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// Creates a token with no cluster and no expiry (see [`issue_scoped`]).
pub async fn issue(
    store: &Store,
    name: &str,
    role: Role,
    actor: &str,
) -> Result<IssuedToken, ApiError> {
    issue_scoped(store, name, role, None, None, &[], actor).await
}

/// Opens a console session for `caller` (an admin or viewer token, not itself a
/// session): a token record of the same role that ends after [`crate::session::LIFETIME`]
/// or with the caller's token, whichever comes first. Audited as `session.create`.
pub async fn issue_session(store: &Store, caller: &Caller) -> Result<IssuedToken, ApiError> {
    if caller.session {
        return Err(ApiError::BadRequest(
            "this is already a console session; sign in with an API token".into(),
        ));
    }
    if !matches!(caller.role, Role::Admin | Role::Viewer) {
        return Err(ApiError::Forbidden(format!(
            "token {:?} has role {}; the console is for admin and viewer tokens",
            caller.name, caller.role
        )));
    }
    let now = Utc::now();
    let expires_at = caller
        .expires_at
        .map_or(now + crate::session::LIFETIME, |t| {
            t.min(now + crate::session::LIFETIME)
        });
    let mut tag = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut tag);
    // `<token>.console.<8 hex>`: whose session it is, in the audit log and token list.
    let owner: String = caller.name.chars().take(40).collect();
    let name = format!("{owner}.console.{}", hex::encode(tag));
    mint(
        store,
        Minted {
            name: &name,
            role: caller.role,
            cluster: None,
            expires_at: Some(expires_at),
            scope: &[],
            session_of: Some(caller.token_id),
        },
        NewAudit::new(
            caller.actor(),
            "session.create",
            &name,
            serde_json::json!({"role": caller.role, "expires_at": expires_at}),
        ),
    )
    .await
}

/// Creates a token, stores its hash, audits it and returns the secret once. A verifier
/// token must name its cluster; other roles must not. `expires_at` must be in the future.
/// `scope`: globs over `registry/repository` a signer token may sign (empty: any); only
/// signer tokens take one.
pub async fn issue_scoped(
    store: &Store,
    name: &str,
    role: Role,
    cluster: Option<&str>,
    expires_at: Option<DateTime<Utc>>,
    scope: &[String],
    actor: &str,
) -> Result<IssuedToken, ApiError> {
    validate_name("token", name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if !scope.is_empty() && role != Role::Signer {
        return Err(ApiError::BadRequest(format!(
            "scope: only signer tokens take a scope; a {role} token is not limited to repositories"
        )));
    }
    Scope::new(scope).map_err(|e| ApiError::BadRequest(format!("scope: {e}")))?;
    match (role, cluster) {
        (Role::Verifier, None) => {
            return Err(ApiError::BadRequest(
                "a verifier token needs its cluster: the one cluster whose trust bundle it reads and whose decisions it reports".into(),
            ))
        }
        (Role::Verifier, Some(c)) => {
            validate_name("cluster", c).map_err(|e| ApiError::BadRequest(e.to_string()))?
        }
        (_, Some(_)) => {
            return Err(ApiError::BadRequest(format!(
                "only verifier tokens are bound to a cluster, not {role} tokens"
            )))
        }
        (_, None) => {}
    }
    let now = Utc::now();
    if expires_at.is_some_and(|t| t <= now) {
        return Err(ApiError::BadRequest(
            "expires_at is in the past; give a time to come".into(),
        ));
    }
    mint(
        store,
        Minted {
            name,
            role,
            cluster,
            expires_at,
            scope,
            session_of: None,
        },
        NewAudit::new(
            actor,
            "token.create",
            name,
            serde_json::json!({"role": role, "cluster": cluster, "expires_at": expires_at, "scope": scope}),
        ),
    )
    .await
}

/// What [`mint`] stores.
struct Minted<'a> {
    name: &'a str,
    role: Role,
    cluster: Option<&'a str>,
    expires_at: Option<DateTime<Utc>>,
    scope: &'a [String],
    session_of: Option<Uuid>,
}

/// Makes a secret, stores its hash with `audit` (the token id added to its detail) and
/// returns the secret once.
async fn mint(store: &Store, m: Minted<'_>, mut audit: NewAudit) -> Result<IssuedToken, ApiError> {
    let id = Uuid::new_v4();
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(raw.as_mut());
    let secret = zeroize::Zeroizing::new(URL_SAFE_NO_PAD.encode(raw.as_ref()));
    let hash = Sha256::digest(secret.as_bytes()).to_vec();
    let token = ApiToken {
        id,
        name: m.name.to_owned(),
        role: m.role,
        created_at: Utc::now(),
        revoked: false,
        cluster: m.cluster.map(str::to_owned),
        expires_at: m.expires_at,
        last_used_at: None,
        scope: m.scope.to_vec(),
        session_of: m.session_of,
    };
    if let Some(detail) = audit.detail.as_object_mut() {
        detail.insert("id".into(), serde_json::json!(id));
    }
    store.create_token(&token, &hash, &audit).await?;
    Ok(IssuedToken {
        secret: SecretString::from(format!("{PREFIX}{}_{}", id.simple(), secret.as_str())),
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_token_shape() {
        let id = Uuid::new_v4();
        let t = format!("sgt_{}_abc", id.simple());
        assert_eq!(parse(&t), Some((id, "abc")));
        assert_eq!(parse("sgt_nothex_abc"), None);
        assert_eq!(parse(&format!("sgt_{}_", id.simple())), None);
        assert_eq!(parse("Bearer x"), None);
    }
}

/// On a store with no tokens at all, mints the first admin token and writes it to
/// `path` with mode 0600 (created fresh, never widened). Returns the token record —
/// never the secret — so the caller can say where it went. Does nothing when tokens
/// exist.
pub async fn bootstrap_admin(
    store: &Store,
    path: &std::path::Path,
) -> Result<Option<ApiToken>, BootstrapError> {
    if store
        .count_tokens()
        .await
        .map_err(|e| BootstrapError::Store(e.to_string()))?
        > 0
    {
        return Ok(None);
    }
    let issued = issue(store, "admin", Role::Admin, "system")
        .await
        .map_err(|e| BootstrapError::Store(e.to_string()))?;
    let line = zeroize::Zeroizing::new(format!("{}\n", issued.secret.expose_secret()));
    write_private(path, line.as_bytes()).map_err(|source| BootstrapError::Write {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Some(issued.token))
}

/// Why the first admin token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot create the first admin token: {0}")]
    Store(String),
    #[error("cannot write the admin token to {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Writes a secret file readable by its owner only.
pub fn write_private(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options.open(path)?;
    // An existing file keeps its old mode on open; make sure it is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(contents)?;
    f.sync_all()
}
