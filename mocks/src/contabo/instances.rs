//! `/v1/compute/instances`: ordering, listing, renaming, reinstalling and cancelling servers.
//!
//! Choices where the spec is silent, made to match what the real API most plausibly does:
//! - Cancelling an instance that already has a `cancelDate` is a 409 Conflict, not a silent
//!   success: a client that retries a cancel after a lost response must look first.
//! - Without a `cancelDate` in the body, the cancellation takes effect at the end of the current
//!   contract period: `createdDate` plus the smallest multiple of `period` months after today.
//! - Reinstalling an order that is not yet provisioned (still `provisioning` or held in a product
//!   status) is a 409 Conflict.
//! - Unknown body fields are rejected (400), as a NestJS API with a whitelist does; it catches
//!   client typos that would otherwise be silently ignored.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Months, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::catalog;
use super::model::{timestamp, AddOn, Instance, State as Account, CUSTOMER_ID, TENANT_ID};
use super::server::ConnectionControl;
use super::shared::{InstanceEvent, Shared};
use super::wire::{parse_body, path_id, single, sort_items, ApiError, ApiResult, Paging, Params};

const BASE: &str = "/v1/compute/instances";
const PERIODS: [i64; 4] = [1, 3, 6, 12];
const DEFAULT_USERS: [&str; 3] = ["root", "admin", "administrator"];
const LICENSES: [&str; 25] = [
    "cPanel5",
    "cPanel30",
    "cPanel50",
    "cPanel100",
    "cPanel150",
    "cPanel200",
    "cPanel250",
    "cPanel300",
    "cPanel350",
    "cPanel400",
    "cPanel450",
    "cPanel500",
    "cPanel550",
    "cPanel600",
    "cPanel650",
    "cPanel700",
    "cPanel750",
    "cPanel800",
    "cPanel850",
    "cPanel900",
    "cPanel950",
    "cPanel1000",
    "PleskAdmin",
    "PleskHost",
    "PleskPro",
];
/// Largest body a create may carry (user data included); Contabo's own limit is not documented.
const MAX_CREATE_BODY: usize = 1024 * 1024;

/// `CreateInstanceRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateInstanceRequest {
    image_id: Option<String>,
    product_id: Option<String>,
    region: Option<String>,
    ssh_keys: Option<Vec<i64>>,
    root_password: Option<i64>,
    user_data: Option<String>,
    license: Option<String>,
    period: i64,
    display_name: Option<String>,
    default_user: Option<String>,
    add_ons: Option<CreateInstanceAddons>,
    application_id: Option<String>,
}

/// `CreateInstanceAddons`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateInstanceAddons {
    private_networking: Option<Map<String, Value>>,
    additional_ips: Option<Map<String, Value>>,
    backup: Option<Map<String, Value>>,
    extra_storage: Option<ExtraStorageRequest>,
    custom_image: Option<Map<String, Value>>,
    addons_ids: Option<Vec<AddOnRequest>>,
}

/// `ExtraStorageRequest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Parsed for validation only.
struct ExtraStorageRequest {
    ssd: Option<Vec<String>>,
    nvme: Option<Vec<String>>,
}

/// `AddOnRequest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddOnRequest {
    id: i64,
    quantity: i64,
}

/// `PatchInstanceRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatchInstanceRequest {
    display_name: Option<String>,
}

/// `ReinstallInstanceRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReinstallInstanceRequest {
    image_id: String,
    ssh_keys: Option<Vec<i64>>,
    root_password: Option<i64>,
    user_data: Option<String>,
    default_user: Option<String>,
    application_id: Option<String>,
}

/// `CancelInstanceRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CancelInstanceRequest {
    cancel_date: Option<String>,
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("instance {id} not found"))
}

fn check_display_name(name: &str) -> Result<(), ApiError> {
    let len = name.chars().count();
    if len > 255 {
        return Err(ApiError::bad_request(format!(
            "displayName must be at most 255 characters, got {len}"
        )));
    }
    Ok(())
}

fn check_default_user(user: Option<String>) -> Result<String, ApiError> {
    let user = user.unwrap_or_else(|| "admin".into());
    if !DEFAULT_USERS.contains(&user.as_str()) {
        return Err(ApiError::bad_request(format!(
            "defaultUser must be one of {}, got {user:?}",
            DEFAULT_USERS.join(", ")
        )));
    }
    Ok(user)
}

