//! The Contabo client against the Contabo mock, with the independent spec
//! validator in between: every request and response of every test is checked
//! against `shared/contabo/openapi.yaml`, and each test ends by asserting that
//! the validator found nothing.

#![allow(clippy::unwrap_used)]

use crate::apply_support;

use std::time::Duration;

use kiwi_infra::contabo::models::{CreateInstance, Period, Region};
use kiwi_infra::contabo::{
    ClientConfig, ContaboClient, ContaboError, Credentials, InstanceFilter, OrderResolution,
    RetryPolicy,
};
use kiwi_infra::secret::Secret;
use kiwi_mocks::contabo::{spawn, Faults, MockConfig, MockHandle};
use kiwi_mocks::openapi::{spawn_proxy, ProxyHandle};

const UBUNTU: &str = "ubuntu-24.04";

struct Rig {
    mock: MockHandle,
    proxy: ProxyHandle,
}

impl Rig {
    async fn start(config: MockConfig) -> Self {
        let mock = spawn(config).await.unwrap();
        let proxy = spawn_proxy(&mock.base_url()).await.unwrap();
        Self { mock, proxy }
    }

    fn config(&self) -> ClientConfig {
        let c = self.mock.credentials();
        let mut config = ClientConfig::new(Credentials {
            client_id: c.client_id,
            client_secret: Secret::new(c.client_secret),
            username: c.username,
            password: Secret::new(c.password),
        });
        config.api_url = self.proxy.base_url().to_string();
        config.auth_url = format!(
            "{}/auth/realms/contabo/protocol/openid-connect/token",
            self.proxy.base_url()
        );
        config.requests_per_second = 1000.0;
        config.retry = RetryPolicy::immediate(8);
        config.request_timeout = Duration::from_secs(10);
        config
    }

    fn client(&self) -> ContaboClient {
        ContaboClient::new(self.config()).unwrap()
    }

    async fn image_id(&self, client: &ContaboClient) -> String {
        client.find_images_by_name(UBUNTU).await.unwrap()[0]
            .image_id
            .clone()
    }

    fn assert_spec_clean(&self) {
        let violations = self.proxy.violations();
        assert!(
            violations.is_empty(),
            "spec violations:\n{}",
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
        let (requests, responses) = self.proxy.checked();
        assert!(
            requests > 0 && responses > 0,
            "the validator saw no traffic"
        );
    }
}

fn order(name: &str, image_id: &str) -> CreateInstance {
    CreateInstance {
        product_id: "V94".into(),
        region: Region::Eu,
        image_id: image_id.into(),
        period: Period::OneMonth,
        display_name: name.into(),
        ssh_keys: vec![],
        user_data: Some(Secret::new("#cloud-config\n{}\n".into())),
        default_user: None,
        add_ons: None,
    }
}

fn quick_mock() -> MockConfig {
    MockConfig {
        provisioning_delay: Duration::from_millis(10),
        installing_delay: Duration::from_millis(10),
        ..MockConfig::default()
    }
}

#[tokio::test]
async fn lists_gather_every_page_in_order() {
    let rig = Rig::start(quick_mock()).await;
    let mut config = rig.config();
    config.page_size = 10;
    let client = ContaboClient::new(config).unwrap();
    let image = rig.image_id(&client).await;
    for n in 1..=25 {
        client
            .create_instance(order(&format!("kiwi-test-pool-{n:02}"), &image))
            .await
            .unwrap();
    }
    rig.mock.reset_stats();

    let all = client
        .list_instances(&InstanceFilter::default())
        .await
        .unwrap();

    let names: Vec<_> = all.iter().map(|i| i.display_name.clone()).collect();
    let expected: Vec<_> = (1..=25).map(|n| format!("kiwi-test-pool-{n:02}")).collect();
    assert_eq!(names, expected);
    let stats = rig.mock.stats();
    assert_eq!(
        stats.requests_by_route.get("GET /v1/compute/instances"),
        Some(&3),
        "25 instances at 10 a page are 3 requests: {stats:?}"
    );
    rig.assert_spec_clean();
}

#[tokio::test]
async fn a_revoked_token_is_renewed_once_and_the_call_succeeds() {
    let rig = Rig::start(quick_mock()).await;
    let client = rig.client();
    client.list_tags().await.unwrap();
    assert_eq!(rig.mock.stats().tokens_issued, 1);
    client.list_tags().await.unwrap();
    assert_eq!(rig.mock.stats().tokens_issued, 1, "the token is cached");

    rig.mock.revoke_tokens();
    client.list_tags().await.unwrap();

    assert_eq!(rig.mock.stats().tokens_issued, 2);
    rig.assert_spec_clean();
}

#[tokio::test]
async fn a_token_about_to_expire_is_renewed_before_use() {
    let rig = Rig::start(MockConfig {
        token_ttl: Duration::from_secs(1),
        ..quick_mock()
    })
    .await;
    let client = rig.client();
    client.list_tags().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.list_tags().await.unwrap();
    let stats = rig.mock.stats();
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(
        stats.requests_total, 2,
        "no request was sent with the expired token (it would have been a 401 and a retry)"
    );
}

#[tokio::test]
async fn wrong_credentials_are_a_user_error_that_never_shows_the_password() {
    let rig = Rig::start(quick_mock()).await;
    let mut config = rig.config();
    config.credentials.password = Secret::new("canary-password-9f2".into());
    let err = ContaboClient::new(config)
        .unwrap()
        .list_tags()
        .await
        .unwrap_err();
    assert!(matches!(err, ContaboError::Credentials { .. }), "{err:?}");
    assert!(err.is_user_error());
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("CNTB_OAUTH2_PASS"), "{shown}");
    assert!(!shown.contains("canary-password-9f2"), "{shown}");
}

