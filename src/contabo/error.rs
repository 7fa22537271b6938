//! Errors of the Contabo layer. Each says which request failed, how Contabo
//! answered and which ids Contabo support needs (`x-request-id`, `x-trace-id`).

use std::time::Duration;

use reqwest::StatusCode;

use super::models::CreateInstance;

/// Where a failed request went and how hard the client tried.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// HTTP method.
    pub method: reqwest::Method,
    /// Path and query, e.g. `/v1/compute/instances?page=2`.
    pub path: String,
    /// The `x-request-id` of the last attempt.
    pub request_id: String,
    /// The run's `x-trace-id`.
    pub trace_id: String,
    /// Attempts made, retries included.
    pub attempts: u32,
    /// Time spent across all attempts.
    pub elapsed: Duration,
}

impl std::fmt::Display for RequestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (x-request-id {}, x-trace-id {}, {} attempt{} in {:.1}s)",
            self.method,
            self.path,
            self.request_id,
            self.trace_id,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.elapsed.as_secs_f64()
        )
    }
}

/// Everything that can go wrong talking to Contabo.
#[derive(Debug, thiserror::Error)]
pub enum ContaboError {
    /// The client was configured wrongly (missing credential, bad URL).
    #[error("Contabo client configuration: {0}")]
    Config(String),

    /// The token endpoint refused the credentials.
    #[error(
        "Contabo refused the API credentials at {url} (HTTP {status}: {reason}); check \
         CNTB_OAUTH2_CLIENT_ID, CNTB_OAUTH2_CLIENT_SECRET, CNTB_OAUTH2_USER and CNTB_OAUTH2_PASS"
    )]
    Credentials {
        /// Token URL.
        url: String,
        /// HTTP status.
        status: StatusCode,
        /// The OAuth error code and description (never the credentials).
        reason: String,
    },

    /// The token endpoint could not be reached or answered nonsense.
    #[error("could not obtain an API token from {url} after {attempts} attempt(s)")]
    TokenTransport {
        /// Token URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Contabo answered with an error status.
    #[error("{context} failed: HTTP {status}: {message}")]
    Api {
        /// The request.
        context: Box<RequestContext>,
        /// The status.
        status: StatusCode,
        /// Contabo's message from the body (or the body's start).
        message: String,
        /// The answer's `Retry-After`, if it had one.
        retry_after: Option<Duration>,
    },

    /// No usable answer: connection refused or reset, timeout.
    #[error("{context} got no response")]
    Transport {
        /// The request.
        context: Box<RequestContext>,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },

    /// The answer did not have the shape the spec promises.
    #[error("{context} returned a body that does not match the Contabo API spec")]
    Decode {
        /// The request.
        context: Box<RequestContext>,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },

    /// A value in an answer that parses as JSON but is not of the form the
    /// spec gives (a private address that is not an IPv4 address, say):
    /// kiwi-infra refuses to act on it rather than guess.
    #[error("Contabo's answer to {path} holds a value kiwi-infra cannot trust: {what}")]
    Untrusted {
        /// The path read.
        path: String,
        /// The field and value (escaped), and what was expected.
        what: String,
    },

    /// A single-resource answer whose `data` array was empty.
    #[error("{method} {path} answered without the resource in `data` (x-trace-id {trace_id})")]
    EmptyAnswer {
        /// HTTP method.
        method: reqwest::Method,
        /// Path and query.
        path: String,
        /// The run's trace id.
        trace_id: String,
    },

    /// A list's `_pagination` did not add up (or the listing took too
    /// long): acting on part of a list could order a slot twice.
    #[error(
        "Contabo's paging of {} cannot be trusted: {} (x-trace-id {})",
        .problem.path,
        .problem.reason,
        .problem.trace_id
    )]
    Paging {
        /// What did not add up, where (boxed: errors travel in `Result`s).
        problem: Box<PagingProblem>,
    },

    /// An order whose answer was lost: it may or may not have been placed.
    /// The only way forward is [`super::ContaboClient::resolve_unconfirmed_order`].
    #[error(
        "the order for {display_name:?} may have been placed: it was not answered with the \
         instance; kiwi-infra looks for it by name and never sends it again on its own"
    )]
    OrderOutcomeUnknown {
        /// The slot name of the order.
        display_name: String,
        /// The order, kept so that a confirmed-absent order can be retried.
        order: Box<UnconfirmedOrder>,
        /// Why the answer is missing.
        #[source]
        cause: Box<ContaboError>,
    },
}

/// Where a list's paging did not add up, and how.
#[derive(Debug, Clone)]
pub struct PagingProblem {
    /// The list's path.
    pub path: String,
    /// The run's trace id.
    pub trace_id: String,
    /// What did not add up.
    pub reason: String,
}

/// An order whose outcome is unknown. It can only be turned back into a
/// request by looking for its instance first, which is what prevents a
/// blind second order.
#[derive(Debug, Clone)]
pub struct UnconfirmedOrder {
    pub(super) request: CreateInstance,
}

impl UnconfirmedOrder {
    /// The slot name the order used.
    pub fn display_name(&self) -> &str {
        &self.request.display_name
    }
}

impl ContaboError {
    /// How long the server asked the client to wait (`Retry-After`), when
    /// its answer said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            Self::OrderOutcomeUnknown { cause, .. } => cause.retry_after(),
            _ => None,
        }
    }

    /// True when the request failed before anything was sent (no token
    /// could be had, or the client is misconfigured): the one place that
    /// decides an order was surely not placed. Every answer from the server,
    /// an error status included, and every transport failure after sending
    /// began leaves an order's outcome unknown.
    pub fn never_sent(&self) -> bool {
        matches!(
            self,
            Self::Credentials { .. } | Self::Config(_) | Self::TokenTransport { .. }
        )
    }

    /// HTTP status, when Contabo answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } | Self::Credentials { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for errors caused by the operator's input or credentials rather
    /// than by Contabo or the network; the CLI maps them to a distinct exit code.
    pub fn is_user_error(&self) -> bool {
        matches!(self, Self::Config(_) | Self::Credentials { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> ContaboError {
        ContaboError::Api {
            context: Box::new(RequestContext {
                method: reqwest::Method::POST,
                path: "/v1/compute/instances".into(),
                request_id: "req".into(),
                trace_id: "trace".into(),
                attempts: 1,
                elapsed: Duration::ZERO,
            }),
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: "x".into(),
            retry_after: None,
        }
    }

    #[test]
    fn only_a_request_that_never_left_is_surely_not_placed() {
        assert!(ContaboError::Config("no API URL".into()).never_sent());
        assert!(ContaboError::Credentials {
            url: "https://auth.example/token".into(),
            status: StatusCode::UNAUTHORIZED,
            reason: "invalid_grant".into(),
        }
        .never_sent());
        assert!(ContaboError::TokenTransport {
            url: "https://auth.example/token".into(),
            attempts: 3,
            source: "connection reset".into(),
        }
        .never_sent());
        // Any answer from the API, a refusal or a throttle included, may
        // come after the order was placed.
        for status in [400, 401, 409, 429, 500, 502, 503, 504] {
            assert!(!answered(status).never_sent(), "HTTP {status}");
        }
    }
}