fn check_image(image_id: &str) -> Result<(), ApiError> {
    if catalog::image(image_id).is_none() {
        return Err(ApiError::bad_request(format!(
            "imageId {image_id} is not a known image"
        )));
    }
    Ok(())
}

/// Resolves `sshKeys` to their public keys and checks `rootPassword`, as Contabo does when it
/// installs: both must name existing secrets of the right type.
fn resolve_secrets(
    account: &Account,
    ssh_keys: &[i64],
    root_password: Option<i64>,
) -> Result<Vec<String>, ApiError> {
    let mut values = Vec::with_capacity(ssh_keys.len());
    for id in ssh_keys {
        match account.secrets.get(id) {
            Some(s) if s.kind == "ssh" => values.push(s.value.clone()),
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "sshKeys: secret {id} is not of type ssh"
                )))
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "sshKeys: secret {id} does not exist"
                )))
            }
        }
    }
    if let Some(id) = root_password {
        match account.secrets.get(&id) {
            Some(s) if s.kind == "password" => {}
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "rootPassword: secret {id} is not of type password"
                )))
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "rootPassword: secret {id} does not exist"
                )))
            }
        }
    }
    Ok(values)
}

fn add_ons(req: Option<CreateInstanceAddons>) -> Result<Vec<AddOn>, ApiError> {
    let Some(req) = req else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut flag = |present: bool, id: i64| {
        if present {
            out.push(AddOn { id, quantity: 1 });
        }
    };
    flag(
        req.private_networking.is_some(),
        catalog::ADDON_PRIVATE_NETWORKING,
    );
    flag(req.additional_ips.is_some(), catalog::ADDON_ADDITIONAL_IPS);
    flag(req.backup.is_some(), catalog::ADDON_BACKUP);
    flag(req.custom_image.is_some(), catalog::ADDON_CUSTOM_IMAGE);
    flag(req.extra_storage.is_some(), catalog::ADDON_EXTRA_STORAGE);
    for a in req.addons_ids.unwrap_or_default() {
        if a.quantity < 1 {
            return Err(ApiError::bad_request(format!(
                "addOns.addonsIds: quantity of add-on {} must be at least 1",
                a.id
            )));
        }
        out.push(AddOn {
            id: a.id,
            quantity: a.quantity,
        });
    }
    Ok(out)
}

/// `GET /v1/compute/instances`.
pub async fn list(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let params = Params::from_query(query)?;
    let paging = Paging::requested(&params, &shared)?;
    let statuses = params.list("status");
    for s in statuses.iter().flatten() {
        if !catalog::INSTANCE_STATUSES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(format!(
                "status must be one of {}, got {s:?}",
                catalog::INSTANCE_STATUSES.join(", ")
            )));
        }
    }
    let mut ids: Option<HashSet<i64>> = None;
    if let Some(list) = params.list("instanceIds") {
        let parsed = list
            .iter()
            .map(|s| s.parse::<i64>())
            .collect::<Result<HashSet<_>, _>>()
            .map_err(|_| {
                ApiError::bad_request("instanceIds must be a comma-separated list of integers")
            })?;
        ids = Some(parsed);
    }
    if let Some(one) = params.get("instanceId") {
        let id = one
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request("instanceId must be an integer"))?;
        ids.get_or_insert_with(HashSet::new).insert(id);
    }
    let product_ids = params.list("productIds");
    let product_types = params.list("productTypes");
    let name = params.get("name");
    let display_name = params.get("displayName");
    let region = params.get("region");
    let data_center = params.get("dataCenter");
    let search = params.get("search").map(str::to_lowercase);
    params.boolean("ipConfig")?;
    let order = params.order_by(&[
        "name",
        "displayName",
        "instanceId",
        "status",
        "productId",
        "region",
        "createdDate",
    ])?;

    let (prefix, gateway) = (
        shared.config.ip_range.prefix,
        shared.config.ip_range.gateway,
    );
    let items = shared.read(|account| {
        let now = Utc::now();
        account
            .instances
            .values()
            .filter(|i| i.unlisted_until.is_none_or(|t| now >= t))
            .filter(|i| name.is_none_or(|n| i.name == n))
            .filter(|i| display_name.is_none_or(|n| i.display_name == n))
            .filter(|i| region.is_none_or(|r| i.region == r))
            .filter(|i| {
                data_center.is_none_or(|dc| catalog::region(&i.region).is_some_and(|r| r.1 == dc))
            })
            .filter(|i| statuses.as_ref().is_none_or(|s| s.contains(&i.status)))
            .filter(|i| {
                product_ids
                    .as_ref()
                    .is_none_or(|p| p.contains(&i.product_id))
            })
            .filter(|i| {
                product_types.as_ref().is_none_or(|types| {
                    catalog::product(&i.product_id)
                        .is_some_and(|p| types.iter().any(|t| t == p.product_type))
                })
            })
            .filter(|i| ids.as_ref().is_none_or(|ids| ids.contains(&i.instance_id)))
            .filter(|i| {
                search.as_ref().is_none_or(|q| {
                    i.name.to_lowercase().contains(q)
                        || i.display_name.to_lowercase().contains(q)
                        || i.ipv4.to_string().contains(q)
                        || i.instance_id.to_string().contains(q)
                })
            })
            .map(|i| i.to_api(prefix, gateway))
            .collect::<Vec<_>>()
    });
    let mut items = items;
    sort_items(&mut items, &order);
    Ok(paging.respond(BASE, &params, items))
}

