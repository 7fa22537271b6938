//! A typed client for Contabo's public API (`shared/contabo/openapi.yaml`).
//!
//! One request pipeline ([`ContaboClient`]) paces requests with a shared rate
//! limit, authenticates with a cached OAuth2 token, tags every request with a
//! fresh `x-request-id` and the run's `x-trace-id`, pages through lists, and
//! retries only what is safe to retry ([`retry`]). Orders are never retried
//! blindly: see [`ContaboClient::create_instance`].
//!
//! For unit tests, `fake` (compiled in tests only) keeps a stateful fake
//! account behind the same [`CloudApi`] seam.

mod api;
mod auth;
mod client;
mod error;
#[cfg(test)]
pub(crate) mod fake;
pub mod models;
mod pace;
pub mod paging;
pub mod retry;

pub use api::CloudApi;
pub use auth::Credentials;
pub use client::{
    ClientConfig, ContaboClient, InstanceFilter, OrderResolution, DEFAULT_API_URL,
    DEFAULT_AUTH_URL, IDS_PER_REQUEST, RATE_LIMIT_RANGE,
};
pub use error::{ContaboError, PagingProblem, RequestContext, UnconfirmedOrder};
pub use retry::RetryPolicy;
