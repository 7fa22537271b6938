//! The HTTP client: one request pipeline (pace → authenticate → send → retry)
//! that every endpoint method goes through.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::Retryable;
use futures::{StreamExt, TryStreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::auth::{Credentials, TokenSource};
use super::error::{ContaboError, RequestContext, UnconfirmedOrder};
use super::models::*;
use super::retry::{is_retryable_status, parse_retry_after, RetryPolicy};

/// Contabo's production API.
pub const DEFAULT_API_URL: &str = "https://api.contabo.com";
/// Contabo's production token endpoint.
pub const DEFAULT_AUTH_URL: &str =
    "https://auth.contabo.com/auth/realms/contabo/protocol/openid-connect/token";

/// Everything the client needs; the CLI fills it from flags and environment.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API base URL, e.g. `https://api.contabo.com`.
    pub api_url: String,
    /// Full token endpoint URL.
    pub auth_url: String,
    /// API credentials.
    pub credentials: Credentials,
    /// Requests per second across all tasks of this client.
    pub requests_per_second: f64,
    /// Page size for list calls.
    pub page_size: u32,
    /// Pages fetched at once after the first one.
    pub page_concurrency: usize,
    /// Time limit of one HTTP attempt.
    pub request_timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// Production URLs and conservative pacing.
    pub fn new(credentials: Credentials) -> Self {
        Self {
            api_url: DEFAULT_API_URL.to_string(),
            auth_url: DEFAULT_AUTH_URL.to_string(),
            credentials,
            requests_per_second: 10.0,
            page_size: 100,
            page_concurrency: 4,
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// A typed client for the parts of Contabo's API that kiwi-infra uses.
/// Cheap to clone; clones share the token, the rate limit and the trace id.
#[derive(Debug, Clone)]
pub struct ContaboClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    api_url: String,
    tokens: TokenSource,
    limiter: DefaultDirectRateLimiter,
    trace_id: String,
    page_size: u32,
    page_concurrency: usize,
    retry: RetryPolicy,
}

/// Filters for [`ContaboClient::list_instances`] (the spec's query parameters).
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    /// Exact display name.
    pub display_name: Option<String>,
    /// Product ids.
    pub product_ids: Vec<String>,
    /// Region.
    pub region: Option<Region>,
}

/// One request as the pipeline sees it.
#[derive(Debug, Clone)]
struct Call {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<serde_json::Value>,
    /// Safe to send twice after an ambiguous failure (5xx, reset, timeout).
    idempotent: bool,
}

impl Call {
    fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: None,
            idempotent: true,
        }
    }

    fn with_body(
        method: Method,
        path: impl Into<String>,
        body: &impl Serialize,
        idempotent: bool,
    ) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            // Serializing our own request types cannot fail; Null would be
            // rejected by Contabo with a clear 400 if it ever did.
            body: Some(serde_json::to_value(body).unwrap_or(serde_json::Value::Null)),
            idempotent,
        }
    }

    fn display_path(&self) -> String {
        if self.query.is_empty() {
            return self.path.clone();
        }
        let q: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}?{}", self.path, q.join("&"))
    }
}

/// The outcome of one attempt, before the retry policy looks at it.
#[derive(Debug)]
enum AttemptError {
    Status {
        status: StatusCode,
        message: String,
        request_id: String,
        retry_after: Option<Duration>,
    },
    Transport {
        source: reqwest::Error,
        request_id: String,
    },
    Decode {
        source: serde_json::Error,
        request_id: String,
    },
    Token(ContaboError),
}

