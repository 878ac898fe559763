//! One registry host on the wire: its scheme, what its `/v2/` probe asked for, and how each
//! request is authenticated (HTTP basic, a configured bearer token, or a token from the
//! registry's token service, cached per scope).
//!
//! Written here rather than left to oci-client: oci-client 0.18 builds its own reqwest
//! client (`ClientConfig` takes neither a client, a redirect policy nor a DNS resolver), so
//! its requests would bypass the destination and redirect policies, and it sends
//! credentials to whatever token realm a 401 names. Every request signet makes goes
//! through [`Transport::send`], on the one client built in [`Transport::new`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Client, RequestBuilder, Response, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use crate::config::{normalize_host, Credential};
use crate::error::{Ctx, RegistryError};
use crate::policy::{redirect_policy, DestinationPolicy, PolicyResolver};

/// Token lifetime when the token service does not say (the docker token spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Largest token service answer read.
const MAX_TOKEN_ANSWER: usize = 64 << 10;
/// Docker Hub's registry and token service live on different hosts.
const DOCKER_HUB_TOKEN_HOST: &str = "auth.docker.io";

/// The HTTP client every registry request goes through, with the policies applied.
pub(crate) struct Transport {
    pub(crate) http: Client,
    pub(crate) policy: Arc<DestinationPolicy>,
    /// Bounds each request; named in timeout errors.
    pub(crate) timeout: Duration,
}

impl Transport {
    pub(crate) fn new(
        user_agent: &str,
        timeout: Duration,
        policy: DestinationPolicy,
        redirect_hosts: &[String],
    ) -> Result<Self, RegistryError> {
        let policy = Arc::new(policy);
        let http = Client::builder()
            .user_agent(user_agent)
            .timeout(timeout)
            .connect_timeout(timeout)
            .dns_resolver(PolicyResolver::new(Arc::clone(&policy)))
            .redirect(redirect_policy(
                Arc::clone(&policy),
                redirect_hosts.to_vec().into(),
            ))
            .build()
            .map_err(|e| RegistryError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            policy,
            timeout,
        })
    }
}

/// One registry host.
pub(crate) struct Host {
    pub(crate) registry: String,
    pub(crate) scheme: &'static str,
    /// `scheme://api-host/`, the base of every URL.
    pub(crate) base: Url,
    pub(crate) access: OnceCell<Arc<Access>>,
    tokens: Mutex<HashMap<String, Token>>,
}

/// What the `/v2/` probe showed and which credential goes with it.
pub(crate) struct Access {
    pub(crate) credential: Option<Credential>,
    /// Token service hosts besides the registry's own that may receive the credential.
    pub(crate) realm_hosts: Vec<String>,
    pub(crate) challenge: Challenge,
}

impl Access {
    /// True when credentials are sent (changes the 401 advice).
    pub(crate) fn sends_credentials(&self) -> bool {
        self.credential.is_some() && !matches!(self.challenge, Challenge::Open)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Challenge {
    /// `/v2/` answered 200 without a challenge: no credentials are needed or sent.
    Open,
    /// HTTP basic (or an unknown scheme): the credential goes to the registry itself.
    Basic,
    /// The docker token flow: a token from `realm` per repository scope.
    Bearer { realm: Url, service: Option<String> },
}

#[derive(Clone)]
struct Token {
    value: SecretString,
    expires: Instant,
}

/// Reads the challenges of a 401; `None` when there is none.
pub(crate) fn parse_challenge(resp: &Response) -> Option<Challenge> {
    let mut basic = false;
    for value in resp.headers().get_all(WWW_AUTHENTICATE) {
        let Ok(text) = value.to_str() else { continue };
        let Ok(challenges) = http_auth::parse_challenges(text) else {
            basic = true;
            continue;
        };
        for c in challenges {
            if c.scheme.eq_ignore_ascii_case("bearer") {
                let param = |name: &str| {
                    c.params
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.to_unescaped())
                };
                if let Some(realm) = param("realm").and_then(|r| Url::parse(&r).ok()) {
                    if matches!(realm.scheme(), "http" | "https") {
                        return Some(Challenge::Bearer {
                            realm,
                            service: param("service"),
                        });
                    }
                }
            }
            basic = true;
        }
    }
    basic.then_some(Challenge::Basic)
}

impl Host {
    pub(crate) fn new(registry: &str, api_host: &str, plain_http: bool) -> Result<Self, String> {
        let scheme = if plain_http { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{api_host}/"))
            .map_err(|e| format!("{registry:?} is not a usable registry host: {e}"))?;
        Ok(Self {
            registry: registry.to_owned(),
            scheme,
            base,
            access: OnceCell::new(),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// `scheme://host/v2/<path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}v2/{path}", self.base)
    }

    /// Whether the registry's credentials may go to `realm`: only a token service on the
    /// registry's own host and port (or one listed for the credential, or Docker Hub's),
    /// and only over https, except for a plain-HTTP registry's own host.
    fn realm_check(&self, access: &Access, realm: &Url) -> Result<(), &'static str> {
        let same_host = realm.host_str() == self.base.host_str()
            && realm.port_or_known_default() == self.base.port_or_known_default();
        let realm_host = realm.host_str().unwrap_or_default().to_ascii_lowercase();
        let realm_host_port = realm
            .port()
            .map(|p| format!("{realm_host}:{p}"))
            .unwrap_or_else(|| realm_host.clone());
        let listed = access
            .realm_hosts
            .iter()
            .map(|h| normalize_host(h))
            .any(|h| h == realm_host || h == realm_host_port)
            || (self.registry == signet_core::reference::DEFAULT_REGISTRY
                && realm_host == DOCKER_HUB_TOKEN_HOST
                && realm.port().is_none());
        if !same_host && !listed {
            return Err("not on the registry's host");
        }
        // Plain HTTP only back to a plain-HTTP registry's own host (loopback, insecure).
        let plain_ok = same_host && self.scheme == "http";
        if realm.scheme() != "https" && !plain_ok {
            return Err("not reached over https");
        }
        Ok(())
    }

    /// The Authorization header for a request in `scope`; `fresh` is false when it came
    /// from the token cache (and may have been revoked).
    async fn authorization(
        &self,
        transport: &Transport,
        access: &Access,
        scope: &str,
        ctx: Ctx<'_>,
    ) -> Result<(Option<HeaderValue>, bool), RegistryError> {
        let value = match (&access.challenge, &access.credential) {
            (Challenge::Open, _) => None,
            (_, Some(Credential::Bearer(token))) => {
                Some(format!("Bearer {}", token.expose_secret()))
            }
            (Challenge::Basic, Some(Credential::Basic(user, password))) => {
                Some(basic(user, password))
            }
            (Challenge::Basic, None) => None,
            (Challenge::Bearer { realm, service }, credential) => {
                if let Some(t) = self.cached_token(scope) {
                    return Ok((
                        Some(sensitive(format!("Bearer {}", t.expose_secret()))?),
                        false,
                    ));
                }
                let t = self
                    .fetch_token(
                        transport,
                        access,
                        realm,
                        service.as_deref(),
                        credential,
                        scope,
                        ctx,
                    )
                    .await?;
                Some(format!("Bearer {}", t.expose_secret()))
            }
        };
        Ok((value.map(sensitive).transpose()?, true))
    }

    fn cached_token(&self, scope: &str) -> Option<SecretString> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(scope)
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.value.clone())
    }

