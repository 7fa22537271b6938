//! An independent check of Contabo API traffic against Contabo's published OpenAPI spec.
//!
//! kiwi-infra's Contabo client and the Contabo mock are both written from the spec; if either
//! misreads it, tests that only run them against each other still pass. This module reads the
//! spec itself (`shared/contabo/openapi.yaml`) and checks every request a client sends and every
//! response a server returns, so a disagreement with the spec shows up as a [`Violation`].
//!
//! - [`Spec`] loads the spec, applies the short, documented list of corrections in
//!   [`SPEC_QUIRKS`], and validates [`RequestParts`] and responses.
//! - [`spawn_proxy`] runs a validating HTTP proxy in front of any upstream (the mock, or a
//!   recorded server), and the `spec-proxy` binary does the same from the command line.
//! - [`ProxyConfig::record`] makes the proxy write every exchange as a JSON line ([`Exchange`],
//!   credentials redacted), so a validator that is not this code (`scripts/check_contabo_traffic.py`,
//!   built on the `openapi-core` Python package) checks the same traffic too.
//!
//! Rules the spec leaves open, decided here:
//! - The OAuth token endpoint is not in `paths`; its contract comes from the security scheme's
//!   description (form-encoded `grant_type=password`, `client_id`, `client_secret`, `username`,
//!   `password`; the answer carries `access_token` and `expires_in`).
//! - The spec documents no 4xx/5xx responses, yet Contabo sends them (401, 402, 409, 429, ...).
//!   They are allowed, but a body they carry must be JSON. An undocumented 1xx/2xx/3xx is a
//!   violation.
//! - Paths under `/_mock/` are the mock's control API and are not checked.
//! - Only `date-time` formats are asserted ([`schema::ASSERTED_FORMATS`]); `int32`/`int64` become
//!   range checks; other formats are annotations.
//! - Violation messages never quote an `Authorization` header, a token-endpoint form value, or a
//!   body value in a field whose name suggests a secret.

mod paths;
mod proxy;
mod quirks;
mod record;
mod schema;
mod spec;
mod token;

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

pub use proxy::{spawn_proxy, spawn_proxy_with, ProxyConfig, ProxyError, ProxyHandle};
pub use quirks::{apply_quirks, check_quirks, SpecQuirk, SPEC_QUIRKS};
pub use record::{Body, Exchange, RecordError, REDACTED};
pub use schema::ASSERTED_FORMATS;
pub use spec::{load_document, OperationInfo, Spec, SPEC_ENV_VAR};
pub use token::TOKEN_PATH;

/// Why the spec could not be loaded or understood.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read the Contabo OpenAPI spec at {path}")]
    Read {
        /// The file that was read.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML (or JSON).
    #[error("the Contabo OpenAPI spec at {path} is not valid YAML")]
    Parse {
        /// The file that was parsed.
        path: PathBuf,
        /// The parser's complaint, with line and column.
        #[source]
        source: serde_norway::Error,
    },
    /// The document is YAML but uses something this validator does not understand.
    #[error("the Contabo OpenAPI spec at {pointer}: {message}")]
    Invalid {
        /// JSON pointer to the offending part of the spec.
        pointer: String,
        /// What is wrong with it.
        message: String,
    },
    /// A correction in [`SPEC_QUIRKS`] no longer matches the spec.
    #[error("spec correction at {pointer} is stale: {message}")]
    Quirk {
        /// The correction's JSON pointer.
        pointer: String,
        /// What the spec says now.
        message: String,
    },
}

/// Which message of an exchange broke the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Sent by the client.
    Request,
    /// Returned by the server.
    Response,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Request => "request",
            Self::Response => "response",
        })
    }
}

/// One way a request or response departs from the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Request or response.
    pub direction: Direction,
    /// HTTP method of the exchange.
    pub method: String,
    /// Request path (without query) of the exchange.
    pub path: String,
    /// The spec's `operationId`, when the path and method name one.
    pub operation_id: Option<String>,
    /// Where: `path`, `method`, `status`, `header:<name>`, `query:<name>`, `path:<param>`,
    /// `form:<field>`, or `body:<JSON pointer>` (`body:` is the whole body).
    pub location: String,
    /// What is wrong, without secret values.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.direction, self.method, self.path)?;
        if let Some(id) = &self.operation_id {
            write!(f, " ({id})")?;
        }
        write!(f, " at {}: {}", self.location, self.message)
    }
}

