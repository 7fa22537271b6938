//! The validator against Contabo's real spec: it accepts what the spec allows and names what it
//! does not. Each test breaks one thing a client or server could get wrong.

#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use kiwi_mocks::openapi::{
    check_quirks, load_document, Direction, RequestParts, Spec, Violation, SPEC_QUIRKS,
};
use serde_json::{json, Value};

fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::load_default().unwrap())
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A request with the headers every Contabo call needs.
fn api_request(method: &str, path: &str) -> RequestParts {
    RequestParts::new(method, path)
        .with_header("Authorization", "Bearer token-value-never-shown")
        .with_header("x-request-id", &request_id())
}

fn json_headers() -> Vec<(String, String)> {
    vec![("Content-Type".to_owned(), "application/json".to_owned())]
}

fn instance() -> Value {
    json!({
        "tenantId": "DE",
        "customerId": "12345",
        "additionalIps": [],
        "name": "vmd12345",
        "displayName": "k3s-server-1",
        "instanceId": 100,
        "dataCenter": "European Union 1",
        "region": "EU",
        "regionName": "European Union",
        "productId": "V92",
        "imageId": "afecbb85-e2fc-46f0-9684-b46b1faf00bb",
        "ipConfig": {
            "v4": {"ip": "192.0.2.10", "netmaskCidr": 22, "gateway": "192.0.2.1"},
            "v6": {"ip": "2001:db8::10", "netmaskCidr": 64, "gateway": "fe80::1"}
        },
        "macAddress": "F2:65:50:F3:63:A1",
        "ramMb": 8192,
        "cpuCores": 4,
        "osType": "Linux",
        "diskMb": 204800,
        "sshKeys": [123],
        "createdDate": "2026-01-02T03:04:05.000Z",
        "cancelDate": "",
        "status": "running",
        "vHostId": 73395,
        "vHostNumber": 1001,
        "vHostName": "m1000",
        "addOns": [],
        "errorMessage": "",
        "productType": "ssd",
        "productName": "VPS 2",
        "defaultUser": "admin"
    })
}

fn instance_list(instances: Vec<Value>) -> Value {
    let count = instances.len();
    json!({
        "_pagination": {"page": 1, "size": 10, "totalElements": count, "totalPages": 1},
        "data": instances,
        "_links": {"first": "/v1/compute/instances?page=1", "self": "/v1/compute/instances?page=1",
                   "last": "/v1/compute/instances?page=1"}
    })
}

fn list_response(body: &Value) -> Vec<Violation> {
    spec().validate_response(
        "GET",
        "/v1/compute/instances",
        200,
        &json_headers(),
        Some(body),
    )
}

#[test]
fn the_real_spec_loads_and_every_schema_compiles() {
    let spec = spec();
    assert_eq!(spec.operations().len(), 90, "the spec has 90 operations");
    let compiled = spec.compile_all().unwrap();
    assert!(compiled > 500, "only {compiled} schemas compiled");
}

#[test]
fn spec_quirks_still_match_the_spec() {
    // If Contabo fixes or changes one of these spots, this fails and the correction is reviewed.
    let raw = load_document(&Spec::default_path()).unwrap();
    check_quirks(&raw, SPEC_QUIRKS).unwrap();
    assert_eq!(
        SPEC_QUIRKS.len(),
        2,
        "update the report of spec quirks when this list changes"
    );
}

#[test]
fn a_correct_instance_list_passes() {
    assert_eq!(
        list_response(&instance_list(vec![instance(), instance()])),
        vec![]
    );
}

#[test]
fn a_missing_required_field_is_named() {
    let mut broken = instance();
    broken.as_object_mut().unwrap().remove("productType");
    let found = list_response(&instance_list(vec![instance(), broken]));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].direction, Direction::Response);
    assert_eq!(
        found[0].operation_id.as_deref(),
        Some("retrieveInstancesList")
    );
    assert_eq!(found[0].location, "body:/data/1");
    assert!(found[0].message.contains("productType"), "{}", found[0]);
}

#[test]
fn a_missing_pagination_is_named() {
    let mut body = instance_list(vec![instance()]);
    body.as_object_mut().unwrap().remove("_pagination");
    let found = list_response(&body);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].message.contains("_pagination"), "{}", found[0]);
}

#[test]
fn a_status_outside_the_documented_enum_is_reported() {
    let mut odd = instance();
    odd["status"] = json!("booting");
    let found = list_response(&instance_list(vec![odd]));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].location, "body:/data/0/status");
    assert!(found[0].message.contains("booting"), "{}", found[0]);
}