    fn forget_token(&self, scope: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.remove(scope);
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_token(
        &self,
        transport: &Transport,
        access: &Access,
        realm: &Url,
        service: Option<&str>,
        credential: &Option<Credential>,
        scope: &str,
        ctx: Ctx<'_>,
    ) -> Result<SecretString, RegistryError> {
        let mut url = realm.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("scope", scope);
            if let Some(s) = service {
                q.append_pair("service", s);
            }
        }
        transport
            .policy
            .check_url(&url)
            .map_err(|e| ctx.refused(e))?;
        let mut request = transport.http.get(url);
        if let Some(Credential::Basic(user, password)) = credential {
            self.realm_check(access, realm).map_err(|why| {
                RegistryError::UntrustedTokenService {
                    registry: self.registry.clone(),
                    realm: format!(
                        "{}://{}",
                        realm.scheme(),
                        realm.host_str().unwrap_or_default()
                    ) + &realm.port().map(|p| format!(":{p}")).unwrap_or_default(),
                    why,
                }
            })?;
            request = request.header(AUTHORIZATION, sensitive(basic(user, password))?);
        }
        let timeout = transport.timeout;
        let resp = request.send().await.map_err(|e| ctx.reqwest(e, timeout))?;
        let status = resp.status();
        let body = crate::client::read_capped(resp, MAX_TOKEN_ANSWER, ctx, timeout).await?;
        if status != StatusCode::OK {
            if matches!(status.as_u16(), 400 | 401 | 403) {
                // The token service refused the credentials (or anonymous access).
                return Err(ctx.unauthorized());
            }
            return Err(ctx.status(status.as_u16(), &body));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|_| ctx.protocol("the token service's answer is not a token"))?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ctx.protocol("the token service's answer holds no token"))?;
        let value = SecretString::from(value);
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        // Renew a little early so a token does not expire in flight.
        let expires = Instant::now() + lifetime.saturating_sub(Duration::from_secs(5));
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.insert(
            scope.to_owned(),
            Token {
                value: value.clone(),
                expires,
            },
        );
        Ok(value)
    }

    /// Sends one request built by `build` with the credentials its scope needs. A cached
    /// token the registry refuses is replaced once.
    pub(crate) async fn send(
        &self,
        transport: &Transport,
        access: &Access,
        ctx: Ctx<'_>,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let scope = scope(ctx);
        let timeout = transport.timeout;
        for _ in 0..2 {
            let mut request = build(&transport.http).build().map_err(|e| {
                ctx.protocol(format!("cannot build the request ({})", e.without_url()))
            })?;
            transport
                .policy
                .check_url(request.url())
                .map_err(|e| ctx.refused(e))?;
            let (authorization, fresh) = self.authorization(transport, access, &scope, ctx).await?;
            if let Some(value) = authorization {
                request.headers_mut().insert(AUTHORIZATION, value);
            }
            let resp = transport
                .http
                .execute(request)
                .await
                .map_err(|e| ctx.reqwest(e, timeout))?;
            let bearer = matches!(access.challenge, Challenge::Bearer { .. });
            if resp.status() == StatusCode::UNAUTHORIZED && bearer && !fresh {
                self.forget_token(&scope);
                continue;
            }
            return Ok(resp);
        }
        Err(ctx.unauthorized())
    }
}

/// `repository:<repo>:pull` or `…:pull,push`, as the docker token spec names scopes.
fn scope(ctx: Ctx<'_>) -> String {
    let actions = if ctx.action == "push" {
        "pull,push"
    } else {
        "pull"
    };
    format!("repository:{}:{actions}", ctx.repository)
}

fn basic(user: &str, password: &SecretString) -> String {
    let pair = format!("{user}:{}", password.expose_secret());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A header value that HTTP/2 never indexes and Debug never prints.
fn sensitive(value: String) -> Result<HeaderValue, RegistryError> {
    let mut v = HeaderValue::try_from(value).map_err(|_| {
        RegistryError::Config(
            "a registry credential contains characters that cannot go in an HTTP header".to_owned(),
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}
