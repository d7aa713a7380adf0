//! CORS on the S3 endpoint: Put/Get/DeleteBucketCors over the object service's rules
//! ([`nuage_service::cors`]), a browser's preflight (`OPTIONS`, which s3s does not answer
//! and which carries no signature), and the `Access-Control-*` headers of the answers to
//! requests from a web origin that a rule allows.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use nuage_service::Nuage;
use nuage_service::cors::{CorsAnswer, CorsRule, allow};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use crate::errors::IntoS3;
use crate::front::{Front, tenant};

impl Front {
    pub(crate) async fn put_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let tenant = tenant(&req)?;
        let input = req.input;
        let rules: Vec<CorsRule> = input
            .cors_configuration
            .cors_rules
            .into_iter()
            .map(|r| CorsRule {
                id: r.id,
                allowed_origins: r.allowed_origins,
                allowed_methods: r.allowed_methods,
                allowed_headers: r.allowed_headers.unwrap_or_default(),
                expose_headers: r.expose_headers.unwrap_or_default(),
                max_age_secs: r.max_age_seconds.map(|s| s.max(0) as u32),
            })
            .collect();
        self.nuage.set_cors(tenant.caller(), &input.bucket, Some(&rules)).await.s3()?;
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    pub(crate) async fn get_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let tenant = tenant(&req)?;
        let Some(rules) = self.nuage.cors(tenant.caller(), &req.input.bucket).await.s3()? else {
            return Err(s3_error!(NoSuchCORSConfiguration, "the bucket has no CORS configuration"));
        };
        let rules = rules
            .into_iter()
            .map(|r| CORSRule {
                id: r.id,
                allowed_origins: r.allowed_origins,
                allowed_methods: r.allowed_methods,
                allowed_headers: Some(r.allowed_headers).filter(|h| !h.is_empty()),
                expose_headers: Some(r.expose_headers).filter(|h| !h.is_empty()),
                max_age_seconds: r.max_age_secs.map(|s| s.min(i32::MAX as u32) as i32),
            })
            .collect();
        Ok(S3Response::new(GetBucketCorsOutput { cors_rules: Some(rules) }))
    }

    pub(crate) async fn delete_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let tenant = tenant(&req)?;
        self.nuage.set_cors(tenant.caller(), &req.input.bucket, None).await.s3()?;
        Ok(S3Response::with_status(DeleteBucketCorsOutput::default(), StatusCode::NO_CONTENT))
    }
}

/// What a request from a web origin is, read before it goes to s3s: its origin, the method
/// it asks for (a preflight's `Access-Control-Request-Method`), the headers a preflight
/// names, the bucket, and the access key it names, if any.
pub(crate) struct CrossOrigin {
    origin: String,
    method: String,
    headers: Vec<String>,
    bucket: String,
    access_key: Option<String>,
    preflight: bool,
}

impl CrossOrigin {
    /// The request's cross-origin side, if it has an `Origin` and names a bucket.
    pub(crate) fn of(request: &axum::extract::Request, bucket: Option<String>) -> Option<CrossOrigin> {
        let headers = request.headers();
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let origin = text("origin")?.to_owned();
        let bucket = bucket?;
        let preflight = request.method() == Method::OPTIONS;
        let method = if preflight {
            text("access-control-request-method").unwrap_or("").to_owned()
        } else {
            request.method().as_str().to_owned()
        };
        let asked = if preflight { text("access-control-request-headers").unwrap_or("") } else { "" };
        let headers = asked.split(',').map(str::trim).filter(|h| !h.is_empty()).map(str::to_owned).collect();
        Some(CrossOrigin {
            origin,
            method,
            headers,
            bucket,
            access_key: access_key_named(request.headers(), request.uri().query()),
            preflight,
        })
    }