impl AttemptError {
    fn retryable(&self, idempotent: bool) -> bool {
        match self {
            Self::Status { status, .. } => is_retryable_status(*status, idempotent),
            Self::Transport { .. } => idempotent,
            Self::Decode { .. } | Self::Token(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn into_error(self, context: impl FnOnce(String) -> RequestContext) -> ContaboError {
        let context = |id| Box::new(context(id));
        match self {
            Self::Status {
                status,
                message,
                request_id,
                ..
            } => ContaboError::Api {
                context: context(request_id),
                status,
                message,
            },
            Self::Transport { source, request_id } => ContaboError::Transport {
                context: context(request_id),
                source,
            },
            Self::Decode { source, request_id } => ContaboError::Decode {
                context: context(request_id),
                source,
            },
            Self::Token(e) => e,
        }
    }
}

impl ContaboClient {
    /// Builds a client. Nothing is sent until the first call.
    pub fn new(config: ClientConfig) -> Result<Self, ContaboError> {
        let rps = config.requests_per_second;
        if !(rps.is_finite() && rps > 0.0) {
            return Err(ContaboError::Config(format!(
                "rate limit must be a positive number of requests per second, got {rps}"
            )));
        }
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / rps))
            .ok_or_else(|| ContaboError::Config(format!("rate limit {rps}/s is too high")))?
            .allow_burst(NonZeroU32::MIN);
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("kiwi-infra/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ContaboError::Config(format!("cannot build HTTP client: {e}")))?;
        let trace_id = uuid::Uuid::new_v4().to_string();
        tracing::debug!(%trace_id, api = %config.api_url, "Contabo client ready");
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                api_url: config.api_url.trim_end_matches('/').to_string(),
                tokens: TokenSource::new(config.auth_url, config.credentials),
                limiter: RateLimiter::direct(quota),
                trace_id,
                page_size: config.page_size.clamp(1, 1000),
                page_concurrency: config.page_concurrency.max(1),
                retry: config.retry,
            }),
        })
    }

    /// The `x-trace-id` sent with every request of this run; quote it to
    /// Contabo support.
    pub fn trace_id(&self) -> &str {
        &self.inner.trace_id
    }

    // ----- instances -------------------------------------------------------

    /// All instances matching `filter`, every page.
    pub async fn list_instances(
        &self,
        filter: &InstanceFilter,
    ) -> Result<Vec<Instance>, ContaboError> {
        let mut query = Vec::new();
        if let Some(name) = &filter.display_name {
            query.push(("displayName", name.clone()));
        }
        if !filter.product_ids.is_empty() {
            query.push(("productIds", filter.product_ids.join(",")));
        }
        if let Some(region) = &filter.region {
            query.push(("region", region.to_string()));
        }
        self.list_all("/v1/compute/instances", query).await
    }

    /// Instances whose display name is exactly `display_name` (the API's
    /// filter is trusted to narrow, and the result is checked again here).
    pub async fn find_instances_by_display_name(
        &self,
        display_name: &str,
    ) -> Result<Vec<Instance>, ContaboError> {
        let filter = InstanceFilter {
            display_name: Some(display_name.to_string()),
            ..InstanceFilter::default()
        };
        let mut found = self.list_instances(&filter).await?;
        found.retain(|i| i.display_name == display_name);
        Ok(found)
    }

    /// One instance.
    pub async fn get_instance(&self, id: InstanceId) -> Result<Instance, ContaboError> {
        self.single(Call::get(format!("/v1/compute/instances/{id}")))
            .await
    }

    /// Places a paid order for a new instance.
    ///
    /// **This is never retried blindly.** Contabo has no idempotency key, so
    /// when the answer is lost (reset, timeout, 5xx) the order may or may not
    /// exist. Such failures come back as [`ContaboError::OrderOutcomeUnknown`],
    /// whose only way forward is [`Self::resolve_unconfirmed_order`]: it looks
    /// for the instance by `displayName` and hands the request back for a
    /// second attempt only when no instance of that name exists. Only a 429
    /// (the rate limiter refused the request before anything happened) is
    /// retried here.
    pub async fn create_instance(
        &self,
        order: CreateInstance,
    ) -> Result<CreatedInstance, ContaboError> {
        let call = Call::with_body(Method::POST, "/v1/compute/instances", &order, false);
        match self.single(call).await {
            Ok(created) => Ok(created),
            Err(e) if order_surely_not_placed(&e) => Err(e),
            Err(cause) => Err(ContaboError::OrderOutcomeUnknown {
                display_name: order.display_name.clone(),
                order: Box::new(UnconfirmedOrder { request: order }),
                cause: Box::new(cause),
            }),
        }
    }

    /// Settles an order whose answer was lost: the instances of that name if
    /// the order went through, or the request to send again if it did not.
    pub async fn resolve_unconfirmed_order(
        &self,
        order: UnconfirmedOrder,
    ) -> Result<OrderResolution, ContaboError> {
        let found = self
            .find_instances_by_display_name(order.display_name())
            .await?;
        tracing::info!(
            display_name = order.display_name(),
            found = found.len(),
            "looked for an order whose answer was lost"
        );
        Ok(if found.is_empty() {
            OrderResolution::NotPlaced(order.request)
        } else {
            OrderResolution::Placed(found)
        })
    }

    /// Reinstalls an instance in place (no new order). Repeating it is harmless.
    pub async fn reinstall_instance(
        &self,
        id: InstanceId,
        request: &ReinstallInstance,
    ) -> Result<(), ContaboError> {
        let call = Call::with_body(
            Method::PUT,
            format!("/v1/compute/instances/{id}"),
            request,
            true,
        );
        self.send::<serde_json::Value>(call).await.map(drop)
    }

    /// Cancels an instance; it keeps running (and billing) until the date
    /// Contabo returns. A second cancel of the same instance changes nothing
    /// at Contabo, so ambiguous failures are retried.
    pub async fn cancel_instance(
        &self,
        id: InstanceId,
    ) -> Result<Option<chrono::NaiveDate>, ContaboError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Cancelled {
            #[serde(default)]
            cancel_date: Option<String>,
        }
        let call = Call::with_body(
            Method::POST,
            format!("/v1/compute/instances/{id}/cancel"),
            &serde_json::json!({}),
            true,
        );
        let done: Cancelled = self.single(call).await?;
        Ok(done
            .cancel_date
            .and_then(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()))
    }

    // ----- images, secrets, tags, networks ----------------------------------

    /// Images whose name is exactly `name`.
    pub async fn find_images_by_name(&self, name: &str) -> Result<Vec<Image>, ContaboError> {
        let mut images: Vec<Image> = self
            .list_all("/v1/compute/images", vec![("name", name.to_string())])
            .await?;
        images.retain(|i| i.name == name);
        Ok(images)
    }

    /// All images.
    pub async fn list_images(&self) -> Result<Vec<Image>, ContaboError> {
        self.list_all("/v1/compute/images", Vec::new()).await
    }

    /// All stored secrets (without their values).
    pub async fn list_secrets(&self) -> Result<Vec<StoredSecret>, ContaboError> {
        self.list_all("/v1/secrets", Vec::new()).await
    }

    /// Stores a public SSH key under `name`. Not retried on ambiguous
    /// failures: callers look the name up again first (see [`Self::list_secrets`]).
    pub async fn create_ssh_key(
        &self,
        name: &str,
        public_key: &str,
    ) -> Result<StoredSecret, ContaboError> {
        let body = serde_json::json!({ "name": name, "value": public_key, "type": "ssh" });
        self.single(Call::with_body(Method::POST, "/v1/secrets", &body, false))
            .await
    }

    /// All tags.
    pub async fn list_tags(&self) -> Result<Vec<Tag>, ContaboError> {
        self.list_all("/v1/tags", Vec::new()).await
    }

    /// Creates a tag. Not retried on ambiguous failures: a duplicate name is
    /// a 409, so callers list tags again instead.
    pub async fn create_tag(&self, name: &str, color: &str) -> Result<TagId, ContaboError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Created {
            tag_id: TagId,
        }
        let body = serde_json::json!({ "name": name, "color": color });
        let created: Created = self
            .single(Call::with_body(Method::POST, "/v1/tags", &body, false))
            .await?;
        Ok(created.tag_id)
    }

    /// Every assignment of one tag.
    pub async fn list_tag_assignments(
        &self,
        tag: TagId,
    ) -> Result<Vec<TagAssignment>, ContaboError> {
        self.list_all(&format!("/v1/tags/{tag}/assignments"), Vec::new())
            .await
    }

    /// Assigns a tag to an instance. Assigning twice changes nothing, so
    /// ambiguous failures are retried and "already assigned" (409) is success.
    pub async fn assign_tag(&self, tag: TagId, instance: InstanceId) -> Result<(), ContaboError> {
        let call = Call::with_body(
            Method::POST,
            format!("/v1/tags/{tag}/assignments/instance/{instance}"),
            &serde_json::json!({}),
            true,
        );
        match self.send::<serde_json::Value>(call).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(StatusCode::CONFLICT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// All private networks.
    pub async fn list_private_networks(&self) -> Result<Vec<PrivateNetwork>, ContaboError> {
        self.list_all("/v1/private-networks", Vec::new()).await
    }

    // ----- pipeline ---------------------------------------------------------

    /// Every page of a list endpoint: the first page tells how many there
    /// are, then the rest are fetched concurrently (bounded) and reassembled
    /// in order.
    async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        query: Vec<(&'static str, String)>,
    ) -> Result<Vec<T>, ContaboError> {
        let page_call = |page: u64| {
            let mut q = query.clone();
            q.push(("page", page.to_string()));
            q.push(("size", self.inner.page_size.to_string()));
            Call {
                query: q,
                ..Call::get(path)
            }
        };
        let first: ListPage<T> = self.send(page_call(1)).await?;
        let total_pages = first.pagination.total_pages.max(1.0) as u64;
        let mut items = first.data;
        if total_pages > 1 {
            let rest: Vec<Vec<T>> = futures::stream::iter(2..=total_pages)
                .map(|page| {
                    let call = page_call(page);
                    async move { self.send::<ListPage<T>>(call).await.map(|p| p.data) }
                })
                .buffered(self.inner.page_concurrency)
                .try_collect()
                .await?;
            items.extend(rest.into_iter().flatten());
        }
        Ok(items)
    }

    /// A request whose answer is `{"data": [one item]}`.
    async fn single<T: DeserializeOwned>(&self, call: Call) -> Result<T, ContaboError> {
        let display = call.display_path();
        let method = call.method.clone();
        let trace_id = self.inner.trace_id.clone();
        let response: DataResponse<T> = self.send(call).await?;
        response
            .data
            .into_iter()
            .next()
            .ok_or_else(|| ContaboError::EmptyAnswer {
                method,
                path: display,
                trace_id,
            })
    }

    /// Sends `call` through the rate limit, authentication and retry policy.
    async fn send<T: DeserializeOwned>(&self, call: Call) -> Result<T, ContaboError> {
        let started = Instant::now();
        let attempts = AtomicU32::new(0);
        let policy = self.inner.retry;
        let result = (|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.attempt::<T>(&call).await
        })
        .retry(policy.backoff())
        .when(|e: &AttemptError| e.retryable(call.idempotent))
        .adjust(|e: &AttemptError, planned| policy.delay(planned, e.retry_after()))
        .notify(|e: &AttemptError, delay| {
            tracing::debug!(
                method = %call.method,
                path = %call.display_path(),
                error = ?e,
                delay_ms = delay.as_millis() as u64,
                "retrying Contabo request"
            );
        })
        .await;
        result.map_err(|e| {
            let attempts = attempts.load(Ordering::Relaxed);
            e.into_error(|request_id| RequestContext {
                method: call.method.clone(),
                path: call.display_path(),
                request_id,
                trace_id: self.inner.trace_id.clone(),
                attempts,
                elapsed: started.elapsed(),
            })
        })
    }

    /// One attempt; a 401 renews the token once within the attempt.
    async fn attempt<T: DeserializeOwned>(&self, call: &Call) -> Result<T, AttemptError> {
        let mut renewed = false;
        loop {
            self.inner.limiter.until_ready().await;
            let token = self
                .inner
                .tokens
                .token(&self.inner.http)
                .await
                .map_err(AttemptError::Token)?;
            let request_id = uuid::Uuid::new_v4().to_string();
            let mut builder = self
                .inner
                .http
                .request(
                    call.method.clone(),
                    format!("{}{}", self.inner.api_url, call.path),
                )
                .bearer_auth(token.expose())
                .header("x-request-id", &request_id)
                .header("x-trace-id", &self.inner.trace_id)
                .query(&call.query);
            if let Some(body) = &call.body {
                builder = builder.json(body);
            }
            tracing::trace!(method = %call.method, path = %call.display_path(), %request_id, "request");
            let response = builder
                .send()
                .await
                .map_err(|source| AttemptError::Transport {
                    source: source.without_url(),
                    request_id: request_id.clone(),
                })?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !renewed {
                tracing::debug!(%request_id, "token rejected, renewing once");
                self.inner.tokens.invalidate(&token).await;
                renewed = true;
                continue;
            }
            let retry_after =
                parse_retry_after(response.headers().get(reqwest::header::RETRY_AFTER));
            let body = response
                .bytes()
                .await
                .map_err(|source| AttemptError::Transport {
                    source: source.without_url(),
                    request_id: request_id.clone(),
                })?;
            if !status.is_success() {
                return Err(AttemptError::Status {
                    status,
                    message: error_message(&body),
                    request_id,
                    retry_after,
                });
            }
            let body = if body.is_empty() {
                &b"{}"[..]
            } else {
                &body[..]
            };
            return serde_json::from_slice(body)
                .map_err(|source| AttemptError::Decode { source, request_id });
        }
    }
}

/// What became of an order whose answer was lost.
#[derive(Debug)]
pub enum OrderResolution {
    /// It went through: these are the instances of that name.
    Placed(Vec<Instance>),
    /// Nothing of that name exists: this request may be sent again.
    NotPlaced(CreateInstance),
}

/// A create refused with a client error (or rate-limited) was not placed;
/// anything else (5xx, reset, timeout, undecodable success) might have been.
fn order_surely_not_placed(e: &ContaboError) -> bool {
    match e {
        ContaboError::Api { status, .. } => status.is_client_error(),
        ContaboError::Credentials { .. }
        | ContaboError::Config(_)
        | ContaboError::TokenTransport { .. } => true,
        _ => false,
    }
}

/// Contabo's `message` from an error body, or the body's start: outside
/// text, so every secret the process holds is masked (a proxy may echo the
/// request, bearer token and user data included), control characters are
/// escaped and the length is capped.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: Option<serde_json::Value>,
    }
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            message: Some(serde_json::Value::String(s)),
        }) => s,
        Ok(ErrorBody { message: Some(m) }) => m.to_string(),
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let message = crate::secret::redact::excerpt(&text);
    if message.is_empty() {
        "(empty body)".to_string()
    } else {
        message
    }
}