#[test]
fn a_wrong_type_and_a_bad_timestamp_are_reported() {
    let mut odd = instance();
    odd["instanceId"] = json!("100");
    odd["createdDate"] = json!("03.01.2026");
    let found = list_response(&instance_list(vec![odd]));
    let locations: Vec<&str> = found.iter().map(|v| v.location.as_str()).collect();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        locations.contains(&"body:/data/0/instanceId"),
        "{locations:?}"
    );
    assert!(
        locations.contains(&"body:/data/0/createdDate"),
        "{locations:?}"
    );
}

#[test]
fn cancel_date_accepts_what_contabo_sends_and_rejects_other_shapes() {
    for accepted in ["", "2026-12-31"] {
        let mut cancelled = instance();
        cancelled["cancelDate"] = json!(accepted);
        assert_eq!(
            list_response(&instance_list(vec![cancelled])),
            vec![],
            "{accepted:?}"
        );
    }
    for rejected in ["31.12.2026", "2026-12-31T00:00:00Z"] {
        let mut cancelled = instance();
        cancelled["cancelDate"] = json!(rejected);
        let found = list_response(&instance_list(vec![cancelled]));
        assert!(!found.is_empty(), "{rejected:?} was accepted");
        assert!(
            found
                .iter()
                .all(|v| v.location == "body:/data/0/cancelDate"),
            "{found:#?}"
        );
    }
}

#[test]
fn a_good_create_request_passes() {
    let request = api_request("POST", "/v1/compute/instances").with_json(json!({
        "productId": "V92", "region": "EU", "period": 1, "displayName": "k3s-server-1",
        "sshKeys": [123], "userData": "#cloud-config\n", "defaultUser": "admin"
    }));
    assert_eq!(spec().validate_request(&request), vec![]);
}

#[test]
fn a_create_request_without_period_fails() {
    let request = api_request("POST", "/v1/compute/instances")
        .with_json(json!({"productId": "V92", "region": "EU"}));
    let found = spec().validate_request(&request);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].direction, Direction::Request);
    assert_eq!(found[0].operation_id.as_deref(), Some("createInstance"));
    assert!(found[0].message.contains("period"), "{}", found[0]);
}

#[test]
fn a_create_request_with_an_unknown_region_or_long_name_fails() {
    let request = api_request("POST", "/v1/compute/instances").with_json(json!({
        "period": 1, "region": "Germany", "displayName": "x".repeat(256)
    }));
    let found = spec().validate_request(&request);
    let locations: Vec<&str> = found.iter().map(|v| v.location.as_str()).collect();
    assert_eq!(locations.len(), 2, "{found:#?}");
    assert!(locations.contains(&"body:/region"));
    assert!(locations.contains(&"body:/displayName"));
}

#[test]
fn a_create_request_without_a_body_fails() {
    let found = spec().validate_request(&api_request("POST", "/v1/compute/instances"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].location, "body:");
}

#[test]
fn a_body_that_is_not_json_fails() {
    let mut request = api_request("POST", "/v1/compute/instances")
        .with_header("content-type", "application/json");
    request.raw_body = b"{period: 1".to_vec();
    let found = spec().validate_request(&request);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].message.contains("not valid JSON"), "{}", found[0]);
}

/// Issue 14: kiwi-infra sent `{}` with `POST /v1/tags/{tagId}/assignments/...`, whose operation
/// defines no request body. Any body there, even an empty JSON object, is refused, on every
/// operation that defines none.
#[test]
fn a_json_body_on_an_operation_without_a_request_body_fails() {
    for (method, path, operation) in [
        (
            "POST",
            "/v1/tags/1/assignments/instance/2",
            "createAssignment",
        ),
        (
            "DELETE",
            "/v1/tags/1/assignments/instance/2",
            "deleteAssignment",
        ),
        ("GET", "/v1/compute/instances", "retrieveInstancesList"),
    ] {
        for body in [json!({}), json!(null), json!([])] {
            let found = spec().validate_request(&api_request(method, path).with_json(body.clone()));
            assert_eq!(found.len(), 1, "{method} {path} {body}: {found:#?}");
            assert_eq!(found[0].location, "body:");
            assert_eq!(found[0].operation_id.as_deref(), Some(operation));
        }
    }
    // A body with no Content-Type at all is still a body.
    let mut request = api_request("POST", "/v1/tags/1/assignments/instance/2");
    request.raw_body = b"{}".to_vec();
    let found = spec().validate_request(&request);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].location, "body:");
}

