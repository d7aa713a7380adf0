//! The OpenAPI document, assembled by utoipa from the handlers' `#[utoipa::path]`
//! annotations and the answer types' `ToSchema` derives, served at `/v1/openapi.json`.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{api, error, objects, shares, uploads};
use nuage_http::extract::Json;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "nuage",
        description = "A storage cloud that keeps links; the bytes live encrypted on rented providers. \
                       Error codes: docs/api.md."
    ),
    paths(
        openapi, api::healthz, api::metrics, api::login, api::account, api::create_token,
        api::list_tokens, api::revoke_token, api::create_access_key, api::list_access_keys, api::revoke_access_key, api::list_buckets, api::create_bucket, api::bucket_info,
        api::delete_bucket, objects::put, objects::get, objects::head, objects::delete, objects::list, objects::versions, objects::restore,
        api::grant_keys, api::edges, uploads::settings, uploads::start, uploads::more_chunks, uploads::abort, uploads::put_chunk, uploads::commit,
        shares::create, shares::list, shares::revoke, shares::page, shares::manifest, shares::get_chunk, shares::info,
        shares::unlock, shares::content, shares::share_manifest,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&BearerToken)
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    /// Declares the bearer token, and the `401` of every operation that needs one (the
    /// codes of `caller::Caller`, written once here rather than in every annotation); makes
    /// the operation ids unique.
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme("token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        }
        let unauthorized = ResponseBuilder::new()
            .description("`token_missing`, `token_invalid`, `token_expired`, `token_revoked`")
            .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.head,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                // Handlers of two modules share names (`list`): an id is the tag and the name.
                if let (Some(id), Some(tag)) = (&op.operation_id, op.tags.as_ref().and_then(|t| t.first())) {
                    op.operation_id = Some(format!("{tag}_{id}"));
                }
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    op.responses
                        .responses
                        .entry("401".to_owned())
                        .or_insert_with(|| RefOr::T(unauthorized.clone()));
                }
            }
        }
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The OpenAPI document of this API, generated from the handlers' annotations.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "service",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
