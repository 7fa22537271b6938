//! The one retry policy of the Contabo client, for its API requests and its
//! token requests alike (`super::auth`).
//!
//! Retried: 429 (after `Retry-After` when Contabo sends one, else exponential
//! back-off with jitter, for as long as [`RetryPolicy::throttle_patience`]
//! allows: a 429 means nothing was done, so patience costs nothing but
//! time), 500/502/503/504, connection resets and timeouts (at most
//! [`RetryPolicy::max_retries`] times) — but all except 429 only for
//! requests that are safe to repeat. Orders are never retried at all. (500 is included
//! because Contabo's gateway answers it for passing faults; repeating a read
//! or an idempotent write after one is harmless.) A `POST` that creates
//! something is never repeated on an ambiguous failure: the server may have
//! acted on it, and for an order that would buy a second server.

use std::time::Duration;

use backon::ExponentialBuilder;
use reqwest::StatusCode;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// First back-off delay.
    pub min_delay: Duration,
    /// Longest single back-off delay.
    pub max_delay: Duration,
    /// Longest wait a server's `Retry-After` may impose.
    pub max_retry_after: Duration,
    /// How long one request keeps retrying while it is answered 429,
    /// counted from its first attempt.
    pub throttle_patience: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 6,
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            throttle_patience: Duration::from_secs(10 * 60),
        }
    }
}

impl RetryPolicy {
    /// No back-off between attempts, for tests, so they stay fast. A
    /// server's `Retry-After` is still obeyed.
    pub fn immediate(max_retries: usize) -> Self {
        Self {
            max_retries,
            min_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            max_retry_after: Duration::from_secs(120),
            throttle_patience: Duration::from_secs(120),
        }
    }

    /// Delays between retries after passing failures (5xx, resets).
    pub(super) fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter()
    }

    /// Delays between retries after 429s: no count, the caller stops at
    /// [`Self::throttle_patience`].
    pub(super) fn throttle_backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .without_max_times()
            .with_jitter()
    }

    /// The delay to use: the server's `Retry-After` when it gave one (capped),
    /// otherwise back-off's own. `None` from back-off means "give up".
    pub(super) fn delay(
        &self,
        backoff: Option<Duration>,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let planned = backoff?;
        Some(match retry_after {
            Some(asked) => asked.min(self.max_retry_after).max(planned),
            None => planned,
        })
    }
}

/// Whether a request may be sent again after this outcome.
pub(super) fn is_retryable_status(status: StatusCode, idempotent: bool) -> bool {
    match status {
        // The rate limiter refused it: nothing was done, any request may repeat.
        StatusCode::TOO_MANY_REQUESTS => true,
        StatusCode::INTERNAL_SERVER_ERROR
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => idempotent,
        _ => false,
    }
}

/// Parses `Retry-After` in its seconds form; the HTTP-date form is ignored
/// (back-off applies) because clock skew makes it unreliable.
///
/// The header comes from a server (or anything in between), so any text may
/// arrive: `1e300`, `18446744073709551616`, `inf`, `-1`, `NaN`. A number
/// too large for a [`Duration`] saturates (and [`RetryPolicy::delay`] caps
/// it); anything that is not a finite, non-negative number is ignored.
pub(super) fn parse_retry_after(value: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let text = value?.to_str().ok()?.trim();
    let secs: f64 = text.parse().ok()?;
    // Digits too many for an f64 parse as infinity: a huge wait, not `inf`.
    let huge_digits = secs == f64::INFINITY && text.starts_with(|c: char| c.is_ascii_digit());
    if huge_digits {
        return Some(Duration::MAX);
    }
    if !(secs.is_finite() && secs >= 0.0) {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn rate_limited_requests_are_always_retryable_but_5xx_only_when_idempotent() {
        assert!(is_retryable_status(StatusCode::TOO_MANY_REQUESTS, false));
        assert!(is_retryable_status(StatusCode::SERVICE_UNAVAILABLE, true));
        assert!(!is_retryable_status(StatusCode::SERVICE_UNAVAILABLE, false));
        assert!(is_retryable_status(StatusCode::INTERNAL_SERVER_ERROR, true));
        assert!(!is_retryable_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            false
        ));
        assert!(!is_retryable_status(StatusCode::NOT_IMPLEMENTED, true));
        assert!(!is_retryable_status(StatusCode::CONFLICT, true));
    }

    #[test]
    fn retry_after_wins_over_backoff_but_is_capped() {
        let p = RetryPolicy::default();
        let header = HeaderValue::from_static("3");
        let asked = parse_retry_after(Some(&header));
        assert_eq!(asked, Some(Duration::from_secs(3)));
        assert_eq!(
            p.delay(Some(Duration::from_millis(10)), asked),
            Some(Duration::from_secs(3))
        );
        let huge = Some(Duration::from_secs(3600));
        assert_eq!(
            p.delay(Some(Duration::from_millis(10)), huge),
            Some(p.max_retry_after)
        );
        let immediate = RetryPolicy::immediate(3);
        assert_eq!(
            immediate.delay(Some(Duration::ZERO), asked),
            asked,
            "tests obey Retry-After too"
        );
        assert_eq!(
            p.delay(None, asked),
            None,
            "exhausted back-off stops retries"
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("soon"))),
            None
        );
    }

    #[test]
    fn a_huge_retry_after_is_capped_never_a_panic() {
        let p = RetryPolicy::default();
        for huge in [
            "1e300",
            "18446744073709551616",
            "1e19",
            "9".repeat(400).as_str(),
        ] {
            let header = HeaderValue::from_str(huge).unwrap();
            let asked = parse_retry_after(Some(&header));
            assert!(
                asked >= Some(Duration::from_secs(10_000_000_000_000_000_000)),
                "{huge}"
            );
            assert_eq!(
                p.delay(Some(Duration::from_millis(10)), asked),
                Some(p.max_retry_after),
                "{huge}"
            );
        }
        for nonsense in ["inf", "-inf", "NaN", "-1", "-0.5", "1e", "0x10", ""] {
            let header = HeaderValue::from_str(nonsense).unwrap();
            assert_eq!(parse_retry_after(Some(&header)), None, "{nonsense:?}");
        }
        let tiny = HeaderValue::from_static("1e-300");
        assert_eq!(parse_retry_after(Some(&tiny)), Some(Duration::ZERO));
    }
}
