//! How the mock speaks on the wire: Contabo's error body (`{"statusCode", "message"}`), the
//! `data` + `_links` envelope, pagination with its links, and strict parsing of JSON bodies and
//! query strings into 400s that name the offending field.

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable reason.
    pub message: String,
}

impl ApiError {
    /// Any status with a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409 Conflict.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"statusCode": self.status.as_u16(), "message": self.message});
        (self.status, Json(body)).into_response()
    }
}

/// Result of a handler.
pub type ApiResult = Result<Response, ApiError>;

/// `{"data": [..], "_links": {"self": ..}}` with the given status.
pub fn single(status: StatusCode, self_link: &str, items: Vec<Value>) -> Response {
    let body = json!({"data": items, "_links": {"self": self_link}});
    (status, Json(body)).into_response()
}

/// Parses a JSON body into `T`, turning every failure into a 400 that names the field.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("request body is missing"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        // Strip serde_json's position suffix: the field path says more.
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("malformed JSON body: {msg}"))
        } else if path == "." {
            ApiError::bad_request(msg)
        } else {
            ApiError::bad_request(format!("{path}: {msg}"))
        }
    })
}

/// The query string as ordered pairs, decoded.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// From axum's query extractor; a query that cannot even be decoded is a 400.
    pub fn from_query(
        q: Result<Query<Vec<(String, String)>>, QueryRejection>,
    ) -> Result<Self, ApiError> {
        q.map(|Query(v)| Self(v))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
    }

    /// Last value of `name`, ignoring empty values (clients send `?name=` for "no filter").
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// `name` as a positive integer.
    pub fn positive(&self, name: &str) -> Result<Option<u32>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Some(n)),
                _ => Err(ApiError::bad_request(format!(
                    "{name} must be an integer of at least 1, got {v:?}"
                ))),
            },
        }
    }

    /// `orderBy` (`field:asc|desc`, repeatable or comma-separated) for a list whose items have
    /// the JSON fields `fields`; an unknown field or direction is a 400.
    pub fn order_by(&self, fields: &[&str]) -> Result<Vec<(String, bool)>, ApiError> {
        let mut order = Vec::new();
        let values = self
            .0
            .iter()
            .filter(|(k, v)| k == "orderBy" && !v.is_empty())
            .flat_map(|(_, v)| v.split(','));
        for spec in values {
            let (field, direction) = spec.trim().split_once(':').unwrap_or((spec.trim(), "asc"));
            if !fields.contains(&field) {
                return Err(ApiError::bad_request(format!(
                    "orderBy field must be one of {}, got {field:?}",
                    fields.join(", ")
                )));
            }
            let ascending = match direction.to_ascii_lowercase().as_str() {
                "asc" => true,
                "desc" => false,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "orderBy direction must be asc or desc, got {direction:?}"
                    )))
                }
            };
            order.push((field.to_owned(), ascending));
        }
        Ok(order)
    }

    /// `name` as a comma-separated list (empty items dropped).
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        self.get(name).map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }

    /// `name` as a boolean (`true`/`false`).
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::bad_request(format!(
                "{name} must be true or false, got {v:?}"
            ))),
        }
    }

    /// The query string without `page`/`size`, to carry filters into the paging links.
    fn filters(&self) -> String {
        self.0
            .iter()
            .filter(|(k, _)| k != "page" && k != "size")
            .map(|(k, v)| format!("{}={}&", encode(k), encode(v)))
            .collect()
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved characters pass through).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sorts list items (their API JSON) by `order` (from [`Params::order_by`]); stable, so items
/// equal on every field keep their order.
pub fn sort_items(items: &mut [Value], order: &[(String, bool)]) {
    if order.is_empty() {
        return;
    }
    let compare = |a: &Value, b: &Value| match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    };
    items.sort_by(|a, b| {
        order
            .iter()
            .map(|(field, ascending)| {
                let o = compare(&a[field.as_str()], &b[field.as_str()]);
                if *ascending {
                    o
                } else {
                    o.reverse()
                }
            })
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// Which slice of a list a request asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Paging {
    /// 1-based page.
    pub page: u32,
    /// Items per page (after default and cap).
    pub size: u32,
    /// The lies of a hostile Contabo in force (see [`super::Faults`]).
    pub lies: PagingLies,
}

/// How a hostile Contabo misreports paging: `_pagination` numbers sent verbatim instead of the
/// true ones, and pages that hold fewer items than they claim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PagingLies {
    /// Reported `totalPages`.
    pub total_pages: Option<Value>,
    /// Reported `totalElements`.
    pub total_elements: Option<Value>,
    /// Items actually served of each page.
    pub serve_at_most: Option<u32>,
    /// Rows pages after the first are shifted by (see [`super::Faults::page_shift`]).
    pub page_shift: i64,
}

