//! `/v1/tags` and their assignments: how kiwi-infra marks which servers belong to which cluster.
//! Tag names are unique (a duplicate is 409); assigning a tag to a resource that does not exist is
//! 404, and assigning it twice is 409.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::catalog;
use super::model::{Assignment, State as Account, Tag, CUSTOMER_ID, TENANT_ID};
use super::shared::Shared;
use super::wire::{parse_body, path_id, single, sort_items, ApiError, ApiResult, Paging, Params};

const BASE: &str = "/v1/tags";
/// Resource types the mock can tag.
const RESOURCE_TYPES: [&str; 2] = ["instance", "image"];

/// `CreateTagRequest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTagRequest {
    name: String,
    color: String,
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("tag {id} not found"))
}

/// `GET /v1/tags` (filter `name`: a case-insensitive substring match, as Contabo documents
/// "substring match for tag names").
pub async fn list(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let params = Params::from_query(query)?;
    let paging = Paging::requested(&params, &shared)?;
    let name = params.get("name").map(str::to_lowercase);
    let order = params.order_by(&["name", "tagId", "color"])?;
    let mut items: Vec<_> = shared.read(|a| {
        a.tags
            .values()
            .filter(|t| {
                name.as_ref()
                    .is_none_or(|n| t.name.to_lowercase().contains(n.as_str()))
            })
            .map(Tag::to_api)
            .collect()
    });
    sort_items(&mut items, &order);
    Ok(paging.respond(BASE, &params, items))
}

/// `POST /v1/tags`.
pub async fn create(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let req: CreateTagRequest = parse_body(&body)?;
    let name_len = req.name.chars().count();
    if !(1..=255).contains(&name_len) {
        return Err(ApiError::bad_request(format!(
            "name must be 1 to 255 characters, got {name_len}"
        )));
    }
    let color_len = req.color.chars().count();
    if !(4..=7).contains(&color_len) {
        return Err(ApiError::bad_request(format!(
            "color must be 4 to 7 characters (e.g. #0A78C3), got {color_len}"
        )));
    }
    let id = shared.mutate(|a| {
        if a.tags.values().any(|t| t.name == req.name) {
            return (
                Err(ApiError::conflict(format!(
                    "a tag named {:?} already exists",
                    req.name
                ))),
                vec![],
            );
        }
        let id = a.next_tag_id;
        a.next_tag_id += 1;
        a.tags.insert(
            id,
            Tag {
                tag_id: id,
                name: req.name,
                color: req.color,
            },
        );
        (Ok(id), vec![])
    })?;
    let data = json!({"tenantId": TENANT_ID, "customerId": CUSTOMER_ID, "tagId": id});
    Ok(single(
        StatusCode::CREATED,
        &format!("{BASE}/{id}"),
        vec![data],
    ))
}

/// `GET /v1/tags/{tagId}`.
pub async fn get(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = path_id("tagId", &id)?;
    let data = shared
        .read(|a| a.tags.get(&id).map(Tag::to_api))
        .ok_or_else(|| not_found(id))?;
    Ok(single(StatusCode::OK, &format!("{BASE}/{id}"), vec![data]))
}