#[tokio::test]
async fn rate_limited_requests_wait_for_retry_after_and_succeed() {
    let rig = Rig::start(MockConfig {
        faults: Faults {
            rate_limit_rps: Some(4.0),
            rate_burst: 1,
            ..Faults::default()
        },
        ..quick_mock()
    })
    .await;
    let client = rig.client();
    for _ in 0..4 {
        client.list_tags().await.unwrap();
    }
    let stats = rig.mock.stats();
    assert!(
        stats.rate_limited > 0,
        "the client outpaced the mock, so 429s were expected: {stats:?}"
    );
    rig.assert_spec_clean();
}

#[tokio::test]
async fn reads_survive_injected_503s() {
    let rig = Rig::start(MockConfig {
        faults: Faults {
            error_rate: 0.5,
            ..Faults::default()
        },
        seed: 7,
        ..quick_mock()
    })
    .await;
    let client = rig.client();
    for _ in 0..10 {
        client.list_tags().await.unwrap();
    }
    assert!(rig.mock.stats().injected_errors > 0);
    rig.assert_spec_clean();
}

#[tokio::test]
async fn an_order_whose_response_was_dropped_is_not_sent_again() {
    let rig = Rig::start(quick_mock()).await;
    let client = rig.client();
    let image = rig.image_id(&client).await;
    rig.mock
        .set_faults(Faults {
            drop_create_responses: 1,
            ..Faults::default()
        })
        .unwrap();

    let err = client
        .create_instance(order("kiwi-acme-agents-01", &image))
        .await
        .unwrap_err();

    let ContaboError::OrderOutcomeUnknown { order, .. } = err else {
        panic!("expected an unknown outcome, got {err:?}");
    };
    let stats = rig.mock.stats();
    assert_eq!(stats.instances_created, 1);
    assert_eq!(
        stats.requests_by_route.get("POST /v1/compute/instances"),
        Some(&1),
        "the order was sent exactly once"
    );
    match client.resolve_unconfirmed_order(*order).await.unwrap() {
        OrderResolution::Placed(found) => {
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].display_name, "kiwi-acme-agents-01");
        }
        OrderResolution::NotPlaced(_) => panic!("the mock placed the order"),
    }
    assert_eq!(rig.mock.instances().len(), 1);
    rig.assert_spec_clean();
}