/// `POST /v1/compute/instances`: places the order. May drop the response after committing
/// (fault `dropCreateResponses`), by asking the connection task to close the connection.
pub async fn create(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let control = request.extensions().get::<ConnectionControl>().cloned();
    let body = match axum::body::to_bytes(request.into_body(), MAX_CREATE_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return axum::response::IntoResponse::into_response(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ))
        }
    };
    let failure = shared.faults(|f| f.fail_this_create());
    let fail = |status: u16| {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut response = axum::response::IntoResponse::into_response(ApiError::new(
            status,
            "injected failure of an order (hostile mode)",
        ));
        if status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    };
    if let Some((status, false)) = failure {
        tracing::info!(status, "order refused without placing it (hostile mode)");
        return fail(status);
    }
    let instance = match place_order(&shared, &body) {
        Ok(i) => i,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    if let Some((status, true)) = failure {
        shared.stats(|s| s.instances_created += 1);
        tracing::info!(
            instance_id = instance.instance_id,
            status,
            "order placed, answered with an error (hostile mode)"
        );
        return fail(status);
    }
    shared.stats(|s| s.instances_created += 1);
    tracing::info!(instance_id = instance.instance_id, product = %instance.product_id, status = %instance.status, "instance ordered");

    if shared.faults(|f| f.drop_this_create()) {
        if let Some(control) = control {
            shared.stats(|s| s.dropped_create_responses += 1);
            tracing::info!(
                instance_id = instance.instance_id,
                "dropping the create response"
            );
            control.abort();
            // The connection task drops this future together with the connection.
            std::future::pending::<()>().await;
        } else {
            tracing::warn!("response drop requested but the connection cannot be closed here");
        }
    }

    let data = json!({
        "tenantId": TENANT_ID,
        "customerId": CUSTOMER_ID,
        "instanceId": instance.instance_id,
        "createdDate": timestamp(&instance.created_date),
        "imageId": instance.image_id,
        "productId": instance.product_id,
        "region": instance.region,
        "addOns": instance.add_ons,
        "osType": catalog::image(&instance.image_id).map_or("Linux", |i| i.os_type),
        "status": instance.status,
        "sshKeys": instance.ssh_keys,
    });
    single(
        StatusCode::CREATED,
        &format!("{BASE}/{}", instance.instance_id),
        vec![data],
    )
}

