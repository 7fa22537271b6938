//! The Contabo mock's API as a client sees it: tokens, request checks, validation, the instance
//! life, paging, filters, tags, cancellation, product holds, private networks, and conformance of
//! every answer with the official spec (through the independent validating proxy).

#![allow(clippy::unwrap_used)]

mod api_support;

use std::time::Duration;

use api_support::{fast, login, login_via, token_response};
use chrono::{Months, NaiveDate, Utc};
use kiwi_mocks::contabo::{self, InstanceEvent, MockConfig};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Next event for `id` with `status`, skipping others. Bounded so a broken mock fails, not hangs.
async fn wait_for(
    events: &mut broadcast::Receiver<InstanceEvent>,
    id: i64,
    status: &str,
) -> InstanceEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = events.recv().await.unwrap();
            if e.instance_id == id && e.status == status {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("instance {id} never reached {status}"))
}

#[tokio::test]
async fn token_endpoint_accepts_the_sandbox_account_only() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let http = Client::new();
    let base = mock.base_url();
    let c = mock.credentials();

    let ok = token_response(&http, &base, &mock, &c.password, &c.client_id).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert!(body["access_token"].as_str().unwrap().len() >= 32);

    let bad_user = token_response(&http, &base, &mock, "wrong-password", &c.client_id).await;
    assert_eq!(bad_user.status(), StatusCode::UNAUTHORIZED);
    let body: Value = bad_user.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "Invalid user credentials");

    let bad_client = token_response(&http, &base, &mock, &c.password, "someone-else").await;
    assert_eq!(bad_client.status(), StatusCode::UNAUTHORIZED);
    let body: Value = bad_client.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn v1_needs_a_live_bearer_token() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    let url = format!("{}/v1/compute/instances", mock.base_url());
    let rid = "04e0f898-37b4-48bc-a794-1a57abe6aa31";

    let missing = api
        .http
        .get(&url)
        .header("x-request-id", rid)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["statusCode"], 401);

    let forged = api
        .http
        .get(&url)
        .bearer_auth("not-a-token")
        .header("x-request-id", rid)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(api.get("/v1/compute/instances").await.0, StatusCode::OK);
    // Revoked through the control API: the same token is now refused.
    let revoke = api
        .http
        .post(format!("{}/_mock/tokens/revoke", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        api.get("/v1/compute/instances").await.0,
        StatusCode::UNAUTHORIZED
    );

    // A new login works again; revoking through the handle has the same effect.
    let api = login(&mock).await;
    assert_eq!(api.get("/v1/compute/instances").await.0, StatusCode::OK);
    mock.revoke_tokens();
    assert_eq!(
        api.get("/v1/compute/instances").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn tokens_expire_after_their_ttl() {
    let mock = contabo::spawn(MockConfig {
        token_ttl: Duration::from_millis(50),
        ..fast()
    })
    .await
    .unwrap();
    let api = login(&mock).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    let (status, body) = api.get("/v1/compute/instances").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["statusCode"], 401);
}

#[tokio::test]
async fn x_request_id_is_required_checked_and_echoed() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    let url = format!("{}/v1/compute/instances", mock.base_url());

    let missing = api
        .http
        .get(&url)
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let body: Value = missing.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("x-request-id"));

    for bad in [
        "12345",
        "04e0f898-37b4-78bc-a794-1a57abe6aa31",
        "04e0f898-37b4-48bc-c794-1a57abe6aa31",
    ] {
        let resp = api
            .http
            .get(&url)
            .bearer_auth(&api.token)
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(resp.headers()["x-request-id"], bad);
    }

    let rid = "51A87ECD-754E-4104-9C54-D01AD0F83406";
    let ok = api
        .http
        .get(&url)
        .bearer_auth(&api.token)
        .header("x-request-id", rid)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["x-request-id"], rid);

    let unknown = api
        .http
        .get(format!("{}/v1/no-such-thing", mock.base_url()))
        .bearer_auth(&api.token)
        .header("x-request-id", rid)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.headers()["x-request-id"], rid);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["statusCode"], 404);
}