#[tokio::test]
async fn an_order_answered_with_503_is_looked_up_before_a_second_attempt() {
    let rig = Rig::start(quick_mock()).await;
    let client = rig.client();
    let image = rig.image_id(&client).await;
    rig.mock
        .set_faults(Faults {
            error_rate: 1.0,
            ..Faults::default()
        })
        .unwrap();

    let err = client
        .create_instance(order("kiwi-acme-agents-02", &image))
        .await
        .unwrap_err();
    let ContaboError::OrderOutcomeUnknown { order, .. } = err else {
        panic!("expected an unknown outcome, got {err:?}");
    };
    assert_eq!(
        rig.mock
            .stats()
            .requests_by_route
            .get("POST /v1/compute/instances"),
        Some(&1),
        "a 503 on an order is not retried blindly"
    );

    rig.mock.set_faults(Faults::default()).unwrap();
    let OrderResolution::NotPlaced(again) = client.resolve_unconfirmed_order(*order).await.unwrap()
    else {
        panic!("the 503 was injected before the order was placed");
    };
    client.create_instance(again).await.unwrap();
    assert_eq!(rig.mock.instances().len(), 1);
    rig.assert_spec_clean();
}

#[tokio::test]
async fn twenty_concurrent_callers_share_one_rate_limit() {
    let rig = Rig::start(MockConfig {
        faults: Faults {
            rate_limit_rps: Some(20.0),
            rate_burst: 2,
            ..Faults::default()
        },
        ..quick_mock()
    })
    .await;
    let mut config = rig.config();
    config.requests_per_second = 20.0;
    let client = ContaboClient::new(config).unwrap();
    client.list_tags().await.unwrap(); // token fetched outside the measured burst

    let callers: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    client.list_tags().await.unwrap();
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }

    let stats = rig.mock.stats();
    assert_eq!(stats.requests_total, 61);
    assert_eq!(
        stats.rate_limited, 0,
        "the client paced itself: no request was refused"
    );
    rig.assert_spec_clean();
}

#[tokio::test]
async fn a_rejected_order_is_an_unknown_outcome_that_names_the_field_and_the_request_id() {
    let rig = Rig::start(quick_mock()).await;
    let client = rig.client();
    let image = rig.image_id(&client).await;
    let mut bad = order("kiwi-acme-agents-03", &image);
    bad.product_id = "V999".into();

    let outer = client.create_instance(bad).await.unwrap_err();
    // Even a 400 does not prove that nothing was placed (a proxy may answer
    // it after the fact): only a look-up settles an order.
    let ContaboError::OrderOutcomeUnknown { cause, .. } = &outer else {
        panic!("expected an unknown outcome, got {outer:?}");
    };
    let err = cause.as_ref();
    let ContaboError::Api {
        status,
        context,
        message,
        ..
    } = err
    else {
        panic!("expected an API error, got {err:?}");
    };
    assert_eq!(
        rig.mock
            .stats()
            .requests_by_route
            .get("POST /v1/compute/instances"),
        Some(&1),
        "sent once"
    );
    assert_eq!(status.as_u16(), 400);
    assert!(message.contains("V999"), "{message}");
    assert!(uuid::Uuid::parse_str(&context.request_id).is_ok());
    let shown = err.to_string();
    assert!(shown.contains(&context.request_id), "{shown}");
    assert!(shown.contains(client.trace_id()), "{shown}");
    assert!(shown.contains("POST /v1/compute/instances"), "{shown}");
    assert!(rig.mock.instances().is_empty());
    rig.assert_spec_clean();
}

/// The error as the operator could ever see it: message, causes and `Debug`.
fn everything_shown(err: &ContaboError) -> String {
    let mut shown = format!(
        "{err:?}\n{}",
        kiwi_infra::secret::redact::error_chain(err, "\n")
    );
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        shown.push_str(&format!("\n{cause}"));
        source = cause.source();
    }
    shown
}