    /// What the bucket's rules allow this request, if any.
    async fn allowed(&self, nuage: &Arc<Nuage>) -> Option<CorsAnswer> {
        let rules = match nuage.cors_rules_for(self.access_key.as_deref(), &self.bucket).await {
            Ok(Some(rules)) => rules,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!("CORS rules of {}: {e}", self.bucket);
                return None;
            }
        };
        let headers: Vec<&str> = self.headers.iter().map(String::as_str).collect();
        allow(&rules, &self.origin, &self.method, &headers)
    }

    /// The answer to a preflight: `200` with the headers of the rule that allows it, else
    /// `403` (S3's `AccessForbidden`).
    pub(crate) async fn preflight(&self, nuage: &Arc<Nuage>) -> axum::response::Response {
        use axum::response::IntoResponse;
        match self.allowed(nuage).await {
            Some(answer) => {
                let mut response = StatusCode::OK.into_response();
                set_headers(response.headers_mut(), &answer, true);
                response
            }
            None => {
                let mut e = S3Error::with_message(
                    S3ErrorCode::Custom("AccessForbidden".into()),
                    "CORSResponse: this CORS request is not allowed",
                );
                e.set_status_code(StatusCode::FORBIDDEN);
                crate::errors::refusal(e)
            }
        }
    }

    /// Adds to the answer of the request itself the headers of the rule that allows it;
    /// `Vary: Origin` whatever the rules say, so that a cache never gives one origin's answer
    /// to another.
    pub(crate) async fn decorate(&self, nuage: &Arc<Nuage>, headers: &mut HeaderMap) {
        if self.preflight {
            return;
        }
        match self.allowed(nuage).await {
            Some(answer) => set_headers(headers, &answer, false),
            None => {
                headers.append(http::header::VARY, HeaderValue::from_static("Origin"));
            }
        }
    }

    /// Whether this is a preflight.
    pub(crate) fn is_preflight(&self) -> bool {
        self.preflight
    }
}

fn set_headers(headers: &mut HeaderMap, answer: &CorsAnswer, preflight: bool) {
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("access-control-allow-origin", answer.allow_origin.clone());
    if answer.allow_credentials {
        put("access-control-allow-credentials", "true".into());
    }
    if !answer.expose_headers.is_empty() {
        put("access-control-expose-headers", answer.expose_headers.join(", "));
    }
    if preflight {
        put("access-control-allow-methods", answer.allow_methods.join(", "));
        if !answer.allow_headers.is_empty() {
            put("access-control-allow-headers", answer.allow_headers.join(", "));
        }
        if let Some(age) = answer.max_age_secs {
            put("access-control-max-age", age.to_string());
        }
    }
    headers.append(http::header::VARY, HeaderValue::from_static("Origin"));
    if preflight {
        headers.append(
            http::header::VARY,
            HeaderValue::from_static("Access-Control-Request-Method, Access-Control-Request-Headers"),
        );
    }
}

/// The access key a request names, signed or not: `Credential=ID/…` of a SigV4
/// `Authorization`, `X-Amz-Credential=ID/…` of a presigned URL, `AWSAccessKeyId=ID` of a
/// SigV2 one. Only to find the bucket's account: the signature is checked by s3s.
fn access_key_named(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let valid = |id: &str| {
        (!id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| id.to_owned())
    };
    if let Some(auth) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(rest) = auth.split("Credential=").nth(1)
    {
        return rest.split('/').next().and_then(valid);
    }
    for pair in query.unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "X-Amz-Credential" {
            let value = value.replace("%2F", "/").replace("%2f", "/");
            return value.split('/').next().and_then(valid);
        }
        if name == "AWSAccessKeyId" {
            return valid(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_key_is_found_in_each_way_of_signing() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=NUABC234/20261207/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
            ),
        );
        assert_eq!(access_key_named(&h, None).as_deref(), Some("NUABC234"));
        let none = HeaderMap::new();
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=NUXYZ%2F20261207%2Fus-east-1%2Fs3%2Faws4_request";
        assert_eq!(access_key_named(&none, Some(q)).as_deref(), Some("NUXYZ"));
        assert_eq!(access_key_named(&none, Some("AWSAccessKeyId=NUV2&Expires=1")).as_deref(), Some("NUV2"));
        assert_eq!(access_key_named(&none, Some("X-Amz-Credential=..%2Fx")), None);
        assert_eq!(access_key_named(&none, None), None);
    }
}
