//! Single sign-on with OpenID Connect: the authorization code flow with PKCE (S256), a state
//! and a nonce, against any provider named by its issuer URL (its discovery document gives the
//! endpoints and keys). The ID token's signature, issuer, audience, expiry and nonce are checked
//! by the `openidconnect` crate. A person's role comes from a claim (`groups` by default),
//! mapped through `people.sso.roles`; the first mapping whose group the person is in wins
//! (order them from the most to the least powerful). The user is created on first sign-in and
//! their role follows the provider on every later one.
//!
//! The login in flight (state, PKCE verifier, nonce) waits in Postgres, so the callback may be
//! answered by any replica.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, StandardErrorResponse,
    StandardTokenResponse, TokenResponse,
};
use printyard_service::Secret;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::Mutex;

/// `people.sso.*`: the provider, this client, and how groups map to roles.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SsoConfig {
    /// The provider's issuer URL (its discovery document is at
    /// `<issuer>/.well-known/openid-configuration`). Empty: single sign-on is off.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret<String>>,
    /// Where the provider sends the browser back: this API's
    /// `/api/v1/auth/sso/callback` as the browser reaches it.
    pub redirect_url: String,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// The claim (in the ID token, else from the userinfo endpoint) that lists the person's
    /// groups.
    pub groups_claim: String,
    /// Group → role, in order: the first group the person is in gives the role.
    pub roles: Vec<GroupRole>,
    /// The role of someone in none of the groups; empty: they are refused.
    pub default_role: String,
    /// The claim that names the user (`preferred_username`, else `email`, else the subject).
    pub username_claim: String,
    /// Deadline of each call to the provider.
    pub timeout_ms: u64,
    /// The button's label on the sign-in page.
    pub display_name: String,
}

impl Default for SsoConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: None,
            redirect_url: String::new(),
            scopes: vec!["email".into(), "profile".into()],
            groups_claim: "groups".into(),
            roles: Vec::new(),
            default_role: String::new(),
            username_claim: "preferred_username".into(),
            timeout_ms: 5_000,
            display_name: "Single sign-on".into(),
        }
    }
}

/// One mapping of `people.sso.roles`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupRole {
    pub group: String,
    pub role: String,
}

impl SsoConfig {
    pub fn enabled(&self) -> bool {
        !self.issuer.is_empty()
    }

    /// The role for someone in `groups`.
    pub fn role_for(&self, groups: &[String]) -> Option<String> {
        self.roles
            .iter()
            .find(|mapping| groups.contains(&mapping.group))
            .map(|mapping| mapping.role.clone())
            .or_else(|| (!self.default_role.is_empty()).then(|| self.default_role.clone()))
    }
}

/// Every claim besides the standard ones, kept as JSON so that the groups claim can be named
/// in the configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OtherClaims(HashMap<String, serde_json::Value>);

impl AdditionalClaims for OtherClaims {}

impl OtherClaims {
    fn strings(&self, claim: &str) -> Option<Vec<String>> {
        match self.0.get(claim)? {
            serde_json::Value::Array(items) => Some(
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            ),
            serde_json::Value::String(one) => Some(vec![one.clone()]),
            _ => None,
        }
    }

    fn string(&self, claim: &str) -> Option<String> {
        self.0.get(claim)?.as_str().map(str::to_owned)
    }
}

type Fields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<Fields, CoreTokenType>;
type Client = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// How long a discovered provider (its endpoints and signing keys) is used before it is read
/// again, so that rotated keys are learned.
const METADATA_TTL: Duration = Duration::from_secs(600);
/// The largest answer read from the provider.
const MAX_ANSWER: usize = 1024 * 1024;

/// Why a single sign-on did not end in a session: shown to the person on the sign-in page.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("Single sign-on is not configured")]
    Off,
    #[error("The identity provider could not be reached: {0}")]
    Provider(String),
    #[error("This sign-in expired or was already used; start again")]
    UnknownState,
    #[error("The identity provider refused the sign-in: {0}")]
    Refused(String),
    #[error("None of your groups gives a role here; ask an administrator")]
    NoRole,
    #[error("Your account is disabled")]
    Disabled,
    #[error("Database unavailable")]
    Database(#[from] sqlx::Error),
}

/// Who the provider says signed in.
#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub username: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
}

/// A provider's client, and when its discovery document was read.
type Discovered = (Instant, Arc<Client>);

/// The single sign-on client: the configuration and the provider as last discovered.
#[derive(Clone)]
pub struct Sso {
    config: Arc<SsoConfig>,
    http: Http,
    provider: Arc<Mutex<Option<Discovered>>>,
}

