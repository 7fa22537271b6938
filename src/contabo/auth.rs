//! OAuth2 password grant against Contabo's Keycloak, with a cached token that
//! is renewed before it expires and on demand after a 401.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::error::ContaboError;
use super::retry::{parse_retry_after, RetryPolicy};
use crate::secret::Secret;

/// The four values from Contabo's Customer Control Panel. Read from
/// `CNTB_OAUTH2_*`, the names Contabo's Terraform provider uses.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// OAuth client id (not secret on its own, but kept out of logs anyway).
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: Secret,
    /// API user (an e-mail address).
    pub username: String,
    /// API password.
    pub password: Secret,
}

/// A token is renewed when less than this remains of its life.
const RENEW_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct CachedToken {
    value: Secret,
    renew_at: Instant,
}

/// The token cache shared by all requests of one client.
#[derive(Debug)]
pub(super) struct TokenSource {
    url: String,
    credentials: Credentials,
    /// The client's one retry policy, for token requests too.
    retry: RetryPolicy,
    cached: Mutex<Option<CachedToken>>,
}

/// How long an unknown or unusable lifetime is assumed to be: short, so
/// the token is renewed early.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(60);

/// The longest lifetime believed. Keycloak issues tokens for minutes; a
/// server that claims years (or `1e300` seconds) is not believed beyond a
/// day, which also keeps every `Instant` computed from it in range.
const LONGEST_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Not used, but a secret all the same: registered so that no echo
    /// shows it.
    #[serde(default)]
    refresh_token: Option<String>,
    /// Any JSON at all: the token endpoint is outside the code. Read with
    /// [`token_lifetime`].
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// The lifetime a token answer's `expires_in` claims, made safe: a number
/// (or numeric string) of seconds clamped to [`LONGEST_LIFETIME`]; zero,
/// negative, missing or nonsense values count as [`ASSUMED_LIFETIME`].
fn token_lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
    let secs = match expires_in {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match secs {
        Some(s) if s.is_finite() && s > 0.0 => {
            Duration::try_from_secs_f64(s).map_or(LONGEST_LIFETIME, |d| d.min(LONGEST_LIFETIME))
        }
        _ => ASSUMED_LIFETIME,
    }
}

/// When a token obtained at `started` with `lifetime` should be renewed:
/// [`RENEW_MARGIN`] early (half the lifetime for short ones), never past
/// the range of `Instant`.
fn renew_time(started: Instant, lifetime: Duration) -> Instant {
    let early = lifetime.saturating_sub(RENEW_MARGIN.min(lifetime / 2));
    started.checked_add(early).unwrap_or(started)
}

#[derive(Deserialize)]
struct OAuthError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl TokenSource {
    pub(super) fn new(url: String, credentials: Credentials, retry: RetryPolicy) -> Self {
        Self {
            url,
            credentials,
            retry,
            cached: Mutex::new(None),
        }
    }

