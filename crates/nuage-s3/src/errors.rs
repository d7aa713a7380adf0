//! The service's refusals as S3 error codes: each stable code of the service ([`docs/api.md`])
//! has the S3 code a client expects; a code S3 has no name for (the quota, full storage)
//! gets one of nuage's own, listed in `docs/s3.md`.

use http::StatusCode;
use nuage_service::{ErrorKind, ServiceError};
use s3s::{S3Error, S3ErrorCode};

/// The S3 code of an account over its quota (403: retrying does not help).
pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";

/// The S3 code of providers that are full (507).
pub const INSUFFICIENT_STORAGE: &str = "InsufficientStorage";

/// The S3 error for a refusal of the service.
pub(crate) fn s3_error_of(e: ServiceError) -> S3Error {
    use S3ErrorCode as C;
    if e.kind == ErrorKind::Incomplete
        && let Some(source) = &e.source
    {
        return body_error(source.as_ref());
    }
    let (code, status) = match e.code {
        "bucket_not_found" => (C::NoSuchBucket, None),
        "object_not_found" => (C::NoSuchKey, None),
        "version_not_found" => (C::NoSuchVersion, None),
        "bucket_exists" => (C::BucketAlreadyOwnedByYou, None),
        "bucket_not_empty" => (C::BucketNotEmpty, None),
        "invalid_bucket_name" => (C::InvalidBucketName, None),
        "precondition_failed" => (C::PreconditionFailed, None),
        "range_not_satisfiable" => (C::InvalidRange, None),
        "bad_digest" => (C::BadDigest, None),
        "invalid_digest" => (C::InvalidDigest, None),
        "metadata_too_large" => (C::MetadataTooLarge, None),
        "end_to_end_bucket" => (C::InvalidRequest, None),
        "request_timeout" => (C::RequestTimeout, None),
        "upload_not_found" | "multipart_not_found" => (C::NoSuchUpload, None),
        "invalid_part" => (C::InvalidPart, None),
        "copy_changes_nothing" => (C::InvalidRequest, None),
        "invalid_part_order" => (C::InvalidPartOrder, None),
        "part_too_small" => (C::EntityTooSmall, None),
        "part_too_large" => (C::EntityTooLarge, None),
        "quota_exceeded" => (C::Custom(QUOTA_EXCEEDED.into()), Some(StatusCode::FORBIDDEN)),
        "insufficient_storage" => {
            (C::Custom(INSUFFICIENT_STORAGE.into()), Some(StatusCode::INSUFFICIENT_STORAGE))
        }
        _ => match e.kind {
            ErrorKind::Invalid | ErrorKind::ContentMismatch | ErrorKind::IdempotencyConflict => {
                (C::InvalidArgument, None)
            }
            ErrorKind::Incomplete => (C::IncompleteBody, None),
            ErrorKind::Unauthorized | ErrorKind::Forbidden => (C::AccessDenied, None),
            ErrorKind::NotFound | ErrorKind::Gone => (C::NoSuchKey, None),
            ErrorKind::Conflict => (C::OperationAborted, None),
            ErrorKind::PreconditionFailed => (C::PreconditionFailed, None),
            ErrorKind::TooLarge => (C::EntityTooLarge, None),
            ErrorKind::RangeNotSatisfiable => (C::InvalidRange, None),
            ErrorKind::Throttled => (C::SlowDown, None),
            ErrorKind::Unavailable => (C::ServiceUnavailable, None),
            ErrorKind::InsufficientStorage => {
                (C::Custom(INSUFFICIENT_STORAGE.into()), Some(StatusCode::INSUFFICIENT_STORAGE))
            }
            // Internal, and a kind added later until it is mapped here.
            _ => (C::InternalError, None),
        },
    };
    let mut out = S3Error::with_message(code, e.message);
    if let Some(status) = status {
        out.set_status_code(status);
    }
    out
}

/// As [`s3_error_of`], for `?`.
pub(crate) trait IntoS3<T> {
    fn s3(self) -> s3s::S3Result<T>;
}

impl<T> IntoS3<T> for Result<T, ServiceError> {
    fn s3(self) -> s3s::S3Result<T> {
        self.map_err(s3_error_of)
    }
}

/// Why a request's body could not be read: too slow (`RequestTimeout`), a chunk whose
/// signature does not verify (`SignatureDoesNotMatch`: s3s checks each chunk of a signed
/// `aws-chunked` body as it comes; its error type is private, so it is known by its
/// message), a body that is no `aws-chunked` encoding (`IncompleteBody`), or one that ended
/// early.
fn body_error(source: &(dyn std::error::Error + 'static)) -> S3Error {
    if nuage_http::body_error(source).code == "request_timeout" {
        return S3Error::with_message(
            S3ErrorCode::RequestTimeout,
            "the body came too slowly; nothing was stored",
        );
    }
    let mut cause = Some(source);
    while let Some(c) = cause {
        let text = c.to_string();
        if text.contains("AwsChunkedStreamError: SignatureMismatch") {
            return S3Error::with_message(
                S3ErrorCode::SignatureDoesNotMatch,
                "a chunk's signature does not match; nothing was stored",
            );
        }
        // s3s's wrapper of the body's own error keeps only its message.
        if text.contains("AwsChunkedStreamError: Underlying")
            && text.contains("the request body came too slowly")
        {
            return S3Error::with_message(
                S3ErrorCode::RequestTimeout,
                "the body came too slowly; nothing was stored",
            );
        }
        if text.contains("AwsChunkedStreamError") {
            return S3Error::with_message(
                S3ErrorCode::IncompleteBody,
                "the aws-chunked body is not well formed or ended early; nothing was stored",
            );
        }
        cause = match c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    S3Error::with_message(
        S3ErrorCode::IncompleteBody,
        "the body ended early or could not be read; nothing was stored",
    )
}

/// An S3 error answered outside s3s (before it reads the request), as s3s would write it.
pub(crate) fn refusal(error: s3s::S3Error) -> axum::response::Response {
    let status = error.status_code().unwrap_or(http::StatusCode::FORBIDDEN);
    use axum::response::IntoResponse;
    match error.to_http_response() {
        Ok(answer) => answer.map(axum::body::Body::new).into_response(),
        Err(_) => status.into_response(),
    }
}