impl Paging {
    /// The page and size a list request asks for (`page` defaults to 1; the
    /// size defaults to and is capped by the mock's settings).
    pub fn requested(params: &Params, shared: &super::shared::Shared) -> Result<Self, ApiError> {
        let (lies, refuse_above) = shared.faults(|f| {
            (
                PagingLies {
                    total_pages: f.faults.total_pages.clone(),
                    total_elements: f.faults.total_elements.clone(),
                    serve_at_most: f.faults.serve_at_most,
                    page_shift: f.faults.page_shift,
                },
                f.faults.refuse_page_size_above,
            )
        });
        let asked = params.positive("size")?;
        if let (Some(asked), Some(limit)) = (asked, refuse_above) {
            if asked > limit {
                return Err(ApiError::bad_request(format!(
                    "size must be at most {limit}, got {asked}"
                )));
            }
        }
        Ok(Self {
            page: params.positive("page")?.unwrap_or(1),
            size: shared.page_size(asked),
            lies,
        })
    }

    /// Serves one page of `items` with `_pagination` and `_links` (first/last always, previous
    /// and next when such pages exist).
    pub fn respond(&self, path: &str, params: &Params, items: Vec<Value>) -> Response {
        let total = items.len() as u64;
        let size = u64::from(self.size);
        let total_pages = total.div_ceil(size);
        let page = u64::from(self.page);
        let shift = if page > 1 { self.lies.page_shift } else { 0 };
        let start = i64::try_from((page - 1) * size)
            .unwrap_or(i64::MAX)
            .saturating_add(shift)
            .max(0);
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let served = self.lies.serve_at_most.unwrap_or(self.size).min(self.size);
        let data: Vec<Value> = items
            .into_iter()
            .skip(start)
            .take(served as usize)
            .collect();
        let filters = params.filters();
        let link = |p: u64| format!("{path}?{filters}size={size}&page={p}");
        let mut links = json!({
            "self": link(page),
            "first": link(1),
            "last": link(total_pages.max(1)),
        });
        if page > 1 {
            links["previous"] = json!(link((page - 1).min(total_pages.max(1))));
        }
        if page < total_pages {
            links["next"] = json!(link(page + 1));
        }
        let lie = |claim: &Option<Value>, truth: u64| claim.clone().unwrap_or_else(|| json!(truth));
        let body = json!({
            "_pagination": {
                "size": size,
                "totalElements": lie(&self.lies.total_elements, total),
                "totalPages": lie(&self.lies.total_pages, total_pages),
                "page": page,
            },
            "data": data,
            "_links": links,
        });
        (StatusCode::OK, Json(body)).into_response()
    }
}

/// Parses an id from a path segment (`{instanceId}` and friends).
pub fn path_id(name: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_request(format!("{name} must be a positive integer, got {raw:?}"))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        period: i64,
        display_name: Option<String>,
    }

    #[test]
    fn body_errors_name_the_field() {
        let e = parse_body::<Req>(b"{}").unwrap_err();
        assert!(e.message.contains("period"), "{}", e.message);
        let e = parse_body::<Req>(br#"{"period": "one"}"#).unwrap_err();
        assert!(e.message.starts_with("period:"), "{}", e.message);
        let e = parse_body::<Req>(b"{\"period\": ").unwrap_err();
        assert!(e.message.starts_with("malformed JSON"), "{}", e.message);
        let e = parse_body::<Req>(b"").unwrap_err();
        assert!(e.message.contains("missing"), "{}", e.message);
    }

    #[test]
    fn query_components_are_encoded() {
        assert_eq!(encode("a b&c/ü"), "a%20b%26c%2F%C3%BC");
    }
}
