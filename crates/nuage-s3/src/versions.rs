//! S3's operations on versions over the object service's: deletes (of a key, which makes a
//! delete marker, or of one version, for good), ListObjectVersions, and the versioning
//! status (`Enabled`: the bucket keeps versions; `Suspended`: it keeps one).

use nuage_meta::Precondition;
use nuage_service::conditions;
use nuage_service::names::read_key;
use nuage_service::read::VersionListOptions;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use crate::errors::IntoS3;
use crate::front::{Front, encoding, etag, tenant, text, timestamp, url_encode, version_id};
use crate::keys::Tenant;

/// What one delete did.
#[derive(Debug, Default)]
pub(crate) struct Deleted {
    /// The delete marker it made, or the version it removed.
    pub version_id: Option<String>,
    /// The version made or removed is a delete marker.
    pub delete_marker: bool,
}

impl Front {
    /// Deletes `key`: with no version, by making a delete marker its current version (the
    /// versions before it stay); with one, by removing that version for good. A key or
    /// version that is not there is answered as deleted, as S3 does.
    pub(crate) async fn delete_one(
        &self,
        tenant: &Tenant,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        precondition: &Precondition,
    ) -> S3Result<Deleted> {
        let account = tenant.key.account_id;
        let key = read_key(key).s3()?;
        let Some(id) = version_id(version)? else {
            return match self.nuage.delete(account, bucket, key, precondition, None).await {
                Ok(c) => Ok(Deleted { version_id: Some(c.version.id.to_string()), delete_marker: true }),
                Err(e) if e.code == "object_not_found" => Ok(Deleted::default()),
                Err(e) => Err(crate::errors::s3_error_of(e)),
            };
        };
        match self.nuage.delete_version(account, bucket, key, id, precondition).await {
            Ok((removed, _)) => {
                Ok(Deleted { version_id: Some(id.to_string()), delete_marker: removed.tombstone })
            }
            Err(e) if e.code == "object_not_found" => {
                Ok(Deleted { version_id: Some(id.to_string()), delete_marker: false })
            }
            Err(e) => Err(crate::errors::s3_error_of(e)),
        }
    }

    pub(crate) async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let precondition = conditions::precondition(text(&req.headers));
        let done = self
            .delete_one(&tenant, &input.bucket, &input.key, input.version_id.as_deref(), &precondition)
            .await?;
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: done.delete_marker.then_some(true),
            version_id: done.version_id,
            ..Default::default()
        }))
    }

    pub(crate) async fn list_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let tenant = tenant(&req)?;
        let input = req.input;
        let encode = encoding(&input.encoding_type)?;
        let max_keys = input.max_keys.unwrap_or(1000);
        if max_keys < 0 {
            return Err(s3_error!(InvalidArgument, "max-keys is not negative"));
        }
        let max_keys = max_keys.min(1000);
        let options = VersionListOptions {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            key_marker: input.key_marker.clone().filter(|m| !m.is_empty()),
            version_marker: version_id(input.version_id_marker.as_deref().filter(|m| !m.is_empty()))?,
            // 0 still answers whether the bucket is there; a page of one then says nothing.
            limit: Some(max_keys.max(1) as usize),
        };
        let mut page = self.nuage.list_versions(tenant.key.account_id, &input.bucket, &options).await.s3()?;
        if max_keys == 0 {
            page = Default::default();
        }
        let name = |s: &str| if encode { url_encode(s) } else { s.to_owned() };
        let (mut versions, mut markers) = (Vec::new(), Vec::new());
        for (v, latest) in &page.versions {
            if v.tombstone {
                markers.push(DeleteMarkerEntry {
                    is_latest: Some(*latest),
                    key: Some(name(&v.key)),
                    last_modified: Some(timestamp(v.created_at)),
                    version_id: Some(v.id.to_string()),
                    owner: None,
                });
            } else {
                versions.push(ObjectVersion {
                    e_tag: etag(v),
                    is_latest: Some(*latest),
                    key: Some(name(&v.key)),
                    last_modified: Some(timestamp(v.created_at)),
                    size: Some(v.size as i64),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    )),
                    version_id: Some(v.id.to_string()),
                    ..Default::default()
                });
            }
        }
        let prefixes = page.prefixes.iter().map(|p| CommonPrefix { prefix: Some(name(p)) }).collect();
        let (next_key, next_version) = match page.next {
            Some((key, version)) => (Some(name(&key)), version.map(|v| v.to_string())),
            None => (None, None),
        };
        let named = |s: Option<String>| s.map(|s| name(&s));
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket),
            versions: Some(versions),
            delete_markers: Some(markers),
            common_prefixes: Some(prefixes),
            is_truncated: Some(next_key.is_some()),
            next_key_marker: next_key,
            next_version_id_marker: next_version,
            key_marker: named(input.key_marker),
            version_id_marker: input.version_id_marker,
            max_keys: Some(max_keys),
            prefix: named(input.prefix),
            delimiter: named(input.delimiter),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    pub(crate) async fn get_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let tenant = tenant(&req)?;
        let bucket = self.nuage.bucket(tenant.caller(), &req.input.bucket).await.s3()?;
        let status = if bucket.policy.keep_versions == 1 {
            BucketVersioningStatus::SUSPENDED
        } else {
            BucketVersioningStatus::ENABLED
        };
        let status = Some(BucketVersioningStatus::from_static(status));
        Ok(S3Response::new(GetBucketVersioningOutput { status, mfa_delete: None }))
    }

    pub(crate) async fn put_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let tenant = tenant(&req)?;
        let input = req.input;
        let config = input.versioning_configuration;
        if config.mfa_delete.as_ref().is_some_and(|m| m.as_str().eq_ignore_ascii_case(MFADelete::ENABLED)) {
            return Err(s3_error!(NotImplemented, "MFA delete is not supported"));
        }
        let enabled = match config.status.as_ref().map(|s| s.as_str()) {
            Some(s) if s.eq_ignore_ascii_case(BucketVersioningStatus::ENABLED) => true,
            Some(s) if s.eq_ignore_ascii_case(BucketVersioningStatus::SUSPENDED) => false,
            Some(s) => return Err(s3_error!(MalformedXML, "unknown versioning status {s}")),
            None => return Err(s3_error!(MalformedXML, "the versioning configuration has no status")),
        };
        self.nuage.set_versioning(tenant.caller(), &input.bucket, enabled).await.s3()?;
        Ok(S3Response::new(PutBucketVersioningOutput::default()))
    }
}
