//! Put/Get/DeleteBucketLifecycleConfiguration over the object service's lifecycle rules
//! ([`nuage_service::lifecycle`]): expirations (days or a date, and delete markers left
//! alone), noncurrent version expirations, and aborts of unfinished multipart uploads, for
//! keys under a prefix. Transitions (nuage has one storage class) and filters by tag or size
//! are refused, not ignored: a rule that would not do what it says is not kept.

use std::time::{Duration, UNIX_EPOCH};

use nuage_service::lifecycle::LifecycleRule;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use crate::errors::IntoS3;
use crate::front::{Front, tenant};

/// A rule as S3 writes it, as the service keeps it.
fn rule_of(r: LifecycleRule_) -> S3Result<LifecycleRule> {
    if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_transitions.as_ref().is_some_and(|t| !t.is_empty())
    {
        return Err(s3_error!(NotImplemented, "transitions: nuage has one storage class"));
    }
    let mut prefix = r.prefix.clone();
    if let Some(f) = &r.filter {
        if f.and.is_some()
            || f.tag.is_some()
            || f.object_size_greater_than.is_some()
            || f.object_size_less_than.is_some()
        {
            return Err(s3_error!(
                NotImplemented,
                "lifecycle filters by tag or size are not supported: use a prefix"
            ));
        }
        if f.prefix.is_some() {
            if prefix.is_some() {
                return Err(s3_error!(MalformedXML, "a rule has a Prefix or a Filter, not both"));
            }
            prefix = f.prefix.clone();
        }
    }
    let days = |d: Option<i32>, what: &str| -> S3Result<Option<u32>> {
        d.map(|d| u32::try_from(d).map_err(|_| s3_error!(InvalidArgument, "{what} is not negative")))
            .transpose()
    };
    let expiration = r.expiration.unwrap_or_default();
    let noncurrent = r.noncurrent_version_expiration.unwrap_or_default();
    let status = r.status.as_str();
    let enabled = if status.eq_ignore_ascii_case(ExpirationStatus::ENABLED) {
        true
    } else if status.eq_ignore_ascii_case(ExpirationStatus::DISABLED) {
        false
    } else {
        return Err(s3_error!(MalformedXML, "a rule's Status is Enabled or Disabled"));
    };
    Ok(LifecycleRule {
        id: r.id,
        enabled,
        prefix: prefix.unwrap_or_default(),
        expire_after_days: days(expiration.days, "Days")?,
        expire_on: expiration
            .date
            .map(|d| time::OffsetDateTime::from(d).unix_timestamp().saturating_mul(1000)),
        expired_delete_markers: expiration.expired_object_delete_marker.unwrap_or(false),
        noncurrent_after_days: days(noncurrent.noncurrent_days, "NoncurrentDays")?,
        keep_noncurrent: days(noncurrent.newer_noncurrent_versions, "NewerNoncurrentVersions")?,
        abort_multipart_after_days: days(
            r.abort_incomplete_multipart_upload.and_then(|a| a.days_after_initiation),
            "DaysAfterInitiation",
        )?,
    })
}

type LifecycleRule_ = s3s::dto::LifecycleRule;

/// A rule as the service keeps it, as S3 writes it.
fn s3_rule(r: LifecycleRule) -> LifecycleRule_ {
    let signed = |d: Option<u32>| d.map(|d| d.min(i32::MAX as u32) as i32);
    let expiration = (r.expire_after_days.is_some() || r.expire_on.is_some() || r.expired_delete_markers)
        .then(|| LifecycleExpiration {
            days: signed(r.expire_after_days),
            date: r.expire_on.map(|ms| Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))),
            expired_object_delete_marker: r.expired_delete_markers.then_some(true),
        });
    LifecycleRule_ {
        id: r.id,
        status: ExpirationStatus::from_static(if r.enabled {
            ExpirationStatus::ENABLED
        } else {
            ExpirationStatus::DISABLED
        }),
        filter: Some(LifecycleRuleFilter { prefix: Some(r.prefix), ..Default::default() }),
        expiration,
        noncurrent_version_expiration: r.noncurrent_after_days.map(|d| NoncurrentVersionExpiration {
            noncurrent_days: signed(Some(d)),
            newer_noncurrent_versions: signed(r.keep_noncurrent),
        }),
        abort_incomplete_multipart_upload: r
            .abort_multipart_after_days
            .map(|d| AbortIncompleteMultipartUpload { days_after_initiation: signed(Some(d)) }),
        noncurrent_version_transitions: None,
        prefix: None,
        transitions: None,
    }
}

impl Front {
    pub(crate) async fn put_lifecycle(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let tenant = tenant(&req)?;
        let input = req.input;
        let Some(config) = input.lifecycle_configuration else {
            return Err(s3_error!(MalformedXML, "the request has no lifecycle configuration"));
        };
        let rules = config.rules.into_iter().map(rule_of).collect::<S3Result<Vec<_>>>()?;
        self.nuage.set_lifecycle(tenant.caller(), &input.bucket, Some(&rules)).await.s3()?;
        Ok(S3Response::new(PutBucketLifecycleConfigurationOutput::default()))
    }

    pub(crate) async fn get_lifecycle(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let tenant = tenant(&req)?;
        let Some(rules) = self.nuage.lifecycle(tenant.caller(), &req.input.bucket).await.s3()? else {
            return Err(s3_error!(NoSuchLifecycleConfiguration, "the bucket has no lifecycle configuration"));
        };
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(rules.into_iter().map(s3_rule).collect()),
            ..Default::default()
        }))
    }

    pub(crate) async fn delete_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        let tenant = tenant(&req)?;
        self.nuage.set_lifecycle(tenant.caller(), &req.input.bucket, None).await.s3()?;
        Ok(S3Response::with_status(DeleteBucketLifecycleOutput::default(), http::StatusCode::NO_CONTENT))
    }
}
