//! `/v1/compute/images`: the standard images the mock can install (read-only; custom images are
//! out of scope because kiwi-infra only installs standard ones).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{json, Value};

use super::catalog::{self, Image};
use super::model::{timestamp, CUSTOMER_ID, TENANT_ID};
use super::shared::Shared;
use super::wire::{single, ApiError, ApiResult, Paging, Params};

const BASE: &str = "/v1/compute/images";

/// `ImageResponse` (single image: the spec lists no `tags` there).
fn to_api(image: &Image) -> Value {
    let created = timestamp(&catalog::IMAGES_CREATED);
    json!({
        "imageId": image.id,
        "tenantId": TENANT_ID,
        "customerId": CUSTOMER_ID,
        "name": image.name,
        "description": image.description,
        "url": "",
        "sizeMb": image.size_mb,
        "uploadedSizeMb": image.size_mb,
        "osType": image.os_type,
        "version": image.version,
        "format": "qcow2",
        "status": "downloaded",
        "errorMessage": "",
        "standardImage": true,
        "creationDate": created,
        "lastModifiedDate": created,
    })
}

/// `GET /v1/compute/images` (filters `name`, `standardImage`, `search`).
pub async fn list(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let params = Params::from_query(query)?;
    let paging = Paging::requested(&params, &shared)?;
    let name = params.get("name");
    let standard = params.boolean("standardImage")?;
    let search = params.get("search").map(str::to_lowercase);
    let items = catalog::IMAGES
        .iter()
        .filter(|i| name.is_none_or(|n| i.name == n))
        // Every image here is standard: asking for custom ones yields nothing.
        .filter(|_| standard.is_none_or(|s| s))
        .filter(|i| {
            search.as_ref().is_none_or(|q| {
                i.name.to_lowercase().contains(q) || i.description.to_lowercase().contains(q)
            })
        })
        .map(|i| {
            let mut v = to_api(i);
            v["tags"] = json!([]);
            v
        })
        .collect();
    Ok(paging.respond(BASE, &params, items))
}

/// `GET /v1/compute/images/{imageId}`.
pub async fn get(Path(id): Path<String>) -> ApiResult {
    let image =
        catalog::image(&id).ok_or_else(|| ApiError::not_found(format!("image {id} not found")))?;
    Ok(single(
        StatusCode::OK,
        &format!("{BASE}/{id}"),
        vec![to_api(image)],
    ))
}
