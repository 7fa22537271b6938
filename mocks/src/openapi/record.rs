//! A recording of the traffic the proxy forwards, one JSON line per exchange, so a validator that
//! is not this crate's code (`scripts/check_contabo_traffic.py`, built on `openapi-core`) can check
//! the same traffic against the spec.
//!
//! Each line is an [`Exchange`]. What a validator needs is kept: method, request target (path and
//! query as sent), every header name, header values, bodies. Credentials are not:
//! - `Authorization` keeps its shape but not its value: `Bearer <token>` becomes `Bearer ***`,
//!   anything else becomes `***` (so a malformed header is still malformed in the recording);
//!   `Proxy-Authorization`, `Cookie` and `Set-Cookie` values become `***`.
//! - The token endpoint's form keeps its field names; every value but `grant_type` becomes `***`.
//! - In a JSON body (any endpoint), a string in a field whose name suggests a secret (password,
//!   secret, token, credential, user data, a secret's `value`, access/secret keys) becomes a run of
//!   `*` of the same length, so type and length constraints still check as they would have. Cloud-
//!   init user data holds a host private key, and `POST /v1/secrets` holds key material.
//! - A body that is neither JSON nor the token form is kept as is (text, or base64 when it is not
//!   UTF-8); kiwi-infra sends no such body, and the proxy only runs on loopback, in tests.
//!
//! Lines are written whole and unbuffered as each exchange ends, so a recording read after the
//! proxy stops (or is killed) holds only complete lines.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{is_json_media_type, is_sensitive_header, paths, TOKEN_PATH};

/// What replaces a redacted value.
pub const REDACTED: &str = "***";

/// One forwarded exchange, as written to the recording (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// HTTP method as sent.
    pub method: String,
    /// Request target as sent: path and optional `?query`, still percent-encoded.
    pub target: String,
    /// Request headers in order, names lower-case; credential values redacted.
    pub request_headers: Vec<(String, String)>,
    /// The request body, or `None` when it was empty.
    pub request_body: Option<Body>,
    /// The upstream's status; `None` when the upstream failed and the client saw its connection
    /// closed without an answer.
    pub status: Option<u16>,
    /// Response headers in order, names lower-case; credential values redacted.
    pub response_headers: Vec<(String, String)>,
    /// The response body, or `None` when it was empty or never arrived.
    pub response_body: Option<Body>,
}

/// A message body: text when it is UTF-8, else base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    /// The body as UTF-8 text.
    Text(String),
    /// The body, standard base64 with padding.
    Base64(String),
}

impl Body {
    /// `None` for an empty body.
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() {
            return None;
        }
        Some(match std::str::from_utf8(bytes) {
            Ok(text) => Self::Text(text.to_owned()),
            Err(_) => Self::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        })
    }
}

/// Why the recording could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the traffic recording {path}")]
pub struct RecordError {
    /// The recording's path.
    pub path: PathBuf,
    /// The I/O failure.
    #[source]
    pub source: std::io::Error,
}

/// Appends exchanges to a file, one JSON line each.
#[derive(Debug)]
pub(super) struct Recorder {
    path: PathBuf,
    file: Mutex<File>,
    written: AtomicU64,
    failed: AtomicU64,
}

impl Recorder {
    /// Creates (or truncates) the file at `path`, readable by its owner only.
    pub(super) fn create(path: &Path) -> Result<Self, RecordError> {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(|source| RecordError {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// Writes one exchange as a line. A failure is counted (see [`Recorder::failed`]) and logged,
    /// not returned: the client's exchange must go on unchanged.
    pub(super) fn write(&self, exchange: &Exchange) {
        let result = serde_json::to_vec(exchange)
            .map_err(std::io::Error::other)
            .and_then(|mut line| {
                line.push(b'\n');
                self.file
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .write_all(&line)
            });
        match result {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::SeqCst);
            }
            Err(source) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
                let error = RecordError {
                    path: self.path.clone(),
                    source,
                };
                tracing::warn!(error = %error, cause = %error.source, "exchange not recorded");
            }
        }
    }

    /// Exchanges written so far.
    pub(super) fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Exchanges that could not be written.
    pub(super) fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }
}

/// The parts of an exchange, as the proxy saw them, before redaction.
pub(super) struct Seen<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub request_headers: &'a [(String, String)],
    pub request_body: &'a [u8],
    /// `None` when the upstream failed.
    pub response: Option<SeenResponse<'a>>,
}

/// The upstream's answer, as the proxy saw it.
pub(super) struct SeenResponse<'a> {
    pub status: u16,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Builds the redacted record of an exchange.
pub(super) fn redact(seen: &Seen<'_>) -> Exchange {
    let path = seen.target.split_once('?').map_or(seen.target, |(p, _)| p);
    let is_token = path == TOKEN_PATH;
    let request_body = if is_token {
        redact_form(seen.request_body)
    } else {
        redact_body(seen.request_headers, seen.request_body)
    };
    let (status, response_headers, response_body) = match &seen.response {
        Some(response) => (
            Some(response.status),
            redact_headers(response.headers),
            Body::from_bytes(&redact_body(response.headers, response.body)),
        ),
        None => (None, Vec::new(), None),
    };
    Exchange {
        method: seen.method.to_owned(),
        target: seen.target.to_owned(),
        request_headers: redact_headers(seen.request_headers),
        request_body: Body::from_bytes(&request_body),
        status,
        response_headers,
        response_body,
    }
}

fn redact_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            let value = if name == "authorization" {
                redact_authorization(value)
            } else if is_sensitive_header(&name) {
                REDACTED.to_owned()
            } else {
                value.clone()
            };
            (name, value)
        })
        .collect()
}

