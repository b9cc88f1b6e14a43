//! The review console: a page and its two bundles, built from npm packages at build time
//! (`build.rs`) and embedded. The page may not be framed (approve buttons must not be
//! clickjacked) and loads nothing from elsewhere.
//!
//! Built without the `console` feature, witness has no console: its page and assets answer 404
//! with a message that says so, and the API works as ever.

#[cfg(not(feature = "console"))]
pub(crate) use absent::{asset, index};
#[cfg(feature = "console")]
pub use embedded::NODE_PROJECT;
#[cfg(feature = "console")]
pub(crate) use embedded::{asset, index};

#[cfg(feature = "console")]
mod embedded {
    use axum::extract::Path;
    use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};

    use crate::ApiError;

    /// Where `build.rs` copied the console's sources and installed its npm packages. The browser
    /// tests run their scripts (`tests/*.mjs`) from here, where node finds playwright-core.
    pub const NODE_PROJECT: &str = concat!(env!("OUT_DIR"), "/npm");

    const INDEX: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/console/index.html"));
    const APP_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/console/app.js"));
    const APP_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/console/app.css"));

    /// Scripts and styles from witness only. The player sets styles on its elements and compiles
    /// its terminal emulator from WebAssembly inside the bundle.
    const POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

    pub(crate) async fn index() -> Response {
        serve(INDEX, "text/html; charset=utf-8")
    }

    pub(crate) async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
        match file.as_str() {
            "app.js" => Ok(serve(APP_JS, "text/javascript; charset=utf-8")),
            "app.css" => Ok(serve(APP_CSS, "text/css; charset=utf-8")),
            _ => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no console asset {file}"))),
        }
    }

    fn serve(body: &'static [u8], content_type: &'static str) -> Response {
        (
            [
                (CONTENT_TYPE, content_type),
                (CONTENT_SECURITY_POLICY, POLICY),
                (X_FRAME_OPTIONS, "DENY"),
                (X_CONTENT_TYPE_OPTIONS, "nosniff"),
                // The bundles change with the binary; a restart must not leave browsers on old ones.
                (CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response()
    }
}

#[cfg(not(feature = "console"))]
mod absent {
    use axum::http::StatusCode;

    use crate::ApiError;

    pub(crate) async fn index() -> ApiError {
        without_console()
    }

    pub(crate) async fn asset() -> ApiError {
        without_console()
    }

    fn without_console() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "this witness was built without the review console (cargo feature `console`); the API is listed at /api/openapi.json",
        )
    }
}