#[tokio::test]
async fn orders_that_break_the_schema_are_refused_and_not_placed() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    let long_name = "x".repeat(256);
    let cases = [
        (json!({"productId": "V92"}), "period"),
        (json!({"period": 2}), "period"),
        (json!({"period": "1"}), "period"),
        (
            json!({"period": 1, "displayName": long_name}),
            "displayName",
        ),
        (json!({"period": 1, "region": "MARS"}), "region"),
        (json!({"period": 1, "productId": "V1"}), "productId"),
        (json!({"period": 1, "productId": 92}), "productId"),
        (
            json!({"period": 1, "imageId": "00000000-0000-4000-8000-000000000000"}),
            "imageId",
        ),
        (json!({"period": 1, "sshKeys": [424242]}), "sshKeys"),
        (json!({"period": 1, "sshKeys": "key"}), "sshKeys"),
        (json!({"period": 1, "defaultUser": "ubuntu"}), "defaultUser"),
        (json!({"period": 1, "displayname": "typo"}), "displayname"),
    ];
    for (body, field) in cases {
        let (status, resp) = api.post("/v1/compute/instances", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {resp}");
        assert_eq!(resp["statusCode"], 400);
        let message = resp["message"].as_str().unwrap();
        assert!(
            message.contains(field),
            "{body}: message {message:?} should name {field}"
        );
    }
    let malformed = api
        .request(Method::POST, "/v1/compute/instances")
        .header("content-type", "application/json")
        .body("{\"period\": 1,")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert!(
        mock.instances().is_empty(),
        "a refused order must not be placed"
    );
    assert_eq!(mock.stats().instances_created, 0);
}