/// `<scheme> <credentials>` keeps the scheme; any other shape is replaced whole.
fn redact_authorization(value: &str) -> String {
    let mut words = value.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(scheme), Some(_), None) if scheme.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            format!("{scheme} {REDACTED}")
        }
        _ => REDACTED.to_owned(),
    }
}

/// The token form with every value but `grant_type` replaced; a body that is not a form is
/// replaced whole (it may still be credentials, in another encoding).
fn redact_form(body: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(body) else {
        return REDACTED.as_bytes().to_vec();
    };
    if text.is_empty() {
        return Vec::new();
    }
    paths::parse_pairs(text)
        .into_iter()
        .map(|(name, value)| {
            let shown = if name == "grant_type" {
                super::form_encode(&value)
            } else {
                REDACTED.to_owned()
            };
            format!("{}={shown}", super::form_encode(&name))
        })
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// A JSON body with secret-looking string fields masked; any other body unchanged.
fn redact_body(headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let content_type = super::header_value(headers, "content-type");
    if !is_json_media_type(content_type) || body.is_empty() {
        return body.to_vec();
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        // Not JSON after all: kept as sent, so the validator reports it.
        return body.to_vec();
    };
    if !mask_secret_fields(&mut value) {
        // Nothing masked: keep the bytes exactly as they travelled.
        return body.to_vec();
    }
    serde_json::to_vec(&value).unwrap_or_else(|_| REDACTED.as_bytes().to_vec())
}

/// Field names (lower-cased) whose string values are masked wherever they appear.
const SECRET_FIELDS: &[&str] = &["value", "accesskey", "secretkey"];

/// Substrings of field names (lower-cased) whose string values are masked.
const SECRET_FIELD_PARTS: &[&str] = &["password", "secret", "token", "credential", "userdata"];

fn is_secret_field(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_FIELDS.contains(&lower.as_str())
        || SECRET_FIELD_PARTS.iter().any(|part| lower.contains(part))
}

/// Masks string values of secret-looking fields with `*` of the same length (in characters);
/// returns whether anything was masked.
fn mask_secret_fields(value: &mut Value) -> bool {
    match value {
        Value::Object(fields) => {
            let mut masked = false;
            for (name, field) in fields.iter_mut() {
                match field {
                    Value::String(text) if is_secret_field(name) => {
                        *text = "*".repeat(text.chars().count());
                        masked = true;
                    }
                    other => masked |= mask_secret_fields(other),
                }
            }
            masked
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |masked, item| mask_secret_fields(item) | masked),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn authorization_keeps_its_shape_not_its_value() {
        assert_eq!(redact_authorization("Bearer abc.def"), "Bearer ***");
        assert_eq!(redact_authorization("Bearer"), "***");
        assert_eq!(redact_authorization("Bearer a b"), "***");
        assert_eq!(redact_authorization("abc.def"), "***");
    }

    #[test]
    fn the_token_form_keeps_names_and_grant_type_only() {
        let form =
            b"grant_type=password&client_id=kiwi&client_secret=s3cr%26t&username=u&password=p";
        let text = String::from_utf8(redact_form(form)).unwrap();
        assert_eq!(
            text,
            "grant_type=password&client_id=***&client_secret=***&username=***&password=***"
        );
    }

    #[test]
    fn a_recorded_token_exchange_holds_no_credential() {
        let request_headers = headers(&[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", "Basic Zm9vOmJhcg=="),
        ]);
        let response_headers = headers(&[("content-type", "application/json")]);
        let response =
            br#"{"access_token":"tok-SECRET","refresh_token":"ref-SECRET","expires_in":300}"#;
        let exchange = redact(&Seen {
            method: "POST",
            target: TOKEN_PATH,
            request_headers: &request_headers,
            request_body: b"grant_type=password&client_secret=cs-SECRET&password=pw-SECRET",
            response: Some(SeenResponse {
                status: 200,
                headers: &response_headers,
                body: response,
            }),
        });
        let line = serde_json::to_string(&exchange).unwrap();
        assert!(!line.contains("SECRET"), "{line}");
        assert!(!line.contains("Zm9v"), "{line}");
        assert!(line.contains("expires_in"), "{line}");
    }

    #[test]
    fn secret_json_fields_are_masked_to_the_same_length_and_the_rest_is_kept() {
        let request_headers = headers(&[("content-type", "application/json")]);
        let body = br##"{"displayName":"k3s-1","userData":"#cloud-config\nkey: PRIVATE","sshKeys":[1],"rootPassword":7}"##;
        let exchange = redact(&Seen {
            method: "POST",
            target: "/v1/compute/instances",
            request_headers: &request_headers,
            request_body: body,
            response: None,
        });
        let Some(Body::Text(text)) = exchange.request_body else {
            panic!("expected a text body");
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        assert!(!text.contains("PRIVATE"), "{text}");
        assert_eq!(value["displayName"], "k3s-1");
        assert_eq!(value["rootPassword"], 7);
        assert_eq!(
            value["userData"].as_str().unwrap().len(),
            "#cloud-config\nkey: PRIVATE".len()
        );
        assert_eq!(exchange.status, None);
    }

    #[test]
    fn bodies_without_secrets_travel_byte_for_byte_and_binary_as_base64() {
        assert_eq!(
            redact_body(&headers(&[("content-type", "application/json")]), b"{ }"),
            b"{ }"
        );
        assert_eq!(
            Body::from_bytes(&[0xff, 0x00]),
            Some(Body::Base64("/wA=".to_owned()))
        );
        assert_eq!(Body::from_bytes(b""), None);
    }
}
