//! The HTTP client: one request pipeline (pace → authenticate → send → retry)
//! that every endpoint method goes through.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::auth::{Credentials, TokenSource};
use super::error::{ContaboError, PagingProblem, RequestContext, UnconfirmedOrder};
use super::models::*;
use super::pace::Pace;
use super::paging::{
    self, Collector, Layout, Listed, DEFAULT_PAGE_SIZE, FALLBACK_PAGE_SIZE, MAX_PAGE_SIZE,
};
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
    /// Items asked for per list page ([`DEFAULT_PAGE_SIZE`]; at most
    /// [`MAX_PAGE_SIZE`]). A server serving fewer is followed; one refusing
    /// the size with a 400 is asked for [`FALLBACK_PAGE_SIZE`] from then on.
    pub page_size: u32,
    /// Pages fetched at once after the first one.
    pub page_concurrency: usize,
    /// Time limit of one HTTP attempt.
    pub request_timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Time limit of one whole listing (every page of a list).
    pub list_time_limit: Duration,
}

impl ClientConfig {
    /// Production URLs and conservative pacing.
    pub fn new(credentials: Credentials) -> Self {
        Self {
            api_url: DEFAULT_API_URL.to_string(),
            auth_url: DEFAULT_AUTH_URL.to_string(),
            credentials,
            requests_per_second: 10.0,
            page_size: DEFAULT_PAGE_SIZE,
            page_concurrency: 4,
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            list_time_limit: Duration::from_secs(10 * 60),
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
    /// The pace below the ceiling, lowered by 429s.
    pace: Pace,
    trace_id: String,
    /// Items asked for per page; lowered once if a server refuses it.
    page_size: AtomicU32,
    page_concurrency: usize,
    retry: RetryPolicy,
    list_time_limit: Duration,
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
    /// Instance ids (the `instanceIds` filter); empty means any.
    pub instance_ids: Vec<InstanceId>,
}

/// Ids per `instanceIds` request: keeps the URL short (about 1 KiB) while a
/// poll round for 180 new machines stays at two requests.
pub const IDS_PER_REQUEST: usize = 100;

/// One request as the pipeline sees it.
#[derive(Debug, Clone)]
struct Call {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<serde_json::Value>,
    /// Safe to send twice after an ambiguous failure (5xx, reset, timeout).
    idempotent: bool,
    /// Sent at most once, whatever the answer: no retry, not even after a
    /// 429 or a 401 (an order: only a look-up may settle what happened).
    once: bool,
}

impl Call {
    fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: None,
            idempotent: true,
            once: false,
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
            once: false,
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

    fn is_throttled(&self) -> bool {
        matches!(self, Self::Status { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS)
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
                retry_after,
            } => ContaboError::Api {
                context: context(request_id),
                status,
                message,
                retry_after,
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
        let quota = rate_quota(config.requests_per_second)?;
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
                tokens: TokenSource::new(config.auth_url, config.credentials, config.retry),
                limiter: RateLimiter::direct(quota),
                pace: Pace::new(config.requests_per_second),
                trace_id,
                page_size: AtomicU32::new(config.page_size.clamp(1, MAX_PAGE_SIZE)),
                page_concurrency: config.page_concurrency.max(1),
                retry: config.retry,
                list_time_limit: config.list_time_limit,
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
        if !filter.instance_ids.is_empty() {
            let ids: Vec<String> = filter
                .instance_ids
                .iter()
                .map(ToString::to_string)
                .collect();
            query.push(("instanceIds", ids.join(",")));
        }
        // A stable order (as Contabo's own CLI asks) keeps pages fetched side
        // by side from skipping or repeating rows.
        query.push(("orderBy", "name:asc".to_string()));
        self.list_all("/v1/compute/instances", query).await
    }

    /// The instances with these ids that exist (any order; missing ones are
    /// simply absent): one `GET /v1/compute/instances/{id}` for one id, else
    /// the `instanceIds` filter, [`IDS_PER_REQUEST`] ids a request. What a
    /// wait polls: its cost follows the ids, not the account's size.
    pub async fn instances_by_ids(
        &self,
        ids: &[InstanceId],
    ) -> Result<Vec<Instance>, ContaboError> {
        let wanted: std::collections::BTreeSet<InstanceId> = ids.iter().copied().collect();
        if let [id] = ids {
            return match self.get_instance(*id).await {
                Ok(i) if i.instance_id == *id => Ok(vec![i]),
                Ok(_) => Ok(Vec::new()),
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let distinct: Vec<InstanceId> = wanted.iter().copied().collect();
        let mut found = Vec::new();
        for chunk in distinct.chunks(IDS_PER_REQUEST) {
            let filter = InstanceFilter {
                instance_ids: chunk.to_vec(),
                ..InstanceFilter::default()
            };
            found.extend(self.list_instances(&filter).await?);
        }
        // The filter narrows; what is kept is checked here.
        found.retain(|i| wanted.contains(&i.instance_id));
        Ok(found)
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
    /// **This is sent exactly once.** Contabo has no idempotency key, and
    /// only a 2xx answer with the instance proves what happened: a 429, any
    /// 4xx or 5xx, a reset or a timeout may all come after the order was
    /// placed (a proxy, a broken gateway). So nothing is retried here, not
    /// even after a 429 or a 401, and every such failure comes back as
    /// [`ContaboError::OrderOutcomeUnknown`]: the caller settles it by
    /// looking the slot up ([`Self::resolve_unconfirmed_order`]), and never
    /// sends the order again on its own. Only a failure before anything was
    /// sent (no token) comes back as it is.
    pub async fn create_instance(
        &self,
        order: CreateInstance,
    ) -> Result<CreatedInstance, ContaboError> {
        let mut call = Call::with_body(Method::POST, "/v1/compute/instances", &order, false);
        call.once = true;
        match self.single(call).await {
            Ok(created) => Ok(created),
            Err(e) if e.never_sent() => Err(e),
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

    /// Sets an instance's `displayName` (`PATCH /v1/compute/instances/{id}`).
    /// Setting the same name twice is harmless, so it is retried like a read.
    pub async fn rename_instance(
        &self,
        id: InstanceId,
        display_name: &str,
    ) -> Result<(), ContaboError> {
        let call = Call::with_body(
            Method::PATCH,
            format!("/v1/compute/instances/{id}"),
            &serde_json::json!({ "displayName": display_name }),
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

    /// The tags whose name starts with `prefix` (kiwi-infra reads only its
    /// own, `kiwi-`). Contabo's `name` filter is a substring match, so the
    /// names are checked again here.
    pub async fn list_tags_with_prefix(&self, prefix: &str) -> Result<Vec<Tag>, ContaboError> {
        let mut tags: Vec<Tag> = self
            .list_all("/v1/tags", vec![("name", prefix.to_string())])
            .await?;
        tags.retain(|t| t.name.starts_with(prefix));
        Ok(tags)
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

    /// Every assignment of one tag to an instance (the `resourceType`
    /// filter; other kinds are dropped here too).
    pub async fn list_tag_assignments(
        &self,
        tag: TagId,
    ) -> Result<Vec<TagAssignment>, ContaboError> {
        let mut assignments: Vec<TagAssignment> = self
            .list_all(
                &format!("/v1/tags/{tag}/assignments"),
                vec![("resourceType", "instance".to_string())],
            )
            .await?;
        assignments.retain(|a| a.resource_type == "instance");
        Ok(assignments)
    }

    /// Assigns a tag to an instance. Assigning twice changes nothing, so
    /// ambiguous failures are retried and "already assigned" (409) is success.
    pub async fn assign_tag(&self, tag: TagId, instance: InstanceId) -> Result<(), ContaboError> {
        // The operation defines no request body, so none is sent.
        let call = Call {
            method: Method::POST,
            ..Call::get(format!("/v1/tags/{tag}/assignments/instance/{instance}"))
        };
        match self.send::<serde_json::Value>(call).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(StatusCode::CONFLICT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes a tag from an instance. Removing it twice changes nothing, so
    /// ambiguous failures are retried and "not assigned" (404) is success.
    pub async fn unassign_tag(&self, tag: TagId, instance: InstanceId) -> Result<(), ContaboError> {
        let call = Call {
            method: Method::DELETE,
            ..Call::get(format!("/v1/tags/{tag}/assignments/instance/{instance}"))
        };
        match self.send::<serde_json::Value>(call).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// All private networks.
    pub async fn list_private_networks(&self) -> Result<Vec<PrivateNetwork>, ContaboError> {
        self.list_all("/v1/private-networks", Vec::new()).await
    }

    /// The private networks named exactly `name`. Contabo's `name` filter
    /// may match more loosely, so the names are checked again here.
    pub async fn find_private_networks_by_name(
        &self,
        name: &str,
    ) -> Result<Vec<PrivateNetwork>, ContaboError> {
        let mut found: Vec<PrivateNetwork> = self
            .list_all("/v1/private-networks", vec![("name", name.to_string())])
            .await?;
        found.retain(|n| n.name == name);
        Ok(found)
    }

    /// Creates a private network (`POST /v1/private-networks`). Not
    /// retried on ambiguous failures: names are not unique at Contabo, so a
    /// second creation would make a second network; callers look again
    /// instead (`apply`'s look-create-look).
    pub async fn create_private_network(
        &self,
        name: &str,
        region: &str,
        description: &str,
    ) -> Result<PrivateNetwork, ContaboError> {
        let body =
            serde_json::json!({ "name": name, "region": region, "description": description });
        self.single(Call::with_body(
            Method::POST,
            "/v1/private-networks",
            &body,
            false,
        ))
        .await
    }

    /// Adds an instance to a private network
    /// (`POST /v1/private-networks/{id}/instances/{instanceId}`). Adding it
    /// twice changes nothing, so ambiguous failures are retried and
    /// "already a member" (409) is success. Without the private-networking
    /// add-on Contabo answers 402, returned as is.
    pub async fn assign_private_network(
        &self,
        network: i64,
        instance: InstanceId,
    ) -> Result<(), ContaboError> {
        // The operation defines no request body, so none is sent.
        let call = Call {
            method: Method::POST,
            ..Call::get(format!(
                "/v1/private-networks/{network}/instances/{instance}"
            ))
        };
        match self.send::<serde_json::Value>(call).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(StatusCode::CONFLICT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ----- pipeline ---------------------------------------------------------

    /// Every item of a list endpoint, checked to add up (see
    /// [`super::paging`]): page 1 tells how many items exist, the pages that
    /// count implies are fetched concurrently (bounded) at the page size the
    /// server served, and the whole is checked for short, long or
    /// overlapping pages. A list that does not add up is read again, at most
    /// [`paging::READS`] times in all, then refused. The whole listing has a
    /// time limit.
    async fn list_all<T: DeserializeOwned + Listed>(
        &self,
        path: &str,
        query: Vec<(&'static str, String)>,
    ) -> Result<Vec<T>, ContaboError> {
        let limit = self.inner.list_time_limit;
        let reads = async {
            let mut problems = Vec::new();
            for read in 1..=paging::READS {
                match self.list_once(path, &query).await? {
                    Ok(items) => return Ok(items),
                    Err(problem) => {
                        tracing::debug!(path, read, %problem, "list does not add up; reading it again");
                        problems.push(problem);
                    }
                }
            }
            Err(self.paging_error(
                path,
                format!(
                    "it was read {} times and never added up ({}); kiwi-infra stopped rather \
                     than act on what may be a partial list. Run the command again; if this \
                     persists, the API (or something between it and this machine) is misbehaving",
                    paging::READS,
                    problems.join("; then ")
                ),
            ))
        };
        tokio::time::timeout(limit, reads)
            .await
            .unwrap_or_else(|_| {
                Err(self.paging_error(
                    path,
                    format!("the listing did not finish within {} s", limit.as_secs()),
                ))
            })
    }

    /// One read of a whole list: `Ok(Err(why))` when its pages do not add up.
    async fn list_once<T: DeserializeOwned + Listed>(
        &self,
        path: &str,
        query: &[(&'static str, String)],
    ) -> Result<Result<Vec<T>, String>, ContaboError> {
        let page_call = |page: u64, size: u64| {
            let mut q = query.to_vec();
            q.push(("page", page.to_string()));
            q.push(("size", size.to_string()));
            Call {
                query: q,
                ..Call::get(path)
            }
        };
        let mut asked = self.inner.page_size.load(Ordering::Relaxed);
        let first: ListPage<T> = match self.send(page_call(1, asked.into())).await {
            Err(e) if e.status() == Some(StatusCode::BAD_REQUEST) && asked > FALLBACK_PAGE_SIZE => {
                // Some server refuses the size: ask what Contabo's own CLI
                // asks, once, and keep to it for the rest of the run.
                tracing::debug!(
                    path,
                    asked,
                    fallback = FALLBACK_PAGE_SIZE,
                    error = %e,
                    "page size refused; asking for smaller pages from now on"
                );
                asked = FALLBACK_PAGE_SIZE;
                self.inner.page_size.store(asked, Ordering::Relaxed);
                self.send(page_call(1, asked.into())).await?
            }
            other => other?,
        };
        // Each reason names what page 1 announced, so the operator (and
        // Contabo's support, with the trace id) can see what did not add up.
        let announced = format!(
            "page 1 announced {} element(s) in {} page(s) of {}",
            paging::shown(first.pagination.total_elements),
            paging::shown(first.pagination.total_pages),
            paging::shown(first.pagination.size)
        );
        let why = |reason: String| Ok(Err(format!("{reason}; {announced}")));
        let layout = match Layout::from_first_page(&first.pagination, asked, first.data.len()) {
            Ok(layout) => layout,
            Err(reason) => return why(reason),
        };
        let first_has_next = first.links.next.is_some();
        let mut collected = match Collector::new(layout, first.data, first_has_next) {
            Ok(c) => c,
            Err(reason) => return why(reason),
        };
        let mut pages = futures::stream::iter(2..=layout.pages)
            .map(|page| {
                let call = page_call(page, layout.size);
                async move {
                    self.send::<ListPage<T>>(call)
                        .await
                        .map(|p| (page, p.links.next.is_some(), p.data))
                }
            })
            .buffered(self.inner.page_concurrency);
        while let Some((page, has_next, items)) = pages.try_next().await? {
            if let Err(reason) = collected.add(page, items, has_next) {
                return why(reason);
            }
        }
        match collected.finish() {
            Ok(items) => Ok(Ok(items)),
            Err(reason) => why(reason),
        }
    }

    fn paging_error(&self, path: &str, reason: String) -> ContaboError {
        ContaboError::Paging {
            problem: Box::new(PagingProblem {
                path: path.to_string(),
                trace_id: self.inner.trace_id.clone(),
                reason,
            }),
        }
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

    /// Sends `call` through the pace, authentication and retry policy
    /// (see [`super::retry`]): a 429 lowers the client's pace
    /// ([`super::pace`]) and is retried, for a safe request, until
    /// [`RetryPolicy::throttle_patience`] runs out; passing failures of a
    /// safe request are retried a few times; an order is sent once.
    async fn send<T: DeserializeOwned>(&self, call: Call) -> Result<T, ContaboError> {
        use backon::BackoffBuilder;
        let started = Instant::now();
        let policy = self.inner.retry;
        let mut failures = policy.backoff().build();
        let mut throttles = policy.throttle_backoff().build();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let error = match self.attempt::<T>(&call).await {
                Ok(value) => {
                    self.inner.pace.succeeded();
                    return Ok(value);
                }
                Err(e) => e,
            };
            let throttled = error.is_throttled();
            if throttled {
                self.inner.pace.throttled();
            }
            let delay = if call.once {
                None
            } else if throttled {
                policy
                    .delay(throttles.next(), error.retry_after())
                    .filter(|d| started.elapsed().saturating_add(*d) <= policy.throttle_patience)
            } else if error.retryable(call.idempotent) {
                policy.delay(failures.next(), error.retry_after())
            } else {
                None
            };
            let Some(delay) = delay else {
                return Err(error.into_error(|request_id| RequestContext {
                    method: call.method.clone(),
                    path: call.display_path(),
                    request_id,
                    trace_id: self.inner.trace_id.clone(),
                    attempts,
                    elapsed: started.elapsed(),
                }));
            };
            tracing::debug!(
                method = %call.method,
                path = %call.display_path(),
                error = ?error,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "retrying Contabo request"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt; a 401 renews the token once within the attempt.
    async fn attempt<T: DeserializeOwned>(&self, call: &Call) -> Result<T, AttemptError> {
        let mut renewed = false;
        loop {
            self.inner.limiter.until_ready().await;
            self.inner.pace.until_ready(call.once).await;
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
            if status == StatusCode::UNAUTHORIZED && !renewed && !call.once {
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

/// Slowest and fastest pace a client accepts, in requests per second. The
/// CLI refuses values outside this range with a clear message; the check
/// here keeps a library caller from reaching governor with a period of
/// zero or of more than `Duration` holds.
pub const RATE_LIMIT_RANGE: std::ops::RangeInclusive<f64> = 0.01..=10_000.0;

/// The governor quota for `rps` requests per second, or a configuration
/// error for a rate that is not a number within [`RATE_LIMIT_RANGE`].
fn rate_quota(rps: f64) -> Result<Quota, ContaboError> {
    if !(rps.is_finite() && RATE_LIMIT_RANGE.contains(&rps)) {
        return Err(ContaboError::Config(format!(
            "rate limit must be between {} and {} requests per second, got {rps}",
            RATE_LIMIT_RANGE.start(),
            RATE_LIMIT_RANGE.end()
        )));
    }
    Duration::try_from_secs_f64(1.0 / rps)
        .ok()
        .and_then(Quota::with_period)
        .map(|q| q.allow_burst(NonZeroU32::MIN))
        .ok_or_else(|| ContaboError::Config(format!("rate limit {rps}/s cannot be kept")))
}

/// What became of an order whose answer was lost.
#[derive(Debug)]
pub enum OrderResolution {
    /// It went through: these are the instances of that name.
    Placed(Vec<Instance>),
    /// Nothing of that name exists: this request may be sent again.
    NotPlaced(CreateInstance),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_outside_the_range_are_refused_not_a_panic() {
        for bad in [
            0.0,
            -1.0,
            1e-300,
            1e300,
            f64::NAN,
            f64::INFINITY,
            0.001,
            20_000.0,
        ] {
            assert!(rate_quota(bad).is_err(), "{bad}");
        }
        for good in [0.01, 0.5, 10.0, 10_000.0] {
            assert!(rate_quota(good).is_ok(), "{good}");
        }
    }
}