#[tokio::test]
async fn an_order_installs_and_runs_with_its_keys_and_user_data() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    let mut events = mock.events();
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockKeyForTests kiwi@test";
    let (status, secret) = api
        .post(
            "/v1/secrets",
            json!({"name": "kiwi", "type": "ssh", "value": key}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let secret_id = secret["data"][0]["secretId"].as_i64().unwrap();

    let user_data = "#cloud-config\npackages: [curl]\n";
    let id = api
        .order(json!({
            "period": 1, "productId": "V94", "region": "EU", "displayName": "k3s-a-cp-1",
            "imageId": "d64d5c6c-9dda-4e38-8174-0ee282474d8a", "sshKeys": [secret_id],
            "userData": user_data, "defaultUser": "root",
        }))
        .await;

    let provisioning = wait_for(&mut events, id, "provisioning").await;
    assert_eq!(provisioning.display_name, "k3s-a-cp-1");
    wait_for(&mut events, id, "installing").await;
    let running = wait_for(&mut events, id, "running").await;
    assert_eq!(running.user_data.as_deref(), Some(user_data));
    assert_eq!(running.ssh_keys, vec![key.to_owned()]);
    assert_eq!(running.ssh_key_ids, vec![secret_id]);
    assert_eq!(running.default_user, "root");
    assert!(running.ip.is_loopback());

    let (status, body) = api.get(&format!("/v1/compute/instances/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let i = &body["data"][0];
    assert_eq!(i["status"], "running");
    assert_eq!(i["name"], format!("vmi{id}"));
    assert_eq!(i["ipConfig"]["v4"]["ip"], running.ip.to_string());
    assert_eq!(i["productName"], "VPS 20 NVMe");
    assert_eq!(i["productType"], "nvme");
    assert_eq!(i["cpuCores"], 6);
    assert_eq!(i["sshKeys"], json!([secret_id]));
    assert_eq!(i["cancelDate"], "");
    assert_eq!(i["dataCenter"], "European Union 1");

    // The control API exposes what the public API hides.
    let internal: Value = api
        .http
        .get(format!("{}/_mock/instances/{id}", mock.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(internal["userData"], user_data);

    // Reinstall: new user data, back through installing to running, and no new order.
    let new_data = "#cloud-config\nruncmd: [reboot]\n";
    let (status, body) = api
        .call(Method::PUT, &format!("/v1/compute/instances/{id}"), Some(json!({
            "imageId": "66abf39a-ba6b-4b0c-8b83-5b5e2e3bb7d8", "userData": new_data, "sshKeys": [secret_id],
        })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"][0]["instanceId"], id);
    wait_for(&mut events, id, "installing").await;
    let rerun = wait_for(&mut events, id, "running").await;
    assert_eq!(rerun.user_data.as_deref(), Some(new_data));
    assert_eq!(rerun.ip, running.ip, "a reinstall keeps the address");
    assert_eq!(mock.instances().len(), 1);
    assert_eq!(
        mock.instance(id).unwrap().image_id,
        "66abf39a-ba6b-4b0c-8b83-5b5e2e3bb7d8"
    );

    // A second order gets another address.
    let other = api.order(json!({"period": 1})).await;
    assert_ne!(mock.instance(other).unwrap().ipv4, running.ip);
}

#[tokio::test]
async fn instance_lists_page_through_in_id_order() {
    let mock = contabo::spawn(MockConfig {
        max_page_size: 20,
        ..fast()
    })
    .await
    .unwrap();
    let api = login(&mock).await;
    let mut ordered = Vec::new();
    for n in 0..25 {
        ordered.push(
            api.order(json!({"period": 1, "displayName": format!("node-{n}")}))
                .await,
        );
    }

    let mut seen = Vec::new();
    for page in 1..=3 {
        let (status, body) = api
            .get(&format!("/v1/compute/instances?size=10&page={page}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body["_pagination"],
            json!({"page": page, "size": 10, "totalElements": 25, "totalPages": 3})
        );
        let links = &body["_links"];
        assert_eq!(
            links["self"],
            format!("/v1/compute/instances?size=10&page={page}")
        );
        assert_eq!(links["first"], "/v1/compute/instances?size=10&page=1");
        assert_eq!(links["last"], "/v1/compute/instances?size=10&page=3");
        assert_eq!(links.get("previous").is_some(), page > 1, "{links}");
        assert_eq!(links.get("next").is_some(), page < 3, "{links}");
        if page < 3 {
            assert_eq!(
                links["next"],
                format!("/v1/compute/instances?size=10&page={}", page + 1)
            );
        }
        let items = body["data"].as_array().unwrap();
        assert_eq!(items.len(), if page < 3 { 10 } else { 5 });
        seen.extend(items.iter().map(|i| i["instanceId"].as_i64().unwrap()));
    }
    assert_eq!(seen, ordered, "every instance once, ascending by id");

    // Default size, the cap, and a page past the end.
    let (_, body) = api.get("/v1/compute/instances").await;
    assert_eq!(body["_pagination"]["size"], 10);
    assert_eq!(body["data"].as_array().unwrap().len(), 10);
    let (_, body) = api.get("/v1/compute/instances?size=500").await;
    assert_eq!(body["_pagination"]["size"], 20);
    assert_eq!(body["_pagination"]["totalPages"], 2);
    let (_, body) = api.get("/v1/compute/instances?size=10&page=4").await;
    assert_eq!(body["data"], json!([]));
    assert_eq!(
        api.get("/v1/compute/instances?page=0").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.get("/v1/compute/instances?size=ten").await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn instance_filters_narrow_the_list() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    let a = api
        .order(json!({"period": 1, "displayName": "k3s-a-cp-1", "productId": "V94"}))
        .await;
    let b = api
        .order(json!({"period": 1, "displayName": "k3s-a-cp-10", "productId": "V9"}))
        .await;
    let c = api
        .order(json!({"period": 1, "displayName": "other", "productId": "V9", "region": "US-east"}))
        .await;

    let ids = |body: &Value| -> Vec<i64> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["instanceId"].as_i64().unwrap())
            .collect()
    };
    let (_, body) = api
        .get("/v1/compute/instances?displayName=k3s-a-cp-1")
        .await;
    assert_eq!(ids(&body), vec![a], "displayName is an exact match");
    assert_eq!(
        body["_links"]["self"],
        "/v1/compute/instances?displayName=k3s-a-cp-1&size=10&page=1"
    );
    let (_, body) = api.get("/v1/compute/instances?productIds=V9").await;
    assert_eq!(ids(&body), vec![b, c]);
    let (_, body) = api.get("/v1/compute/instances?region=US-east").await;
    assert_eq!(ids(&body), vec![c]);
    let (_, body) = api
        .get(&format!("/v1/compute/instances?instanceIds={a},{c}"))
        .await;
    assert_eq!(ids(&body), vec![a, c]);
    let (_, body) = api.get("/v1/compute/instances?search=k3s-a").await;
    assert_eq!(ids(&body), vec![a, b]);
    let (_, body) = api.get(&format!("/v1/compute/instances?name=vmi{b}")).await;
    assert_eq!(ids(&body), vec![b]);

    mock.set_instance_status(c, "stopped").unwrap();
    let (_, body) = api.get("/v1/compute/instances?status=stopped,error").await;
    assert_eq!(ids(&body), vec![c]);
    assert_eq!(
        api.get("/v1/compute/instances?status=sleeping").await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn tags_are_created_once_and_assigned_to_existing_instances() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    let id = api
        .order(json!({"period": 1, "displayName": "k3s-a-w-1"}))
        .await;

    let (status, body) = api
        .post(
            "/v1/tags",
            json!({"name": "cluster:k3s-a", "color": "#0A78C3"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let tag = body["data"][0]["tagId"].as_i64().unwrap();
    let (status, _) = api
        .post(
            "/v1/tags",
            json!({"name": "cluster:k3s-a", "color": "#0A78C3"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = api.post("/v1/tags", json!({"name": "no-colour"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("color"));

    let assignment = format!("/v1/tags/{tag}/assignments/instance/{id}");
    let (status, body) = api.call(Method::POST, &assignment, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["_links"]["_resource"],
        format!("/v1/compute/instances/{id}")
    );
    assert_eq!(
        api.call(Method::POST, &assignment, None).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        api.call(
            Method::POST,
            &format!("/v1/tags/{tag}/assignments/instance/999"),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(
            Method::POST,
            &format!("/v1/tags/9/assignments/instance/{id}"),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    let (status, body) = api
        .get(&format!("/v1/tags/{tag}/assignments?resourceType=instance"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["_pagination"]["totalElements"], 1);
    let a = &body["data"][0];
    assert_eq!(a["resourceId"], id.to_string());
    assert_eq!(a["resourceName"], "k3s-a-w-1");
    assert_eq!(a["tagName"], "cluster:k3s-a");
    let (_, body) = api
        .get(&format!("/v1/tags/{tag}/assignments?resourceType=image"))
        .await;
    assert_eq!(body["_pagination"]["totalElements"], 0);

    let (_, body) = api.get("/v1/tags?name=cluster:k3s-a").await;
    assert_eq!(body["data"][0]["tagId"], tag);

    assert_eq!(
        api.call(Method::DELETE, &assignment, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.get(&assignment).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cancelling_sets_the_end_of_the_contract_period_once() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    let quarterly = api.order(json!({"period": 3})).await;
    let explicit = api.order(json!({"period": 1})).await;
    let kept = api.order(json!({"period": 1})).await;

    let (status, body) = api
        .post(
            &format!("/v1/compute/instances/{quarterly}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let today = Utc::now().date_naive();
    let expected = today
        .checked_add_months(Months::new(3))
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(body["data"][0]["cancelDate"], expected);
    let (_, body) = api.get(&format!("/v1/compute/instances/{quarterly}")).await;
    assert_eq!(body["data"][0]["cancelDate"], expected);

    let date = today.checked_add_months(Months::new(2)).unwrap();
    let (status, body) = api
        .post(
            &format!("/v1/compute/instances/{explicit}/cancel"),
            json!({"cancelDate": format!("{date}T00:00:00Z")}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"][0]["cancelDate"], date.to_string());

    let (status, body) = api
        .post(
            &format!("/v1/compute/instances/{quarterly}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "cancelling twice: {body}");
    let past = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
    let (status, _) = api
        .post(
            &format!("/v1/compute/instances/{kept}/cancel"),
            json!({"cancelDate": past.to_string()}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        api.post("/v1/compute/instances/999/cancel", json!({}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    let (_, body) = api.get(&format!("/v1/compute/instances/{kept}")).await;
    assert_eq!(body["data"][0]["cancelDate"], "");
}

#[tokio::test]
async fn unavailable_products_hold_orders_until_the_hold_is_lifted() {
    let mut config = fast();
    config
        .product_statuses
        .insert("V9".into(), "product_not_available".into());
    let mock = contabo::spawn(config).await.unwrap();
    let api = login(&mock).await;
    let mut events = mock.events();

    let held = api.order(json!({"period": 1, "productId": "V9"})).await;
    let (_, body) = api.get(&format!("/v1/compute/instances/{held}")).await;
    assert_eq!(body["data"][0]["status"], "product_not_available");

    // Another order running proves the ticker has passed over the held one.
    let free = api.order(json!({"period": 1, "productId": "V10"})).await;
    wait_for(&mut events, free, "running").await;
    assert_eq!(mock.instance(held).unwrap().status, "product_not_available");

    // Changed at run time through the control API: new V10 orders go to manual provisioning.
    let resp = api
        .http
        .put(format!("{}/_mock/products/V10/status", mock.base_url()))
        .json(&json!({"status": "manual_provisioning"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let manual = api.order(json!({"period": 1, "productId": "V10"})).await;
    assert_eq!(mock.instance(manual).unwrap().status, "manual_provisioning");

    mock.set_product_status("V9", None).unwrap();
    wait_for(&mut events, held, "running").await;
    assert!(mock.set_product_status("V9", Some("running")).is_err());
}

#[tokio::test]
async fn private_networks_need_the_paid_add_on() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    let plain = api.order(json!({"period": 1})).await;
    let with_addon = api
        .order(json!({"period": 1, "addOns": {"privateNetworking": {}}}))
        .await;

    let (status, body) = api
        .post(
            "/v1/private-networks",
            json!({"name": "k3s-a", "region": "EU"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let net = body["data"][0]["privateNetworkId"].as_i64().unwrap();

    let (status, body) = api
        .call(
            Method::POST,
            &format!("/v1/private-networks/{net}/instances/{plain}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/v1/private-networks/{net}/instances/{with_addon}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, body) = api.get(&format!("/v1/private-networks/{net}")).await;
    let members = body["data"][0]["instances"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["instanceId"], with_addon);
    assert_eq!(members[0]["status"], "reinstall");
}

#[tokio::test]
async fn images_and_secrets_are_listed_and_checked() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    let (_, body) = api.get("/v1/compute/images?name=ubuntu-24.04").await;
    assert_eq!(
        body["data"][0]["imageId"],
        "d64d5c6c-9dda-4e38-8174-0ee282474d8a"
    );
    let (_, body) = api.get("/v1/compute/images?size=2").await;
    assert_eq!(body["_pagination"]["totalElements"], 5);
    assert_eq!(body["_pagination"]["totalPages"], 3);
    assert_eq!(
        api.get("/v1/compute/images/not-an-image").await.0,
        StatusCode::NOT_FOUND
    );

    let (status, body) = api
        .post(
            "/v1/secrets",
            json!({"name": "pw", "type": "password", "value": "short"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("value"));
    let (status, _) = api
        .post(
            "/v1/secrets",
            json!({"name": "pw", "type": "token", "value": "long enough"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = api
        .post(
            "/v1/secrets",
            json!({"name": "pw", "type": "password", "value": "long enough"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["data"][0]["secretId"].as_i64().unwrap();
    let (_, body) = api.get("/v1/secrets?type=password").await;
    assert_eq!(body["data"][0]["value"], "long enough");
    // A password secret is no SSH key.
    let (status, _) = api
        .post(
            "/v1/compute/instances",
            json!({"period": 1, "sshKeys": [id]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        api.call(Method::DELETE, &format!("/v1/secrets/{id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get(&format!("/v1/secrets/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
}

/// Every exchange of a typical run, checked by the independent validator in front of the mock.
#[tokio::test]
async fn answers_conform_to_the_official_spec() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let proxy = kiwi_mocks::openapi::spawn_proxy(&mock.base_url())
        .await
        .unwrap();
    let api = login_via(&mock, proxy.base_url()).await;
    let mut events = mock.events();

    let (_, s) = api
        .post(
            "/v1/secrets",
            json!({"name": "key", "type": "ssh", "value": "ssh-ed25519 AAAAC3Nza kiwi"}),
        )
        .await;
    let secret = s["data"][0]["secretId"].as_i64().unwrap();
    let id = api.order(json!({"period": 1, "productId": "V94", "displayName": "a", "sshKeys": [secret], "userData": "#cloud-config\n"})).await;
    let other = api
        .order(json!({"period": 12, "productId": "V9", "addOns": {"privateNetworking": {}}}))
        .await;
    wait_for(&mut events, id, "running").await;
    api.get("/v1/compute/instances?size=1&page=2").await;
    api.get(&format!("/v1/compute/instances/{id}")).await;
    api.call(
        Method::PATCH,
        &format!("/v1/compute/instances/{id}"),
        Some(json!({"displayName": "b"})),
    )
    .await;
    api.call(
        Method::PUT,
        &format!("/v1/compute/instances/{id}"),
        Some(json!({"imageId": "afecbb85-e2fc-46f0-9684-b46b1faf00bb", "sshKeys": [secret]})),
    )
    .await;
    api.post(&format!("/v1/compute/instances/{other}/cancel"), json!({}))
        .await;
    api.get(&format!("/v1/compute/instances/{other}")).await;
    api.get("/v1/compute/images").await;
    api.get("/v1/compute/images/afecbb85-e2fc-46f0-9684-b46b1faf00bb")
        .await;
    api.get("/v1/secrets").await;
    api.get(&format!("/v1/secrets/{secret}")).await;
    let (_, t) = api
        .post("/v1/tags", json!({"name": "cluster:a", "color": "#0A78C3"}))
        .await;
    let tag = t["data"][0]["tagId"].as_i64().unwrap();
    api.get("/v1/tags").await;
    api.get(&format!("/v1/tags/{tag}")).await;
    api.call(
        Method::POST,
        &format!("/v1/tags/{tag}/assignments/instance/{id}"),
        None,
    )
    .await;
    api.get(&format!("/v1/tags/{tag}/assignments")).await;
    api.get(&format!("/v1/tags/{tag}/assignments/instance/{id}"))
        .await;
    let (_, n) = api
        .post("/v1/private-networks", json!({"name": "net"}))
        .await;
    let net = n["data"][0]["privateNetworkId"].as_i64().unwrap();
    api.call(
        Method::POST,
        &format!("/v1/private-networks/{net}/instances/{other}"),
        None,
    )
    .await;
    api.get("/v1/private-networks").await;
    api.get(&format!("/v1/private-networks/{net}")).await;
    // Error answers are checked too (JSON bodies).
    api.get("/v1/compute/instances/1").await;
    api.post("/v1/tags", json!({"name": "cluster:a", "color": "#0A78C3"}))
        .await;
    api.call(
        Method::DELETE,
        &format!("/v1/tags/{tag}/assignments/instance/{id}"),
        None,
    )
    .await;
    api.call(Method::DELETE, &format!("/v1/tags/{tag}"), None)
        .await;
    api.call(Method::DELETE, &format!("/v1/secrets/{secret}"), None)
        .await;

    let (requests, responses) = proxy.checked();
    assert!(
        requests >= 25 && responses >= 25,
        "the proxy saw the traffic: {requests}/{responses}"
    );
    let violations: Vec<String> = proxy.violations().iter().map(ToString::to_string).collect();
    assert!(
        violations.is_empty(),
        "spec violations:\n{}",
        violations.join("\n")
    );
}

#[tokio::test]
async fn tag_names_filter_as_a_substring_and_lists_follow_order_by() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    for name in ["kiwi-managed", "KIWI-upper", "not-kiwi-x", "web"] {
        let (status, body) = api
            .post("/v1/tags", json!({"name": name, "color": "#0A78C3"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, body) = api.get("/v1/tags?name=kiwi-&orderBy=name:desc").await;
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["not-kiwi-x", "kiwi-managed", "KIWI-upper"]);
    let (status, _) = api.get("/v1/tags?orderBy=colour:asc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.get("/v1/compute/instances?orderBy=name:sideways").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
