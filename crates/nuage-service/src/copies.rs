//! Copies of a version onto another key (S3's CopyObject): the manifest copied in the
//! commit's transaction, as a restore is (`Nuage::copy_version`), no byte read or moved.

use std::sync::Arc;

use nuage_meta::{Committed, Precondition, Version};

use crate::metrics::add;
use crate::names::{ReadKey, check_key};
use crate::objects::{Attributes, precondition_failed, refuse_e2e};
use crate::read::{Answer, ReadConditions, ReadOptions};
use crate::{Nuage, ServiceError, ServiceResult};

impl Nuage {
    /// Copies a version of `from`'s key (its current one, or `version`) as a new version of
    /// `to`'s `to_key` in the caller's buckets: a copy of the manifest, no byte read or
    /// moved, charged as a write of the same content would be. `conditions` are the
    /// source's (`x-amz-copy-source-if-*`): one that does not hold is
    /// `precondition_failed`, an unmodified one too; `precondition` is the target's. The
    /// version keeps the source's content type and attributes, or `replace`'s (whose
    /// checksums are the source's: they describe the content). A copy of the current
    /// version onto itself that changes nothing is refused (`copy_changes_nothing`).
    /// Neither bucket may be end-to-end.
    #[allow(clippy::too_many_arguments)]
    pub async fn copy_object(
        self: &Arc<Self>,
        account_id: i64,
        from: &str,
        from_key: ReadKey,
        version: Option<i64>,
        conditions: ReadConditions,
        to: &str,
        to_key: &str,
        replace: Option<(Option<String>, Attributes)>,
        precondition: &Precondition,
    ) -> ServiceResult<(Version, Committed)> {
        let to_key = check_key(to_key)?;
        let target = self.meta.bucket(account_id, to).await?;
        refuse_e2e(&target)?;
        let options = ReadOptions { version, conditions, range: None };
        let read = self.read(account_id, from, from_key, options).await?;
        if read.answer == Answer::NotModified {
            return Err(precondition_failed());
        }
        let source = read.version;
        let origin = self.meta.bucket(account_id, from).await?;
        if replace.is_none() && origin.id == target.id && source.key == to_key {
            let current = self.meta.head(&target, &to_key).await.ok().map(|v| v.id);
            if current == Some(source.id) {
                return Err(ServiceError::invalid(
                    "copy_changes_nothing",
                    "this copies the current version onto itself and changes nothing; \
                     replace its metadata, or copy an older version",
                ));
            }
        }
        let replace = match replace {
            None => None,
            Some((content_type, mut attributes)) => {
                attributes.check()?;
                attributes.checksums = Attributes::of(&source).checksums;
                Some((content_type, attributes.encode()))
            }
        };
        let committed = self
            .meta
            .copy_version(&origin, &source.key, source.id, &target, &to_key, replace, precondition, None)
            .await?;
        if !committed.replayed {
            add(&self.metrics.versions_committed, 1);
        }
        Ok((source, committed))
    }
}
