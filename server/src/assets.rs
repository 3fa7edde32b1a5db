//! The built site's files under `/pkg` (the WASM, its JS glue, the stylesheet).
//!
//! The optimized build (`make run`) names each file by its content (`confab.<hash>.wasm`) and
//! writes `.br` and `.gz` siblings: such a file never changes, so it is cached for a year
//! (`immutable`), and a client that accepts Brotli or gzip gets the precompressed bytes with
//! no work per request. Files without a hash (the debug build) are revalidated every time.

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tower_http::services::ServeDir;

/// `/pkg/...` served from `site_root/pkg`.
pub fn pkg_routes<S: Clone + Send + Sync + 'static>(site_root: &str, pkg_dir: &str) -> Router<S> {
    let files = ServeDir::new(std::path::Path::new(site_root).join(pkg_dir))
        .precompressed_br()
        .precompressed_gzip();
    Router::new()
        .nest_service(&format!("/{pkg_dir}"), files)
        .layer(axum::middleware::from_fn(cache_control))
}

async fn cache_control(request: Request, next: Next) -> Response {
    let immutable = is_fingerprinted(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() || response.status().as_u16() == 304 {
        let value = if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}

/// Whether a file name carries a content hash: `name.<16 hex digits>.ext`.
fn is_fingerprinted(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut parts = name.split('.');
    let (_, hash) = (parts.next(), parts.next());
    hash.is_some_and(|hash| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        && parts.next().is_some()
}

/// Whether the optimized build's hashes are next to this binary (Leptos then links the
/// fingerprinted files).
pub fn fingerprinted_build() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("hash.txt")))
        .is_some_and(|hashes| hashes.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprinted_names_are_recognized() {
        assert!(is_fingerprinted("/pkg/confab.0123456789abcdef.wasm"));
        assert!(!is_fingerprinted("/pkg/confab.wasm"));
        assert!(!is_fingerprinted("/pkg/confab.0123.js"));
        assert!(!is_fingerprinted("/pkg/confab.0123456789abcdef"));
    }
}
