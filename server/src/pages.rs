//! The app's pages and server functions as routes.
//!
//! The app has its own small router (`app::routing`), so the page paths are listed there,
//! not discovered by walking a `leptos_router` tree. Each page is rendered whole before it
//! is sent (history included, so it reads without JavaScript); a server function is answered
//! at its path; any other path is a file of the site or, failing that, the app's 404 page.

use crate::state::AppState;
use axum::body::Body;
use axum::http::Request;
use axum::routing::{on, MethodFilter};
use axum::Router;
use leptos::prelude::provide_context;

/// Pages, server functions and the fallback. `context` runs before each render and each
/// server function (the backend, the page's nonce); the state is provided too.
pub fn routes(
    state: &AppState,
    context: impl Fn() + Clone + Send + Sync + 'static,
) -> Router<AppState> {
    let leptos = state.leptos().clone();
    // Server functions and the renderer spawn their work on tokio.
    let _ = any_spawner::Executor::init_tokio();
    let context = {
        let state = state.clone();
        move || {
            provide_context(state.clone());
            context();
        }
    };
    let mut router = Router::new();
    let page = leptos_axum::render_app_async_with_context(context.clone(), move || {
        app::shell(leptos.clone())
    });
    for path in app::routing::Page::SERVER_PATHS {
        router = router.route(path, axum::routing::get(page.clone()));
    }
    for (path, method) in leptos::server_fn::axum::server_fn_paths() {
        let Ok(filter) = MethodFilter::try_from(method.clone()) else {
            tracing::error!(path, %method, "server function with an unroutable method: left out");
            continue;
        };
        let context = context.clone();
        let handler = move |request: Request<Body>| async move {
            leptos_axum::handle_server_fns_with_context(context, request).await
        };
        router = router.route(path, on(filter, handler));
    }
    router.fallback(leptos_axum::file_and_error_handler_with_context::<
        AppState,
        _,
    >(context, app::shell))
}