fn place_order(shared: &Shared, body: &Bytes) -> Result<Instance, ApiError> {
    let req: CreateInstanceRequest = parse_body(body)?;
    if !PERIODS.contains(&req.period) {
        return Err(ApiError::bad_request(format!(
            "period must be one of 1, 3, 6, 12, got {}",
            req.period
        )));
    }
    let display_name = req.display_name.unwrap_or_default();
    check_display_name(&display_name)?;
    let product_id = req.product_id.unwrap_or_else(|| "V92".into());
    if catalog::product(&product_id).is_none() {
        return Err(ApiError::bad_request(format!(
            "productId {product_id} is not a known product"
        )));
    }
    let region = req.region.unwrap_or_else(|| "EU".into());
    if catalog::region(&region).is_none() {
        let codes: Vec<_> = catalog::REGIONS.iter().map(|r| r.0).collect();
        return Err(ApiError::bad_request(format!(
            "region must be one of {}, got {region:?}",
            codes.join(", ")
        )));
    }
    let image_id = req
        .image_id
        .unwrap_or_else(|| "afecbb85-e2fc-46f0-9684-b46b1faf00bb".into());
    check_image(&image_id)?;
    let default_user = check_default_user(req.default_user)?;
    if let Some(license) = &req.license {
        if !LICENSES.contains(&license.as_str()) {
            return Err(ApiError::bad_request(format!(
                "license {license:?} is not a known license"
            )));
        }
    }
    let _ = req.application_id;
    let add_ons = add_ons(req.add_ons)?;
    let ssh_keys = req.ssh_keys.unwrap_or_default();
    let hold = shared.product_status(&product_id);
    let range = shared.config.ip_range;
    let unlisted_for_ms = shared.faults(|f| f.faults.unlisted_for_ms).min(86_400_000);

    shared.mutate(|account| {
        let ssh_key_values = match resolve_secrets(account, &ssh_keys, req.root_password) {
            Ok(v) => v,
            Err(e) => return (Err(e), vec![]),
        };
        let used: HashSet<_> = account.instances.values().map(|i| i.ipv4).collect();
        let Some(ip) = range.addresses().find(|ip| !used.contains(ip)) else {
            return (
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no free IPv4 address left in the mock's range",
                )),
                vec![],
            );
        };
        let id = account.next_instance_id;
        account.next_instance_id += 1;
        let now = Utc::now();
        let id_bytes = (id as u32).to_be_bytes();
        let instance = Instance {
            instance_id: id,
            name: format!("vmi{id}"),
            display_name,
            product_id,
            region,
            image_id,
            ipv4: ip,
            ipv6: format!("2001:db8:10::{:x}", id % 0xffff),
            mac_address: format!(
                "02:00:{:02X}:{:02X}:{:02X}:{:02X}",
                id_bytes[0], id_bytes[1], id_bytes[2], id_bytes[3]
            ),
            ssh_keys,
            ssh_key_values,
            user_data: req.user_data,
            default_user,
            root_password: req.root_password,
            period: req.period as u32,
            created_date: now,
            cancel_date: None,
            status: hold.clone().unwrap_or_else(|| "provisioning".into()),
            status_since: now,
            unlisted_until: (unlisted_for_ms > 0)
                .then(|| now + chrono::Duration::milliseconds(unlisted_for_ms as i64)),
            held_by_product: hold.is_some(),
            add_ons,
            reinstalls: 0,
            ipv4_text: None,
        };
        account.instances.insert(id, instance.clone());
        let event = InstanceEvent::of(&instance);
        (Ok(instance), vec![event])
    })
}

/// `GET /v1/compute/instances/{instanceId}`.
pub async fn get(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = path_id("instanceId", &id)?;
    let (prefix, gateway) = (
        shared.config.ip_range.prefix,
        shared.config.ip_range.gateway,
    );
    let data = shared
        .read(|a| a.instances.get(&id).map(|i| i.to_api(prefix, gateway)))
        .ok_or_else(|| not_found(id))?;
    Ok(single(StatusCode::OK, &format!("{BASE}/{id}"), vec![data]))
}

fn short_data(i: &Instance) -> Value {
    json!({
        "tenantId": TENANT_ID,
        "customerId": CUSTOMER_ID,
        "instanceId": i.instance_id,
        "createdDate": timestamp(&i.created_date),
    })
}

/// `PATCH /v1/compute/instances/{instanceId}`: renames (displayName).
pub async fn patch(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = path_id("instanceId", &id)?;
    let req: PatchInstanceRequest = parse_body(&body)?;
    if let Some(name) = &req.display_name {
        check_display_name(name)?;
    }
    let data = shared.mutate(|a| match a.instances.get_mut(&id) {
        None => (Err(not_found(id)), vec![]),
        Some(i) => {
            if let Some(name) = req.display_name {
                i.display_name = name;
            }
            (Ok(short_data(i)), vec![])
        }
    })?;
    Ok(single(StatusCode::OK, &format!("{BASE}/{id}"), vec![data]))
}