    /// A valid token, from the cache when it still has time left.
    pub(super) async fn token(&self, http: &reqwest::Client) -> Result<Secret, ContaboError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref() {
            if Instant::now() < token.renew_at {
                return Ok(token.value.clone());
            }
            tracing::debug!("API token close to expiry, renewing");
        }
        let fresh = self.fetch(http).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// Forgets `rejected` so the next [`Self::token`] fetches a new one. A
    /// token another task already replaced is left alone.
    pub(super) async fn invalidate(&self, rejected: &Secret) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == *rejected) {
            *cached = None;
        }
    }

    /// A new token. A passing failure (no answer, 5xx, 429, an answer that
    /// is not OAuth JSON) is retried as the client retries a safe request,
    /// with [`RetryPolicy::backoff`]'s delays (a `Retry-After` is obeyed,
    /// capped), at most [`RetryPolicy::max_retries`] times; asking for a
    /// token twice is harmless. A refusal (wrong credentials) is not retried.
    /// The client does not retry a failed token request again on top.
    async fn fetch(&self, http: &reqwest::Client) -> Result<CachedToken, ContaboError> {
        use backon::BackoffBuilder;
        let mut delays = self.retry.backoff().build();
        let mut attempts = 0u32;
        loop {
            attempts = attempts.saturating_add(1);
            let (error, retry_after) = match self.fetch_once(http).await {
                Ok(token) => return Ok(token),
                Err(FetchError::Refused(e)) => return Err(e),
                Err(FetchError::Transient { error, retry_after }) => (error, retry_after),
            };
            let Some(delay) = self.retry.delay(delays.next(), retry_after) else {
                return Err(ContaboError::TokenTransport {
                    url: self.url.clone(),
                    attempts,
                    source: error,
                });
            };
            tracing::debug!(
                attempt = attempts,
                error = %error,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "token request failed, retrying"
            );
            // The HTTP retry policy's delay, not `crate::patience`'s business.
            tokio::time::sleep(delay).await;
        }
    }

    async fn fetch_once(&self, http: &reqwest::Client) -> Result<CachedToken, FetchError> {
        let c = &self.credentials;
        let form = [
            ("grant_type", "password"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.expose().as_str()),
            ("username", c.username.as_str()),
            ("password", c.password.expose().as_str()),
        ];
        let started = Instant::now();
        let response = http
            .post(&self.url)
            .form(&form)
            .send()
            .await
            .map_err(|e| FetchError::transient(e.without_url()))?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers().get(reqwest::header::RETRY_AFTER));
        let body = response
            .bytes()
            .await
            .map_err(|e| FetchError::transient(e.without_url()))?;
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(FetchError::Transient {
                error: format!("HTTP {status}").into(),
                retry_after,
            });
        }
        if !status.is_success() {
            // Outside text: a token endpoint (or a proxy) may quote the
            // form, client secret and password included.
            let reason = serde_json::from_slice::<OAuthError>(&body)
                .map(|e| {
                    crate::secret::redact::excerpt(
                        format!("{} {}", e.error, e.error_description).trim(),
                    )
                })
                .unwrap_or_else(|_| "no OAuth error in the answer".to_string());
            return Err(FetchError::Refused(ContaboError::Credentials {
                url: self.url.clone(),
                status,
                reason,
            }));
        }
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            FetchError::transient(format!(
                "token answer is not OAuth JSON: {}",
                crate::secret::redact::excerpt(&e.to_string())
            ))
        })?;
        if let Some(refresh) = &token.refresh_token {
            crate::secret::register_credential(refresh);
        }
        let lifetime = token_lifetime(token.expires_in.as_ref());
        let renew_at = renew_time(started, lifetime);
        tracing::debug!(lifetime_s = lifetime.as_secs(), "obtained API token");
        Ok(CachedToken {
            value: Secret::credential(token.access_token),
            renew_at,
        })
    }
}

enum FetchError {
    Refused(ContaboError),
    Transient {
        error: Box<dyn std::error::Error + Send + Sync>,
        /// The token endpoint's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
}

impl FetchError {
    fn transient(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        FetchError::Transient {
            error: error.into(),
            retry_after: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_token_that_expires_in_1e300_seconds_is_believed_for_a_day_at_most() {
        for huge in [
            json!(1e300),
            json!(u64::MAX),
            json!(18_446_744_073_709_551_615_u64),
            json!("1e300"),
            json!(f64::MAX),
        ] {
            assert_eq!(token_lifetime(Some(&huge)), LONGEST_LIFETIME, "{huge}");
            let now = Instant::now();
            assert!(renew_time(now, token_lifetime(Some(&huge))) > now);
        }
    }

    #[test]
    fn a_zero_negative_or_nonsense_lifetime_means_renew_soon() {
        for odd in [
            json!(0),
            json!(-1),
            json!(-1e300),
            json!("soon"),
            json!(null),
            json!([300]),
            json!({"s": 300}),
            json!(true),
        ] {
            assert_eq!(token_lifetime(Some(&odd)), ASSUMED_LIFETIME, "{odd}");
        }
        assert_eq!(token_lifetime(None), ASSUMED_LIFETIME);
        assert_eq!(token_lifetime(Some(&json!(300))), Duration::from_secs(300));
        assert_eq!(
            token_lifetime(Some(&json!("300"))),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn the_renewal_time_never_overflows() {
        let now = Instant::now();
        assert_eq!(renew_time(now, Duration::MAX), now);
        assert_eq!(
            renew_time(now, Duration::from_secs(300)),
            now + Duration::from_secs(270)
        );
        assert_eq!(renew_time(now, Duration::ZERO), now);
    }
}