#[test]
fn an_undeclared_x_header_fails_and_declared_ones_in_any_case_pass() {
    let request = api_request("GET", "/v1/compute/instances")
        .with_header("X-Trace-Id", "run-1")
        .with_header("x-idempotency-key", "secret-looking-value")
        .with_header("X-Idempotency-Key", "again");
    let found = spec().validate_request(&request);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].location, "header:x-idempotency-key");
    assert!(!found[0].message.contains("secret-looking-value"));
    // Standard headers are not parameters in OpenAPI.
    let request = api_request("GET", "/v1/compute/instances")
        .with_header("accept", "application/json")
        .with_header("user-agent", "kiwi-infra/0.1");
    assert_eq!(spec().validate_request(&request), vec![]);
}

#[test]
fn a_request_without_x_request_id_fails() {
    let request = RequestParts::new("GET", "/v1/compute/instances")
        .with_header("Authorization", "Bearer abc");
    let found = spec().validate_request(&request);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].location, "header:x-request-id");
}

#[test]
fn a_malformed_x_request_id_fails_and_a_uuid_v4_in_any_case_passes() {
    for malformed in ["42", "not-a-uuid", "51a87ecd-754e-7104-9c54-d01ad0f83406"] {
        let request = RequestParts::new("GET", "/v1/compute/instances")
            .with_header("Authorization", "Bearer abc")
            .with_header("x-request-id", malformed);
        let found = spec().validate_request(&request);
        assert_eq!(found.len(), 1, "{malformed}: {found:#?}");
        assert_eq!(found[0].location, "header:x-request-id");
    }
    let upper = request_id().to_uppercase();
    let request = RequestParts::new("GET", "/v1/compute/instances")
        .with_header("authorization", "Bearer abc")
        .with_header("X-Request-Id", &upper);
    assert_eq!(spec().validate_request(&request), vec![]);
}

#[test]
fn a_request_without_a_bearer_token_fails_without_quoting_it() {
    let request = RequestParts::new("GET", "/v1/compute/instances")
        .with_header("Authorization", "Basic c2VjcmV0LXZhbHVl")
        .with_header("x-request-id", &request_id());
    let found = spec().validate_request(&request);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].location, "header:authorization");
    assert!(
        !found[0].to_string().contains("c2VjcmV0LXZhbHVl"),
        "{}",
        found[0]
    );
}

#[test]
fn an_unknown_path_fails() {
    let found = spec().validate_request(&api_request("GET", "/v1/compute/servers"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].location, "path");
    assert_eq!(found[0].operation_id, None);
}

#[test]
fn an_undeclared_method_fails() {
    let found = spec().validate_request(&api_request("DELETE", "/v1/compute/instances/12"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].location, "method");
}

#[test]
fn literal_path_segments_win_over_templates() {
    let spec = spec();
    let cases = [
        (
            "GET",
            "/v1/compute/instances/audits",
            "retrieveInstancesAuditsList",
        ),
        ("GET", "/v1/compute/instances/12", "retrieveInstance"),
        (
            "GET",
            "/v1/compute/instances/actions/audits",
            "retrieveInstancesActionsAuditsList",
        ),
        ("POST", "/v1/compute/instances/12/cancel", "cancelInstance"),
        ("GET", "/v1/users/client", "retrieveUserClient"),
        (
            "GET",
            "/v1/tags/assignments/audits",
            "retrieveAssignmentsAuditsList",
        ),
        ("GET", "/v1/tags/7/assignments", "retrieveAssignmentList"),
    ];
    for (method, path, expected) in cases {
        assert_eq!(
            spec.operation_id(method, path),
            Some(expected),
            "{method} {path}"
        );
    }
    // And the audit list is checked as the audit list: no instanceId type error.
    assert_eq!(
        spec.validate_request(&api_request("GET", "/v1/compute/instances/audits")),
        vec![]
    );
}

#[test]
fn path_parameters_are_typed() {
    let found = spec().validate_request(&api_request("GET", "/v1/compute/instances/web-1"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].location, "path:instanceId");
    let found = spec().validate_request(&api_request("POST", "/v1/vips/10.0.0.1/servers/12"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].location, "path:resourceType");
}

#[test]
fn query_parameters_are_coerced_and_checked() {
    let good = api_request("GET", "/v1/compute/instances")
        .with_query("page", "2")
        .with_query("size", "50")
        .with_query("orderBy", "name:asc")
        .with_query("orderBy", "displayName:desc")
        .with_query("status", "running")
        .with_query("ipConfig", "true");
    assert_eq!(spec().validate_request(&good), vec![]);

    let bad = api_request("GET", "/v1/compute/instances")
        .with_query("page", "two")
        .with_query("status", "booting")
        .with_query("ipConfig", "yes")
        .with_query("tag", "k3s");
    let found = spec().validate_request(&bad);
    let mut locations: Vec<&str> = found.iter().map(|v| v.location.as_str()).collect();
    locations.sort_unstable();
    assert_eq!(
        locations,
        vec!["query:ipConfig", "query:page", "query:status", "query:tag"],
        "{found:#?}"
    );
}

