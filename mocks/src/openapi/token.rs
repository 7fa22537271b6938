//! The OAuth token endpoint, which the spec describes only in prose.
//!
//! Contabo's security scheme says: `POST .../protocol/openid-connect/token`, form-encoded
//! `grant_type=password`, `client_id`, `client_secret`, `username`, `password`; the answer holds
//! an `access_token`. Every field but `grant_type` is a credential, so no message here ever
//! quotes a value.

use serde_json::Value;

use super::{
    header_value, is_json_media_type, media_essence, paths, Direction, RequestParts, Violation,
};

/// Path of Contabo's token endpoint (on `auth.contabo.com`).
pub const TOKEN_PATH: &str = "/auth/realms/contabo/protocol/openid-connect/token";

/// Stand-in for an `operationId`, so violations say which endpoint they are about.
const TOKEN_OPERATION: &str = "oauth2-token";

/// Form fields the password grant needs.
const REQUIRED_FIELDS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "username",
    "password",
];

fn violation(
    direction: Direction,
    method: &str,
    location: &str,
    message: impl Into<String>,
) -> Violation {
    Violation {
        direction,
        method: method.to_owned(),
        path: TOKEN_PATH.to_owned(),
        operation_id: Some(TOKEN_OPERATION.to_owned()),
        location: location.to_owned(),
        message: message.into(),
    }
}

/// Checks a token request: method, form encoding, the five fields (never their values).
pub fn validate_request(request: &RequestParts) -> Vec<Violation> {
    let method = request.method.to_ascii_uppercase();
    let report =
        |location: &str, message: String| violation(Direction::Request, &method, location, message);
    let mut found = Vec::new();
    if method != "POST" {
        found.push(report(
            "method",
            "the token endpoint only takes POST".to_owned(),
        ));
    }
    if !request.query.is_empty() {
        // Credentials in a URL end up in access logs.
        found.push(report(
            "query",
            "the token request must carry its fields in a form body, not in the query string"
                .to_owned(),
        ));
    }
    let form_encoded = request
        .content_type()
        .is_some_and(|value| media_essence(value) == "application/x-www-form-urlencoded");
    if !form_encoded {
        found.push(report(
            "header:content-type",
            "the token request must be application/x-www-form-urlencoded".to_owned(),
        ));
        return found;
    }

    let fields = paths::parse_pairs(&String::from_utf8_lossy(&request.raw_body));
    for name in REQUIRED_FIELDS {
        let values: Vec<&str> = fields
            .iter()
            .filter(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
            .collect();
        let location = format!("form:{name}");
        match values.as_slice() {
            [] => found.push(report(
                &location,
                format!("required form field `{name}` is missing"),
            )),
            [""] => {
                found.push(report(&location, format!("form field `{name}` is empty")));
            }
            [value] => {
                if *name == "grant_type" && *value != "password" {
                    found.push(report(
                        &location,
                        "grant_type must be `password`".to_owned(),
                    ));
                }
            }
            _ => found.push(report(
                &location,
                format!("form field `{name}` is given more than once"),
            )),
        }
    }
    found
}

/// Checks a token response. 200 must hold `access_token` (string) and `expires_in` (integer);
/// errors are allowed (401 for bad credentials) but must be JSON, which the caller checked.
pub fn validate_response(
    method: &str,
    status: u16,
    headers: &[(String, String)],
    body: Option<&Value>,
) -> Vec<Violation> {
    let method = method.to_ascii_uppercase();
    let report = |location: &str, message: String| {
        violation(Direction::Response, &method, location, message)
    };
    if (400..600).contains(&status) {
        return Vec::new();
    }
    if status != 200 {
        return vec![report(
            "status",
            format!("the token endpoint answers 200 on success, not {status}"),
        )];
    }
    let mut found = Vec::new();
    if !is_json_media_type(header_value(headers, "content-type")) {
        found.push(report(
            "header:content-type",
            "a token response must be application/json".to_owned(),
        ));
    }
    let Some(Value::Object(fields)) = body else {
        found.push(report(
            "body:",
            "a token response must be a JSON object".to_owned(),
        ));
        return found;
    };
    match fields.get("access_token") {
        Some(Value::String(token)) if !token.is_empty() => {}
        Some(Value::String(_)) => found.push(report(
            "body:/access_token",
            "access_token is empty".to_owned(),
        )),
        Some(_) => found.push(report(
            "body:/access_token",
            "access_token must be a string".to_owned(),
        )),
        None => found.push(report(
            "body:/access_token",
            "access_token is missing".to_owned(),
        )),
    }
    match fields.get("expires_in") {
        Some(value) if value.is_i64() || value.is_u64() => {}
        Some(_) => found.push(report(
            "body:/expires_in",
            "expires_in must be an integer (seconds)".to_owned(),
        )),
        None => found.push(report(
            "body:/expires_in",
            "expires_in is missing".to_owned(),
        )),
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good_form() -> Vec<(&'static str, &'static str)> {
        vec![
            ("grant_type", "password"),
            ("client_id", "cid-SECRET1"),
            ("client_secret", "SECRET2"),
            ("username", "ops@example.com"),
            ("password", "SECRET3"),
        ]
    }

    #[test]
    fn a_complete_password_grant_passes() {
        let request = RequestParts::new("POST", TOKEN_PATH).with_form(&good_form());
        assert_eq!(validate_request(&request), vec![]);
    }

    #[test]
    fn missing_and_wrong_fields_are_named_but_values_never_shown() {
        let mut form = good_form();
        form.retain(|(name, _)| *name != "client_secret");
        form[0] = ("grant_type", "client_credentials-SECRET4");
        let request = RequestParts::new("POST", TOKEN_PATH).with_form(&form);
        let found = validate_request(&request);
        let locations: Vec<&str> = found.iter().map(|v| v.location.as_str()).collect();
        assert_eq!(locations, vec!["form:grant_type", "form:client_secret"]);
        let text = format!("{found:?}");
        assert!(!text.contains("SECRET"), "{text}");
    }

    #[test]
    fn json_credentials_are_refused() {
        let request =
            RequestParts::new("POST", TOKEN_PATH).with_json(json!({"password": "SECRET"}));
        let found = validate_request(&request);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].location, "header:content-type");
    }

    #[test]
    fn token_responses_need_a_token_and_a_lifetime() {
        let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        let good = json!({"access_token": "abc", "expires_in": 300, "token_type": "Bearer"});
        assert_eq!(
            validate_response("POST", 200, &headers, Some(&good)),
            vec![]
        );
        let bad = json!({"access_token": 5, "expires_in": "300"});
        let found = validate_response("POST", 200, &headers, Some(&bad));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(validate_response(
            "POST",
            401,
            &headers,
            Some(&json!({"error": "invalid_grant"}))
        )
        .is_empty());
    }
}
