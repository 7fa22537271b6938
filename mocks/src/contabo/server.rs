//! Routing and connection handling. Connections are served with hyper directly (not
//! `axum::serve`) so that a handler can make its connection close without a response: that is
//! how the mock shows a client a committed order whose answer got lost. Each connection task
//! puts a [`ConnectionControl`] into every request's extensions and drops the connection when a
//! handler calls [`ConnectionControl::abort`].

use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use super::shared::Shared;
use super::wire::ApiError;
use super::{auth, control, echo, gateway, images, instances, networks, secrets, tags};

/// Lets a handler close its own connection without answering.
#[derive(Debug, Clone, Default)]
pub struct ConnectionControl(Arc<Notify>);

impl ConnectionControl {
    /// Asks the connection task to drop the connection (a pending response is never written).
    pub fn abort(&self) {
        // `notify_one` keeps a permit if the task is not waiting yet, so the request is not lost.
        self.0.notify_one();
    }

    async fn aborted(&self) {
        self.0.notified().await;
    }
}

/// All routes: Contabo's `/v1` behind the gateway, the token endpoint, and `/_mock/`.
pub fn router(shared: Arc<Shared>) -> Router {
    let v1 = Router::new()
        .route(
            "/v1/compute/instances",
            get(instances::list).post(instances::create),
        )
        .route(
            "/v1/compute/instances/{instanceId}",
            get(instances::get)
                .patch(instances::patch)
                .put(instances::reinstall),
        )
        .route(
            "/v1/compute/instances/{instanceId}/cancel",
            post(instances::cancel),
        )
        .route("/v1/compute/images", get(images::list))
        .route("/v1/compute/images/{imageId}", get(images::get))
        .route("/v1/secrets", get(secrets::list).post(secrets::create))
        .route(
            "/v1/secrets/{secretId}",
            get(secrets::get).delete(secrets::delete),
        )
        .route("/v1/tags", get(tags::list).post(tags::create))
        .route("/v1/tags/{tagId}", get(tags::get).delete(tags::delete))
        .route("/v1/tags/{tagId}/assignments", get(tags::list_assignments))
        .route(
            "/v1/tags/{tagId}/assignments/{resourceType}/{resourceId}",
            get(tags::get_assignment)
                .post(tags::create_assignment)
                .delete(tags::delete_assignment),
        )
        .route(
            "/v1/private-networks",
            get(networks::list).post(networks::create),
        )
        .route(
            "/v1/private-networks/{privateNetworkId}",
            get(networks::get),
        )
        .route(
            "/v1/private-networks/{privateNetworkId}/instances/{instanceId}",
            post(networks::assign).delete(networks::unassign),
        )
        .route_layer(from_fn_with_state(shared.clone(), gateway::gate));

    let mock = Router::new()
        .route(
            "/_mock/faults",
            get(control::get_faults).put(control::put_faults),
        )
        .route("/_mock/products", get(control::get_products))
        .route(
            "/_mock/products/{productId}/status",
            put(control::put_product_status),
        )
        .route("/_mock/instances", get(control::list_instances))
        .route("/_mock/instances/{id}", get(control::get_instance))
        .route(
            "/_mock/instances/{id}/status",
            put(control::put_instance_status),
        )
        .route("/_mock/instances/{id}/tamper", put(control::put_tamper))
        .route("/_mock/tokens/revoke", post(control::revoke_tokens))
        .route("/_mock/stats", get(control::get_stats))
        .route("/_mock/reset-stats", post(control::reset_stats));

    Router::new()
        .merge(v1)
        .merge(mock)
        .route(auth::TOKEN_PATH, post(auth::token))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(
            shared.clone(),
            echo::echo_request_in_errors,
        ))
        .layer(from_fn(gateway::echo_request_id))
        .with_state(shared)
}

async fn not_found(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    request: Request,
) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    if path.starts_with("/v1/") {
        shared.stats(|s| {
            s.requests_total += 1;
            *s.requests_by_route
                .entry(format!("{method} (unmatched)"))
                .or_default() += 1;
        });
    }
    ApiError::not_found(format!("Cannot {method} {path}")).into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Cannot {} {}", request.method(), request.uri().path()),
    )
    .into_response()
}

/// Resolves once `shutdown` turns true or its sender is gone. A helper so that no
/// `watch::Ref` (not `Send`) ends up in a `select!` state.
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Accepts connections until `shutdown` turns true (or its sender is dropped).
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE; back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => return,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            shutdown.clone(),
        ));
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let control = ConnectionControl::default();
    let for_requests = control.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(for_requests.clone());
        router.clone().oneshot(request)
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = control.aborted() => {
            tracing::debug!(%peer, "closing connection without a response");
        }
        () = stopped(&mut shutdown) => {}
    }
    // Leaving the function drops the connection, its socket and any in-flight handler.
}