#[test]
fn the_cancel_call_as_kiwi_infra_makes_it_passes() {
    let request = api_request("POST", "/v1/compute/instances/12/cancel").with_json(json!({}));
    assert_eq!(spec().validate_request(&request), vec![]);
}

#[test]
fn responses_with_undocumented_success_statuses_fail_but_errors_pass() {
    let spec = spec();
    let body = instance_list(vec![instance()]);
    let found = spec.validate_response(
        "GET",
        "/v1/compute/instances",
        201,
        &json_headers(),
        Some(&body),
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].location, "status");

    let error = json!({"statusCode": 429, "message": "Too Many Requests"});
    for status in [401, 402, 404, 409, 429, 500, 503] {
        let found = spec.validate_response(
            "GET",
            "/v1/compute/instances",
            status,
            &json_headers(),
            Some(&error),
        );
        assert_eq!(found, vec![], "{status}");
    }
    let found = spec.validate_response_bytes(
        "GET",
        "/v1/compute/instances",
        502,
        &[],
        b"<html>Bad Gateway</html>",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].message.contains("not JSON"), "{}", found[0]);
}

#[test]
fn no_content_responses_must_be_empty_and_json_ones_must_say_so() {
    let spec = spec();
    assert_eq!(
        spec.validate_response_bytes("DELETE", "/v1/tags/7", 204, &[], b""),
        vec![]
    );
    let found = spec.validate_response(
        "DELETE",
        "/v1/tags/7",
        204,
        &json_headers(),
        Some(&json!({})),
    );
    assert_eq!(found.len(), 1, "{found:#?}");

    let body = instance_list(vec![instance()]);
    let text = vec![("content-type".to_owned(), "text/plain".to_owned())];
    let found = spec.validate_response("GET", "/v1/compute/instances", 200, &text, Some(&body));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].location, "header:content-type");
}

#[test]
fn secret_values_never_appear_in_violations() {
    let request = api_request("POST", "/v1/secrets").with_json(json!({
        "name": "k3s-join", "type": "password", "value": "Sh0rt!"
    }));
    let found = spec().validate_request(&request);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].location, "body:/value");
    assert!(!found[0].to_string().contains("Sh0rt!"), "{}", found[0]);
}

#[test]
fn the_token_endpoint_is_checked_from_the_security_scheme() {
    let path = kiwi_mocks::openapi::TOKEN_PATH;
    let good = RequestParts::new("POST", path).with_form(&[
        ("grant_type", "password"),
        ("client_id", "id"),
        ("client_secret", "cs-VALUE"),
        ("username", "ops@example.com"),
        ("password", "pw-VALUE"),
    ]);
    assert_eq!(spec().validate_request(&good), vec![]);
    let bad = RequestParts::new("POST", path)
        .with_form(&[("grant_type", "password"), ("password", "pw-VALUE")]);
    let found = spec().validate_request(&bad);
    let locations: Vec<&str> = found.iter().map(|v| v.location.as_str()).collect();
    assert_eq!(
        locations,
        vec!["form:client_id", "form:client_secret", "form:username"]
    );
    assert!(found.iter().all(|v| !v.to_string().contains("VALUE")));

    let token = json!({"access_token": "a.b.c", "expires_in": 300, "token_type": "Bearer"});
    assert_eq!(
        spec().validate_response("POST", path, 200, &json_headers(), Some(&token)),
        vec![]
    );
    let found = spec().validate_response(
        "POST",
        path,
        200,
        &json_headers(),
        Some(&json!({"expires_in": 300})),
    );
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[test]
fn mock_control_paths_are_ignored() {
    let request = RequestParts::new("POST", "/_mock/faults").with_json(json!({"anything": true}));
    assert_eq!(spec().validate_request(&request), vec![]);
    assert_eq!(
        spec().validate_response_bytes("GET", "/_mock/state", 200, &[], b"not json"),
        vec![]
    );
}

#[test]
fn violations_read_as_a_sentence() {
    let found = spec().validate_request(&api_request("GET", "/v1/compute/instances/web-1"));
    let text = found[0].to_string();
    assert!(
        text.starts_with(
            "request GET /v1/compute/instances/web-1 (retrieveInstance) at path:instanceId: "
        ),
        "{text}"
    );
}
