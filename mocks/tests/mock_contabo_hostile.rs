//! The hostile Contabo: the mock's knobs that make it lie with numbers (`Retry-After`,
//! `expires_in`, `_pagination`), each sent verbatim, and off by default.

#![allow(clippy::unwrap_used)]

mod api_support;

use api_support::{fast, login, token_response};
use kiwi_mocks::contabo::{self, Faults};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn the_hostile_knobs_are_off_by_default() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let faults = mock.faults();
    assert_eq!(faults, Faults::default());
    assert_eq!(faults.retry_after_secs, None);
    assert_eq!(faults.token_expires_in, None);
    assert_eq!(faults.total_pages, None);
    assert_eq!(faults.total_elements, None);
    assert_eq!(faults.serve_at_most, None);
    let api = login(&mock).await;
    let (status, body) = api.get("/v1/compute/images?size=2").await;
    assert_eq!(status, StatusCode::OK);
    let total = body["_pagination"]["totalElements"].as_u64().unwrap();
    assert_eq!(body["_pagination"]["totalPages"], json!(total.div_ceil(2)));
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn retry_after_is_sent_verbatim_whatever_it_says() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    for text in ["1e300", "18446744073709551616", "inf", "-1", "soon"] {
        let (status, _) = api
            .control(
                Method::PUT,
                "/_mock/faults",
                Some(json!({"throttleRate": 1.0, "retryAfterSecs": text})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let resp = api
            .request(Method::GET, "/v1/compute/instances")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()["retry-after"], text);
    }
    let (status, body) = api
        .control(
            Method::PUT,
            "/_mock/faults",
            Some(json!({"retryAfterSecs": "line\nbreak"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn the_token_lifetime_is_announced_verbatim_and_the_token_still_works() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let http = Client::new();
    let c = mock.credentials();
    for claim in [
        json!(1e300),
        json!(0),
        json!(-5),
        json!("soon"),
        json!(u64::MAX),
    ] {
        mock.set_faults(Faults {
            token_expires_in: Some(claim.clone()),
            ..Faults::default()
        })
        .unwrap();
        let resp = token_response(&http, &mock.base_url(), &mock, &c.password, &c.client_id).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["expires_in"], claim);
    }
    // The lie is only told: `login` gets a token that /v1 accepts.
    let api = login(&mock).await;
    assert_eq!(api.get("/v1/tags").await.0, StatusCode::OK);
}

#[tokio::test]
async fn pagination_can_lie_about_pages_elements_and_page_contents() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    let honest = api.get("/v1/compute/images?size=4&page=1").await.1;
    let total = honest["_pagination"]["totalElements"].as_u64().unwrap();
    assert!(total > 4, "the catalogue has more than one page of images");

    mock.set_faults(Faults {
        total_pages: Some(json!(1e300)),
        total_elements: Some(json!(-7)),
        serve_at_most: Some(1),
        ..Faults::default()
    })
    .unwrap();
    let (status, body) = api.get("/v1/compute/images?size=4&page=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["_pagination"]["totalPages"], json!(1e300));
    assert_eq!(body["_pagination"]["totalElements"], json!(-7));
    assert_eq!(body["_pagination"]["size"], json!(4));
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    // Page 2 starts where a page of 4 would end: items 2-4 were never served.
    let second = api.get("/v1/compute/images?size=4&page=2").await.1;
    assert_eq!(second["data"][0], honest_item(&api, 4).await);
}

/// The `index`th image (0-based) of the honest, unpaged list.
async fn honest_item(api: &api_support::Api, index: usize) -> Value {
    let (_, body) = api
        .control(
            Method::PUT,
            "/_mock/faults",
            Some(json!({"serveAtMost": null})),
        )
        .await;
    assert!(body["serveAtMost"].is_null(), "{body}");
    let all = api.get("/v1/compute/images?size=100").await.1;
    all["data"][index].clone()
}
