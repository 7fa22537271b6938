//! `/v1/private-networks`: VPCs and their members. Joining needs the paid private-networking
//! add-on (402 Payment Required otherwise), and the member's NIC only works after a reinstall,
//! shown as member status `reinstall` until then.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::catalog;
use super::model::{Member, PrivateNetwork};
use super::shared::Shared;
use super::wire::{parse_body, path_id, single, ApiError, ApiResult, Paging, Params};

const BASE: &str = "/v1/private-networks";

/// `CreatePrivateNetworkRequest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePrivateNetworkRequest {
    name: String,
    region: Option<String>,
    description: Option<String>,
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("private network {id} not found"))
}

/// `GET /v1/private-networks` (filters `name`, `region`, `dataCenter`, `instanceIds`).
pub async fn list(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let params = Params::from_query(query)?;
    let paging = Paging::requested(&params, &shared)?;
    let name = params.get("name");
    let region = params.get("region");
    let data_center = params.get("dataCenter");
    let ids: Option<HashSet<i64>> = params
        .list("instanceIds")
        .map(|l| l.iter().map(|s| s.parse::<i64>()).collect())
        .transpose()
        .map_err(|_| {
            ApiError::bad_request("instanceIds must be a comma-separated list of integers")
        })?;
    let (prefix, gateway) = (
        shared.config.ip_range.prefix,
        shared.config.ip_range.gateway,
    );
    let items = shared.read(|a| {
        a.private_networks
            .values()
            .filter(|n| name.is_none_or(|x| n.name == x))
            .filter(|n| region.is_none_or(|x| n.region == x))
            .filter(|n| {
                data_center.is_none_or(|dc| catalog::region(&n.region).is_some_and(|r| r.1 == dc))
            })
            .filter(|n| {
                ids.as_ref()
                    .is_none_or(|ids| n.members.iter().any(|m| ids.contains(&m.instance_id)))
            })
            .map(|n| n.to_api(&a.instances, prefix, gateway))
            .collect()
    });
    Ok(paging.respond(BASE, &params, items))
}

/// `POST /v1/private-networks`.
pub async fn create(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let req: CreatePrivateNetworkRequest = parse_body(&body)?;
    let len = req.name.chars().count();
    if !(1..=255).contains(&len) {
        return Err(ApiError::bad_request(format!(
            "name must be 1 to 255 characters, got {len}"
        )));
    }
    let description = req.description.unwrap_or_default();
    if description.chars().count() > 255 {
        return Err(ApiError::bad_request(
            "description must be at most 255 characters",
        ));
    }
    let region = req.region.unwrap_or_else(|| "EU".into());
    if catalog::region(&region).is_none() {
        return Err(ApiError::bad_request(format!(
            "region {region:?} is not a known region"
        )));
    }
    let (prefix, gateway) = (
        shared.config.ip_range.prefix,
        shared.config.ip_range.gateway,
    );
    let private_range = shared.config.private_range;
    let (id, data) = shared.mutate(|a| {
        let id = a.next_private_network_id;
        a.next_private_network_id += 1;
        // Each network gets its own /22 inside the configured range (10.0.0.0/8 by default).
        let net = PrivateNetwork {
            private_network_id: id,
            name: req.name,
            description,
            region,
            network: private_range.network_for(id),
            created_date: Utc::now(),
            members: Vec::new(),
        };
        let data = net.to_api(&a.instances, prefix, gateway);
        a.private_networks.insert(id, net);
        ((id, data), vec![])
    });
    Ok(single(
        StatusCode::CREATED,
        &format!("{BASE}/{id}"),
        vec![data],
    ))
}

/// `GET /v1/private-networks/{privateNetworkId}`.
pub async fn get(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = path_id("privateNetworkId", &id)?;
    let (prefix, gateway) = (
        shared.config.ip_range.prefix,
        shared.config.ip_range.gateway,
    );
    let data = shared
        .read(|a| {
            a.private_networks
                .get(&id)
                .map(|n| n.to_api(&a.instances, prefix, gateway))
        })
        .ok_or_else(|| not_found(id))?;
    Ok(single(StatusCode::OK, &format!("{BASE}/{id}"), vec![data]))
}

fn member_links(net: i64, instance: i64) -> serde_json::Value {
    json!({"_links": {
        "self": format!("{BASE}/{net}/instances/{instance}"),
        "virtualPrivateCloud": format!("{BASE}/{net}"),
        "instance": format!("/v1/compute/instances/{instance}"),
    }})
}

/// `POST /v1/private-networks/{privateNetworkId}/instances/{instanceId}`.
pub async fn assign(
    State(shared): State<Arc<Shared>>,
    Path((net, instance)): Path<(String, String)>,
) -> ApiResult {
    let net = path_id("privateNetworkId", &net)?;
    let instance = path_id("instanceId", &instance)?;
    shared.mutate(|a| {
        let Some(i) = a.instances.get(&instance) else {
            return (
                Err(ApiError::not_found(format!(
                    "instance {instance} not found"
                ))),
                vec![],
            );
        };
        if !i.has_private_networking() {
            return (
                Err(ApiError::new(
                    StatusCode::PAYMENT_REQUIRED,
                    format!("instance {instance} needs the private networking add-on"),
                )),
                vec![],
            );
        }
        let Some(n) = a.private_networks.get_mut(&net) else {
            return (Err(not_found(net)), vec![]);
        };
        if n.members.iter().any(|m| m.instance_id == instance) {
            return (
                Err(ApiError::conflict(format!(
                    "instance {instance} is already in private network {net}"
                ))),
                vec![],
            );
        }
        let Some(ip) = n.next_ip() else {
            return (
                Err(ApiError::conflict(format!("private network {net} is full"))),
                vec![],
            );
        };
        n.members.push(Member {
            instance_id: instance,
            private_ip: ip,
            needs_reinstall: true,
        });
        (Ok(()), vec![])
    })?;
    Ok((StatusCode::CREATED, Json(member_links(net, instance))).into_response())
}

/// `DELETE /v1/private-networks/{privateNetworkId}/instances/{instanceId}` (201, per the spec).
pub async fn unassign(
    State(shared): State<Arc<Shared>>,
    Path((net, instance)): Path<(String, String)>,
) -> ApiResult {
    let net = path_id("privateNetworkId", &net)?;
    let instance = path_id("instanceId", &instance)?;
    shared.mutate(|a| {
        let Some(n) = a.private_networks.get_mut(&net) else {
            return (Err(not_found(net)), vec![]);
        };
        let before = n.members.len();
        n.members.retain(|m| m.instance_id != instance);
        if n.members.len() == before {
            return (
                Err(ApiError::not_found(format!(
                    "instance {instance} is not in private network {net}"
                ))),
                vec![],
            );
        }
        (Ok(()), vec![])
    })?;
    Ok((StatusCode::CREATED, Json(member_links(net, instance))).into_response())
}