#[tokio::test]
async fn a_server_echoing_requests_in_errors_stays_in_the_spec_and_its_echo_holds_no_secret() {
    let rig = Rig::start(quick_mock()).await;
    let client = rig.client();
    let image = rig.image_id(&client).await;
    rig.mock
        .set_faults(Faults {
            error_rate: 1.0,
            echo_request_in_errors: true,
            ..Faults::default()
        })
        .unwrap();
    let token = rig.mock.issued_tokens().pop().unwrap();

    // A read: every attempt answered 500/503 with the bearer token quoted.
    let err = client.list_tags().await.unwrap_err();
    let shown = everything_shown(&err);
    assert!(shown.contains("the request was: GET /v1/tags"), "{shown}");
    assert!(shown.contains("authorization: Bearer ***"), "{shown}");
    assert!(!shown.contains(&token), "{shown}");

    // An order: the answer quotes the body, whose user data starts with a
    // host private key.
    let key_line = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW";
    let mut with_key = order("kiwi-acme-agents-01", &image);
    with_key.user_data = Some(Secret::new(format!(
        "#cloud-config\nssh_keys:\n  ed25519_private: |\n    \
         -----BEGIN OPENSSH PRIVATE KEY-----\n    {key_line}\n    \
         -----END OPENSSH PRIVATE KEY-----\n"
    )));
    let err = client.create_instance(with_key).await.unwrap_err();
    assert!(
        matches!(err, ContaboError::OrderOutcomeUnknown { .. }),
        "{err:?}"
    );
    let shown = everything_shown(&err);
    assert!(
        shown.contains("the request was: POST /v1/compute/instances"),
        "{shown}"
    );
    assert!(
        shown.contains("\"userData\":\"***"),
        "the echo reached the user data, masked: {shown}"
    );
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    assert!(!shown.contains(&key_line[..24]), "{shown}");
    assert!(!shown.contains(&token), "{shown}");

    // The token endpoint quotes its form when it refuses it.
    let mut config = rig.config();
    config.credentials.password = Secret::new("canary-echoed-password/7e1".into());
    let err = ContaboClient::new(config)
        .unwrap()
        .list_tags()
        .await
        .unwrap_err();
    let shown = everything_shown(&err);
    assert!(shown.contains("the request was: POST"), "{shown}");
    assert!(!shown.contains("canary-echoed-password"), "{shown}");
    assert!(!shown.contains("canary-echoed-password%2F7e1"), "{shown}");
    rig.assert_spec_clean();
}

/// `count` instances named `kiwi-page-NNN`, ordered through `client`.
async fn fill(rig: &Rig, client: &ContaboClient, count: usize) -> Vec<i64> {
    let image = rig.image_id(client).await;
    let mut ids = Vec::new();
    for n in 1..=count {
        let created = client
            .create_instance(order(&format!("kiwi-page-{n:03}"), &image))
            .await
            .unwrap();
        ids.push(created.instance_id.0);
    }
    ids
}

fn instance_list_requests(mock: &MockHandle) -> u64 {
    mock.stats()
        .requests_by_route
        .get("GET /v1/compute/instances")
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_server_capped_at_100_a_page_is_followed_at_the_size_it_serves() {
    // The mock serves at most 100 a page; the client asks 1,000 (its default).
    let rig = Rig::start(quick_mock()).await;
    let client = rig.client();
    fill(&rig, &client, 250).await;
    rig.mock.reset_stats();
    let all = client
        .list_instances(&InstanceFilter::default())
        .await
        .unwrap();
    let ids: std::collections::BTreeSet<_> = all.iter().map(|i| i.instance_id).collect();
    assert_eq!((all.len(), ids.len()), (250, 250), "missing or doubled");
    assert_eq!(instance_list_requests(&rig.mock), 3);
    rig.assert_spec_clean();
}

#[tokio::test]
async fn a_refused_page_size_falls_back_to_100_once_for_the_whole_run() {
    let rig = Rig::start(MockConfig {
        max_page_size: 1000,
        ..quick_mock()
    })
    .await;
    let client = rig.client();
    fill(&rig, &client, 250).await;
    rig.mock
        .set_faults(Faults {
            refuse_page_size_above: Some(100),
            ..Faults::default()
        })
        .unwrap();
    rig.mock.reset_stats();
    let all = client
        .list_instances(&InstanceFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 250);
    // One refused request, then 3 pages of 100.
    assert_eq!(instance_list_requests(&rig.mock), 4);
    let again = client
        .list_instances(&InstanceFilter::default())
        .await
        .unwrap();
    assert_eq!(again.len(), 250);
    assert_eq!(
        instance_list_requests(&rig.mock),
        7,
        "asked 100 from then on"
    );
}

#[tokio::test]
async fn rows_skipped_or_repeated_between_pages_are_read_again_then_refused() {
    let rig = Rig::start(quick_mock()).await;
    let client = rig.client();
    fill(&rig, &client, 250).await;
    for shift in [1, -1, 7, -50] {
        rig.mock
            .set_faults(Faults {
                page_shift: shift,
                ..Faults::default()
            })
            .unwrap();
        // Requests of the previous read that were cut short land first.
        tokio::time::sleep(Duration::from_millis(200)).await;
        rig.mock.reset_stats();
        let err = client
            .list_instances(&InstanceFilter::default())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ContaboError::Paging { .. }),
            "shift {shift}: {text}"
        );
        assert!(text.contains("read 3 times"), "shift {shift}: {text}");
        // Each read stops at the first page that does not add up.
        let requests = instance_list_requests(&rig.mock);
        assert!(requests <= 9, "shift {shift}: {requests} requests");
    }
}

