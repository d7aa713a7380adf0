//! The OpenAPI document, assembled by utoipa from the handlers' `#[utoipa::path]`
//! annotations and the answer types' `ToSchema` derives, served at `/v1/openapi.json`.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{api, error, objects, shares, uploads};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "nuage",
        description = "A storage cloud that keeps links; the bytes live encrypted on rented providers. \
                       Error codes: docs/api.md."
    ),
    paths(
        api::openapi, api::healthz, api::metrics, api::login, api::account, api::create_token,
        api::list_tokens, api::revoke_token, api::list_buckets, api::create_bucket, api::bucket_info,
        api::delete_bucket, objects::put, objects::get, objects::delete, objects::list, objects::versions,
        api::grant_keys, api::edges, uploads::settings, uploads::start, uploads::more_chunks, uploads::abort, uploads::put_chunk, uploads::commit,
        shares::create, shares::list, shares::revoke, shares::manifest, shares::get_chunk, shares::info,
        shares::unlock, shares::content, shares::share_manifest,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&BearerToken)
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme("token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        }
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