/// `DELETE /v1/tags/{tagId}`; its assignments go with it.
pub async fn delete(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = path_id("tagId", &id)?;
    shared
        .mutate(|a| {
            let removed = a.tags.remove(&id);
            a.assignments.retain(|x| x.tag_id != id);
            (removed, vec![])
        })
        .ok_or_else(|| not_found(id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The name of a tagged resource, or 404 if it does not exist.
fn resource_name(a: &Account, kind: &str, id: &str) -> Result<String, ApiError> {
    let missing = || ApiError::not_found(format!("{kind} {id} not found"));
    match kind {
        "instance" => {
            let n = id.parse::<i64>().map_err(|_| missing())?;
            a.instances
                .get(&n)
                .map(|i| i.label().to_owned())
                .ok_or_else(missing)
        }
        "image" => catalog::image(id)
            .map(|i| i.name.to_owned())
            .ok_or_else(missing),
        _ => Err(ApiError::bad_request(format!(
            "resourceType must be one of {}, got {kind:?}",
            RESOURCE_TYPES.join(", ")
        ))),
    }
}

fn assignment_to_api(a: &Account, x: &Assignment) -> Value {
    json!({
        "tenantId": TENANT_ID,
        "customerId": CUSTOMER_ID,
        "tagId": x.tag_id,
        "tagName": a.tags.get(&x.tag_id).map_or("", |t| t.name.as_str()),
        "resourceType": x.resource_type,
        "resourceId": x.resource_id,
        "resourceName": resource_name(a, &x.resource_type, &x.resource_id)
            .unwrap_or_else(|_| x.resource_id.clone()),
    })
}

fn assignment_links(tag: i64, kind: &str, id: &str) -> Value {
    let resource = match kind {
        "instance" => format!("/v1/compute/instances/{id}"),
        _ => format!("/v1/compute/images/{id}"),
    };
    json!({
        "self": format!("{BASE}/{tag}/assignments/{kind}/{id}"),
        "tag": format!("{BASE}/{tag}"),
        "_resource": resource,
    })
}

/// `GET /v1/tags/{tagId}/assignments` (filter `resourceType`).
pub async fn list_assignments(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let id = path_id("tagId", &id)?;
    let params = Params::from_query(query)?;
    let paging = Paging::requested(&params, &shared)?;
    let kind = params.get("resourceType");
    let items = shared.read(|a| {
        if !a.tags.contains_key(&id) {
            return Err(not_found(id));
        }
        Ok(a.assignments
            .iter()
            .filter(|x| x.tag_id == id)
            .filter(|x| kind.is_none_or(|k| x.resource_type == k))
            .map(|x| assignment_to_api(a, x))
            .collect())
    })?;
    Ok(paging.respond(&format!("{BASE}/{id}/assignments"), &params, items))
}

/// Path of one assignment: `{tagId}/assignments/{resourceType}/{resourceId}`.
type AssignmentPath = Path<(String, String, String)>;

/// `GET /v1/tags/{tagId}/assignments/{resourceType}/{resourceId}`.
pub async fn get_assignment(
    State(shared): State<Arc<Shared>>,
    Path((tag, kind, id)): AssignmentPath,
) -> ApiResult {
    let tag = path_id("tagId", &tag)?;
    let data = shared.read(|a| {
        if !a.tags.contains_key(&tag) {
            return Err(not_found(tag));
        }
        a.assignments
            .iter()
            .find(|x| x.tag_id == tag && x.resource_type == kind && x.resource_id == id)
            .map(|x| assignment_to_api(a, x))
            .ok_or_else(|| ApiError::not_found(format!("tag {tag} is not assigned to {kind} {id}")))
    })?;
    let body = json!({"data": [data], "_links": assignment_links(tag, &kind, &id)});
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// `POST /v1/tags/{tagId}/assignments/{resourceType}/{resourceId}`.
pub async fn create_assignment(
    State(shared): State<Arc<Shared>>,
    Path((tag, kind, id)): AssignmentPath,
) -> ApiResult {
    let tag = path_id("tagId", &tag)?;
    shared.mutate(|a| {
        if !a.tags.contains_key(&tag) {
            return (Err(not_found(tag)), vec![]);
        }
        if let Err(e) = resource_name(a, &kind, &id) {
            return (Err(e), vec![]);
        }
        let x = Assignment {
            tag_id: tag,
            resource_type: kind.clone(),
            resource_id: id.clone(),
        };
        match a.assignments.binary_search(&x) {
            Ok(_) => (
                Err(ApiError::conflict(format!(
                    "tag {tag} is already assigned to {kind} {id}"
                ))),
                vec![],
            ),
            Err(pos) => {
                a.assignments.insert(pos, x);
                (Ok(()), vec![])
            }
        }
    })?;
    let body = json!({"_links": assignment_links(tag, &kind, &id)});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /v1/tags/{tagId}/assignments/{resourceType}/{resourceId}`.
pub async fn delete_assignment(
    State(shared): State<Arc<Shared>>,
    Path((tag, kind, id)): AssignmentPath,
) -> ApiResult {
    let tag = path_id("tagId", &tag)?;
    shared.mutate(|a| {
        if !a.tags.contains_key(&tag) {
            return (Err(not_found(tag)), vec![]);
        }
        let before = a.assignments.len();
        a.assignments
            .retain(|x| !(x.tag_id == tag && x.resource_type == kind && x.resource_id == id));
        if a.assignments.len() == before {
            return (
                Err(ApiError::not_found(format!(
                    "tag {tag} is not assigned to {kind} {id}"
                ))),
                vec![],
            );
        }
        (Ok(()), vec![])
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