#[tokio::test]
async fn a_list_that_changes_once_while_read_is_read_again_and_used() {
    let rig = Rig::start(quick_mock()).await;
    let client = rig.client();
    fill(&rig, &client, 250).await;
    // The first read's page 2 is shifted; the second read is whole.
    rig.mock
        .set_faults(Faults {
            page_shift: 1,
            ..Faults::default()
        })
        .unwrap();
    let mock_faults = rig.mock.faults();
    let filter = InstanceFilter::default();
    let listing = client.list_instances(&filter);
    let heal = async {
        // Let the first read's three pages arrive, then heal.
        while instance_list_requests(&rig.mock) < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        rig.mock
            .set_faults(Faults {
                page_shift: 0,
                ..mock_faults
            })
            .unwrap();
    };
    rig.mock.reset_stats();
    let (all, ()) = tokio::join!(listing, heal);
    let all = all.unwrap();
    assert_eq!(all.len(), 250);
    assert!(
        instance_list_requests(&rig.mock) >= 4,
        "the first read should have been refused and the list read again"
    );
}

#[tokio::test]
async fn tags_are_asked_by_prefix_and_their_names_checked_again() {
    let rig = Rig::start(quick_mock()).await;
    let client = rig.client();
    for name in ["kiwi-managed", "KIWI-upper", "not-kiwi-x", "web"] {
        client.create_tag(name, "#0A78C3").await.unwrap();
    }
    // Contabo's filter is a substring match: the mock serves three.
    let token = apply_support::token(&rig.mock).await;
    let served: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/tags?name=kiwi-", rig.mock.base_url()))
        .bearer_auth(token)
        .header("x-request-id", uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served["data"].as_array().unwrap().len(), 3, "{served}");
    let own = client.list_tags_with_prefix("kiwi-").await.unwrap();
    let names: Vec<&str> = own.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["kiwi-managed"]);
    rig.assert_spec_clean();
}

#[tokio::test]
async fn polling_instances_by_id_costs_the_same_in_any_account() {
    let rig = Rig::start(quick_mock()).await;
    let client = rig.client();
    let ids = fill(&rig, &client, 250).await;
    let wanted: Vec<_> = ids
        .iter()
        .step_by(50)
        .map(|id| kiwi_infra::contabo::models::InstanceId(*id))
        .collect();
    rig.mock.reset_stats();
    let found = client.instances_by_ids(&wanted).await.unwrap();
    assert_eq!(found.len(), wanted.len());
    assert_eq!(instance_list_requests(&rig.mock), 1, "one filtered page");
    // One id is one GET by id; an id that does not exist is simply absent.
    let one = client.instances_by_ids(&wanted[..1]).await.unwrap();
    assert_eq!(one.len(), 1);
    let gone = client
        .instances_by_ids(&[kiwi_infra::contabo::models::InstanceId(999_999_999)])
        .await
        .unwrap();
    assert!(gone.is_empty());
    assert_eq!(instance_list_requests(&rig.mock), 1);
    rig.assert_spec_clean();
}