/// `PUT /v1/compute/instances/{instanceId}`: reinstall with a new image, keys and user data.
pub async fn reinstall(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = path_id("instanceId", &id)?;
    let req: ReinstallInstanceRequest = parse_body(&body)?;
    check_image(&req.image_id)?;
    let default_user = check_default_user(req.default_user)?;
    let _ = req.application_id;
    let ssh_keys = req.ssh_keys.unwrap_or_default();
    let data = shared.mutate(|a| {
        let values = match resolve_secrets(a, &ssh_keys, req.root_password) {
            Ok(v) => v,
            Err(e) => return (Err(e), vec![]),
        };
        let Some(i) = a.instances.get_mut(&id) else {
            return (Err(not_found(id)), vec![]);
        };
        if i.held_by_product || i.status == "provisioning" {
            return (
                Err(ApiError::conflict(format!(
                    "instance {id} is not provisioned yet (status {})",
                    i.status
                ))),
                vec![],
            );
        }
        i.image_id = req.image_id;
        i.ssh_keys = ssh_keys;
        i.ssh_key_values = values;
        i.user_data = req.user_data;
        i.default_user = default_user;
        i.root_password = req.root_password;
        i.status = "installing".into();
        i.status_since = Utc::now();
        i.reinstalls += 1;
        let data = short_data(i);
        let event = InstanceEvent::of(i);
        // A reinstall is what wires a private network NIC.
        for net in a.private_networks.values_mut() {
            for m in net.members.iter_mut().filter(|m| m.instance_id == id) {
                m.needs_reinstall = false;
            }
        }
        (Ok(data), vec![event])
    })?;
    tracing::info!(instance_id = id, "instance reinstalling");
    Ok(single(StatusCode::OK, &format!("{BASE}/{id}"), vec![data]))
}

/// End of the contract period that contains `today` (or the first one, if `today` is before
/// the order): the date service ends when cancelled without an explicit date.
pub fn contract_end(created: NaiveDate, period_months: u32, today: NaiveDate) -> NaiveDate {
    let mut k = 1u32;
    loop {
        let Some(end) = created.checked_add_months(Months::new(period_months.max(1) * k)) else {
            return NaiveDate::MAX;
        };
        if end > today {
            return end;
        }
        k += 1;
    }
}

fn parse_cancel_date(raw: &str) -> Result<NaiveDate, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|d| d.with_timezone(&Utc).date_naive())
        .or_else(|_| NaiveDate::parse_from_str(raw, "%Y-%m-%d"))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "cancelDate must be a date-time (RFC 3339) or a date (YYYY-MM-DD), got {raw:?}"
            ))
        })
}

/// `POST /v1/compute/instances/{instanceId}/cancel`.
pub async fn cancel(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = path_id("instanceId", &id)?;
    // The spec marks the body required, but `{}` and an empty body both mean "end of term".
    let req: CancelInstanceRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CancelInstanceRequest::default()
    } else {
        parse_body(&body)?
    };
    let today = Utc::now().date_naive();
    let requested = req
        .cancel_date
        .as_deref()
        .map(parse_cancel_date)
        .transpose()?;
    if let Some(date) = requested {
        if date < today {
            return Err(ApiError::bad_request(format!(
                "cancelDate {date} is in the past"
            )));
        }
    }
    let date = shared.mutate(|a| {
        let Some(i) = a.instances.get_mut(&id) else {
            return (Err(not_found(id)), vec![]);
        };
        if let Some(existing) = i.cancel_date {
            return (
                Err(ApiError::conflict(format!(
                    "instance {id} is already cancelled (cancelDate {existing})"
                ))),
                vec![],
            );
        }
        let date =
            requested.unwrap_or_else(|| contract_end(i.created_date.date_naive(), i.period, today));
        i.cancel_date = Some(date);
        (Ok(date), vec![])
    })?;
    tracing::info!(instance_id = id, %date, "instance cancelled");
    let data = json!({
        "tenantId": TENANT_ID,
        "customerId": CUSTOMER_ID,
        "instanceId": id,
        "cancelDate": date.format("%Y-%m-%d").to_string(),
    });
    Ok(single(
        StatusCode::CREATED,
        &format!("{BASE}/{id}/cancel"),
        vec![data],
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn cancellation_ends_with_the_running_contract_period() {
        assert_eq!(
            contract_end(d("2025-01-15"), 1, d("2025-01-15")),
            d("2025-02-15")
        );
        assert_eq!(
            contract_end(d("2025-01-15"), 3, d("2025-05-01")),
            d("2025-07-15")
        );
        assert_eq!(
            contract_end(d("2025-01-31"), 1, d("2025-02-10")),
            d("2025-02-28")
        );
        assert_eq!(
            contract_end(d("2024-03-01"), 12, d("2025-03-01")),
            d("2026-03-01")
        );
    }
}
