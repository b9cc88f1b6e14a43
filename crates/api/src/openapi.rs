//! `/api/openapi.json`: the API described as OpenAPI 3.1, kept by hand next to the routes; a
//! test checks that every path it documents is served.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

pub(crate) const DOCUMENT: &str = include_str!("openapi.json");

pub(crate) async fn document() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT)
}