/// The parts of an HTTP request the validator looks at.
///
/// Its `Debug` output hides the `Authorization` header and the body, which may hold secrets.
#[derive(Clone, Default)]
pub struct RequestParts {
    /// HTTP method, any case.
    pub method: String,
    /// Path without the query string, still percent-encoded.
    pub path: String,
    /// Decoded query pairs, in order; a name may repeat.
    pub query: Vec<(String, String)>,
    /// Header names and values; names compare case-insensitively.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, if it was JSON.
    pub body: Option<Value>,
    /// The body as sent (empty when there is none).
    pub raw_body: Vec<u8>,
}

impl fmt::Debug for RequestParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if is_sensitive_header(name) {
                    "***"
                } else {
                    value.as_str()
                };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("RequestParts")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &headers)
            .field("body_bytes", &self.raw_body.len())
            .finish()
    }
}

/// Headers whose values are credentials.
fn is_sensitive_header(name: &str) -> bool {
    [
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
    ]
    .iter()
    .any(|sensitive| name.eq_ignore_ascii_case(sensitive))
}

impl RequestParts {
    /// A request with no query, headers or body.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            ..Self::default()
        }
    }

    /// Builds the parts from what arrived on the wire: `target` is the request target (path and
    /// optional query); a body with a JSON content type is parsed (and left `None` if it does
    /// not parse, which the validator reports).
    pub fn from_http(
        method: &str,
        target: &str,
        headers: Vec<(String, String)>,
        raw_body: Vec<u8>,
    ) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut parts = Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query: paths::parse_pairs(query),
            headers,
            body: None,
            raw_body,
        };
        if is_json_media_type(parts.content_type()) && !parts.raw_body.is_empty() {
            parts.body = serde_json::from_slice(&parts.raw_body).ok();
        }
        parts
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds a query pair.
    #[must_use]
    pub fn with_query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets a JSON body and its `Content-Type`.
    #[must_use]
    pub fn with_json(mut self, body: Value) -> Self {
        self.raw_body = body.to_string().into_bytes();
        self.body = Some(body);
        self.with_header("content-type", "application/json")
    }

    /// Sets a form-encoded body and its `Content-Type`.
    #[must_use]
    pub fn with_form(mut self, fields: &[(&str, &str)]) -> Self {
        let encoded: Vec<String> = fields
            .iter()
            .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
            .collect();
        self.raw_body = encoded.join("&").into_bytes();
        self.body = None;
        self.with_header("content-type", "application/x-www-form-urlencoded")
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// The `Content-Type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// Whether the request carries a body.
    pub fn has_body(&self) -> bool {
        !self.raw_body.is_empty() || self.body.is_some()
    }
}

/// The first value of header `name` in `headers`, by case-insensitive name.
pub fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// The media type without parameters, lower-cased (`application/json; charset=utf-8` →
/// `application/json`).
fn media_essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// `application/json` or any `+json` type.
fn is_json_media_type(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|value| {
        let essence = media_essence(value);
        essence == "application/json" || essence.ends_with("+json")
    })
}

/// Form-encodes one name or value (`application/x-www-form-urlencoded`).
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte))
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_credentials() {
        let parts = RequestParts::new("GET", "/v1/x")
            .with_header("Authorization", "Bearer very-secret")
            .with_form(&[("password", "also-secret")]);
        let shown = format!("{parts:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("also-secret"), "{shown}");
    }

    #[test]
    fn form_encoding_round_trips() {
        let parts = RequestParts::new("POST", "/t").with_form(&[("username", "a b@c+d&e")]);
        let text = String::from_utf8(parts.raw_body).unwrap();
        assert_eq!(
            paths::parse_pairs(&text),
            vec![("username".to_owned(), "a b@c+d&e".to_owned())]
        );
    }
}