impl Sso {
    pub fn new(config: SsoConfig) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(config.timeout_ms.max(100));
        let http = reqwest::Client::builder()
            // A provider's answers are not followed elsewhere (the crate's own advice).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("Printyard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            config: Arc::new(config),
            http: Http(http),
            provider: Arc::default(),
        })
    }

    pub fn config(&self) -> &SsoConfig {
        &self.config
    }

    async fn client(&self) -> Result<Arc<Client>, SsoError> {
        if !self.config.enabled() {
            return Err(SsoError::Off);
        }
        let mut provider = self.provider.lock().await;
        if let Some((fetched, client)) = provider.as_ref()
            && fetched.elapsed() < METADATA_TTL
        {
            return Ok(client.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|err| SsoError::Provider(format!("issuer URL: {err}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|err| SsoError::Provider(error_chain(&err)))?;
        let redirect = RedirectUrl::new(self.config.redirect_url.clone())
            .map_err(|err| SsoError::Provider(format!("redirect URL: {err}")))?;
        let client = Client::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            self.config
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().clone())),
        )
        .set_redirect_uri(redirect);
        let client = Arc::new(client);
        *provider = Some((Instant::now(), client.clone()));
        Ok(client)
    }

    /// Starts a sign-in: where to send the browser. The state, PKCE verifier and nonce wait
    /// in `api.sso_logins` for the callback.
    pub async fn begin(&self, pool: &PgPool) -> Result<String, SsoError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.config.scopes {
            request = request.add_scope(openidconnect::Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        sqlx::query("INSERT INTO api.sso_logins (state, pkce_verifier, nonce) VALUES ($1, $2, $3)")
            .bind(state.secret())
            .bind(verifier.secret())
            .bind(nonce.secret())
            .execute(pool)
            .await?;
        Ok(url.to_string())
    }

    /// Ends a sign-in: the login `state` named (used once, ten minutes at most), the code
    /// exchanged with its PKCE verifier, the ID token checked, the groups read.
    pub async fn finish(
        &self,
        pool: &PgPool,
        code: &str,
        state: &str,
    ) -> Result<Identity, SsoError> {
        let client = self.client().await?;
        let waiting: Option<(String, String)> = sqlx::query_as(
            "DELETE FROM api.sso_logins WHERE state = $1
                AND created_at > now() - interval '10 minutes'
             RETURNING pkce_verifier, nonce",
        )
        .bind(state)
        .fetch_optional(pool)
        .await?;
        let Some((verifier, nonce)) = waiting else {
            return Err(SsoError::UnknownState);
        };
        let http = &self.http;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|err| SsoError::Provider(err.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(http)
            .await
            .map_err(|err| SsoError::Refused(error_chain(&err)))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| SsoError::Refused("no ID token in the answer".into()))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(nonce))
            .map_err(|err| SsoError::Refused(error_chain(&err)))?;
        let subject = claims.subject().as_str().to_owned();
        let mut other = claims.additional_claims().clone();
        let mut email = claims.email().map(|e| e.as_str().to_owned());
        let mut preferred = claims.preferred_username().map(|u| u.as_str().to_owned());
        let groups_claim = &self.config.groups_claim;
        if other.strings(groups_claim).is_none() || preferred.is_none() {
            // Many providers give profile claims only at the userinfo endpoint.
            if let Ok(request) = client.user_info(
                tokens.access_token().clone(),
                Some(claims.subject().clone()),
            ) {
                match request
                    .request_async::<OtherClaims, _, CoreGenderClaim>(http)
                    .await
                {
                    Ok(info) => {
                        email = email.or(info.email().map(|e| e.as_str().to_owned()));
                        preferred =
                            preferred.or(info.preferred_username().map(|u| u.as_str().to_owned()));
                        for (name, value) in &info.additional_claims().0 {
                            other.0.entry(name.clone()).or_insert(value.clone());
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %error_chain(&err), "userinfo endpoint did not answer")
                    }
                }
            }
        }
        let named = match self.config.username_claim.as_str() {
            "preferred_username" => preferred.clone(),
            "email" => email.clone(),
            "sub" => Some(subject.clone()),
            other_claim => other.string(other_claim),
        };
        let username = named
            .or(preferred)
            .or(email.clone())
            .unwrap_or_else(|| subject.clone());
        let username: String = username.chars().take(100).collect();
        Ok(Identity {
            issuer: claims.issuer().as_str().to_owned(),
            subject,
            username,
            email,
            groups: other.strings(groups_claim).unwrap_or_default(),
        })
    }
}

/// The crate's HTTP client: reqwest, no redirects, deadlines, bounded answers.
#[derive(Clone)]
struct Http(reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = reqwest::Error;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<openidconnect::HttpResponse, reqwest::Error>> + Send + 'c>,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(send(self.0.clone(), request))
    }
}

/// One call to the provider, with a bounded answer.
async fn send(
    client: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let mut response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut answer = http::Response::builder().status(response.status());
    if let Some(headers) = answer.headers_mut() {
        *headers = response.headers().clone();
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(answer.body(body).unwrap_or_default())
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_mapped_group_gives_the_role_else_the_default() {
        let mut config = SsoConfig {
            roles: vec![
                GroupRole {
                    group: "farm-admins".into(),
                    role: "admin".into(),
                },
                GroupRole {
                    group: "north".into(),
                    role: "north-operator".into(),
                },
            ],
            ..Default::default()
        };
        let groups = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            config
                .role_for(&groups(&["north", "farm-admins"]))
                .as_deref(),
            Some("admin")
        );
        assert_eq!(
            config.role_for(&groups(&["north"])).as_deref(),
            Some("north-operator")
        );
        assert_eq!(config.role_for(&groups(&["other"])), None);
        config.default_role = "viewer".into();
        assert_eq!(config.role_for(&[]).as_deref(), Some("viewer"));
    }
}