#[tokio::test]
async fn reads_answered_429_keep_trying_past_the_retry_count() {
    let rig = Rig::start(quick_mock()).await;
    let mut config = rig.config();
    // One retry for passing failures; 429s are not counted against it.
    config.retry = RetryPolicy {
        max_retries: 1,
        ..RetryPolicy::immediate(1)
    };
    let client = ContaboClient::new(config).unwrap();
    client.list_tags().await.unwrap();
    rig.mock
        .set_faults(Faults {
            throttle_rate: 1.0,
            ..Faults::default()
        })
        .unwrap();
    rig.mock.reset_stats();
    let heal = async {
        // Every request is answered 429 (Retry-After: 1) until three were.
        while rig.mock.stats().rate_limited < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rig.mock.set_faults(Faults::default()).unwrap();
    };
    let (listed, ()) = tokio::join!(client.list_tags(), heal);
    listed.unwrap();
    assert!(rig.mock.stats().rate_limited >= 3);
}

#[tokio::test]
async fn a_total_that_stops_at_a_full_page_one_while_more_pages_are_announced_is_refused() {
    // Page 1 says there are exactly as many items as it holds, while
    // totalPages (and `_links.next`) say more pages follow: believing the
    // count would drop every later page, and their slots would be ordered.
    let rig = Rig::start(quick_mock()).await;
    let client = rig.client();
    fill(&rig, &client, 250).await;
    rig.mock
        .set_faults(Faults {
            total_elements: Some(serde_json::json!(100)),
            ..Faults::default()
        })
        .unwrap();
    let err = client
        .list_instances(&InstanceFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ContaboError::Paging { .. }), "{err}");
    assert!(err.to_string().contains("totalPages"), "{err}");
}

/// A token endpoint in front of the mock's that answers 503 to the first
/// `failing` requests (all of them when `None`) and relays the rest.
/// Returns its URL and how many token requests it was sent.
fn flaky_token_endpoint(
    mock: &MockHandle,
    failing: Option<usize>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        "/auth/realms/contabo/protocol/openid-connect/token"
    );
    let upstream = mock
        .token_url()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    // One whole HTTP/1.1 message (headers and a Content-Length body).
    fn read_message(stream: &mut std::net::TcpStream) -> Vec<u8> {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if data.len() >= end + 4 + length {
                    return data;
                }
            }
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                return data;
            }
            data.extend_from_slice(&buf[..n]);
        }
    }
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let request = read_message(&mut stream);
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let answer = if failing.is_none_or(|f| n <= f) {
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_vec()
            } else {
                let mut up = std::net::TcpStream::connect(&upstream).unwrap();
                up.write_all(&request).unwrap();
                let response = read_message(&mut up);
                let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                let status = String::from_utf8_lossy(&response[..end])
                    .lines()
                    .next()
                    .unwrap()
                    .to_string();
                let body = &response[end + 4..];
                let mut answer = format!(
                    "{status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                answer.extend_from_slice(body);
                answer
            };
            let _ = stream.write_all(&answer);
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_token_endpoint_that_fails_twice_is_retried_by_the_client_s_policy() {
    let mock = spawn(quick_mock()).await.unwrap();
    let (url, seen) = flaky_token_endpoint(&mock, Some(2));
    let c = mock.credentials();
    let mut config = ClientConfig::new(Credentials {
        client_id: c.client_id,
        client_secret: Secret::new(c.client_secret),
        username: c.username,
        password: Secret::new(c.password),
    });
    config.api_url = mock.base_url().to_string();
    config.auth_url = url;
    config.retry = RetryPolicy::immediate(3);
    let client = ContaboClient::new(config).unwrap();
    client.list_tags().await.unwrap();
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(mock.stats().tokens_issued, 1);
}

#[tokio::test]
async fn a_token_endpoint_that_keeps_failing_gets_the_policy_s_retries_and_no_more() {
    let mock = spawn(quick_mock()).await.unwrap();
    let (url, seen) = flaky_token_endpoint(&mock, None);
    let c = mock.credentials();
    let mut config = ClientConfig::new(Credentials {
        client_id: c.client_id,
        client_secret: Secret::new(c.client_secret),
        username: c.username,
        password: Secret::new(c.password),
    });
    config.api_url = mock.base_url().to_string();
    config.auth_url = url;
    config.retry = RetryPolicy::immediate(2);
    let client = ContaboClient::new(config).unwrap();
    let err = client.list_tags().await.unwrap_err();
    assert!(
        matches!(err, ContaboError::TokenTransport { attempts: 3, .. }),
        "{err:?}"
    );
    // The client does not retry a failed token request on top.
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(mock.stats().tokens_issued, 0);
}
