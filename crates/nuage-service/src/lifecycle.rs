//! A bucket's lifecycle rules (what S3's PutBucketLifecycleConfiguration sets) and the pass
//! that applies them: current versions expire (a delete marker is put over them, as S3 does
//! in a bucket that keeps versions), delete markers with nothing under them go, versions
//! that have been noncurrent long enough go, and multipart uploads left unfinished are
//! aborted. Kept as a whole document (`bucket_configs`, kind `lifecycle`).
//!
//! Every action is the metadata store's own, under a condition checked where it commits (an
//! expiry only of the version the pass looked at, while it is still current; a removal only
//! of a version still noncurrent; an abort), so a write racing the pass wins: the pass never
//! deletes what it did not look at. Two servers running a pass at once do each action
//! once (the second finds it done).

use std::sync::Arc;

use nuage_meta::{Bucket, Error as MetaError, Precondition, VersionCursor, VersionEntry};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::background::StopSignal;
use crate::buckets::parse_document;
use crate::error::{ServiceError, ServiceResult};
use crate::state::Nuage;

/// The kind under which the rules are kept.
const KIND: &str = "lifecycle";

/// The most rules a bucket has (S3's limit).
pub const MAX_RULES: usize = 1000;

const DAY_MS: i64 = 86_400_000;

/// One rule: what it applies to (keys under `prefix`) and what it does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRule {
    /// A label, unique in the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A disabled rule does nothing.
    pub enabled: bool,
    /// The keys it applies to.
    #[serde(default)]
    pub prefix: String,
    /// Current versions this many days old expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after_days: Option<u32>,
    /// From this instant (Unix ms, a midnight UTC) current versions expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_on: Option<i64>,
    /// A delete marker that is its key's only version goes.
    #[serde(default)]
    pub expired_delete_markers: bool,
    /// Versions noncurrent for this many days go...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_after_days: Option<u32>,
    /// ...but the newest this many noncurrent versions of each key stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_noncurrent: Option<u32>,
    /// Multipart uploads started this many days ago are aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_multipart_after_days: Option<u32>,
}

impl LifecycleRule {
    fn acts_on_versions(&self) -> bool {
        self.expire_after_days.is_some()
            || self.expire_on.is_some()
            || self.expired_delete_markers
            || self.noncurrent_after_days.is_some()
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LifecycleReport {
    /// Buckets with rules.
    pub buckets: u64,
    /// Current versions expired (a delete marker put over each).
    pub expired: u64,
    /// Delete markers with nothing under them removed.
    pub markers_removed: u64,
    /// Noncurrent versions removed.
    pub noncurrent_removed: u64,
    /// Multipart uploads aborted.
    pub uploads_aborted: u64,
    /// Buckets whose pass failed (logged; the pass went on with the others).
    pub failed: u64,
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid("invalid_lifecycle", message)
}

/// Checks rules as S3 does: 1 to [`MAX_RULES`], ids unique and at most 255 characters, each
/// with an action; days at least 1; a date at midnight UTC; not both days and a date; a
/// delete-marker cleanup not with an expiration (S3 refuses the pair).
pub fn check(rules: &[LifecycleRule]) -> ServiceResult<()> {
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(invalid(format!("a lifecycle configuration has 1 to {MAX_RULES} rules")));
    }
    let mut ids = std::collections::HashSet::new();
    for r in rules {
        if let Some(id) = &r.id {
            if id.chars().count() > 255 || id.chars().any(char::is_control) {
                return Err(invalid("a rule id has at most 255 characters, none a control character"));
            }
            if !ids.insert(id) {
                return Err(invalid(format!("two rules have the id {id:?}")));
            }
        }
        if r.prefix.chars().any(char::is_control) {
            return Err(invalid("a prefix holds a control character, which no key has"));
        }
        if !r.acts_on_versions() && r.abort_multipart_after_days.is_none() {
            return Err(invalid("a rule needs an action: an expiration, or an abort of unfinished uploads"));
        }
        let days = [r.expire_after_days, r.noncurrent_after_days, r.abort_multipart_after_days];
        if days.into_iter().flatten().any(|d| d == 0) {
            return Err(invalid("a number of days is at least 1"));
        }
        if r.expire_after_days.is_some() && r.expire_on.is_some() {
            return Err(invalid("an expiration has days or a date, not both"));
        }
        if r.expire_on.is_some_and(|t| t.rem_euclid(DAY_MS) != 0) {
            return Err(invalid("an expiration date is a midnight UTC"));
        }
        if r.expired_delete_markers && (r.expire_after_days.is_some() || r.expire_on.is_some()) {
            return Err(invalid("ExpiredObjectDeleteMarker cannot be given with days or a date"));
        }
        if r.keep_noncurrent.is_some() && r.noncurrent_after_days.is_none() {
            return Err(invalid("a count of noncurrent versions to keep needs their days"));
        }
    }
    Ok(())
}

/// When something made at `made` is `days` old as S3 counts: at the midnight UTC after
/// `made` plus the days.
fn due(made: i64, days: u32) -> i64 {
    let at = made.saturating_add(i64::from(days) * DAY_MS);
    at.saturating_add(DAY_MS - 1).div_euclid(DAY_MS).saturating_mul(DAY_MS)
}

/// Whether an outcome of a pass's action is a race it lost (the key changed, or another pass
/// did it), which is no failure.
fn lost_race(e: &MetaError) -> bool {
    matches!(e, MetaError::PreconditionFailed | MetaError::ObjectNotFound | MetaError::MultipartNotFound)
}

impl Nuage {
    /// The lifecycle rules of the caller's `bucket` (none: it has none).
    pub async fn lifecycle(&self, caller: Caller, bucket: &str) -> ServiceResult<Option<Vec<LifecycleRule>>> {
        let b = self.meta.bucket(caller.account_id, bucket).await?;
        self.bucket_document(b.id, KIND).await
    }

    /// Sets the lifecycle rules of the caller's `bucket` (checked: `invalid_lifecycle`), or
    /// with none removes them.
    pub async fn set_lifecycle(
        &self,
        caller: Caller,
        bucket: &str,
        rules: Option<&[LifecycleRule]>,
    ) -> ServiceResult<()> {
        if let Some(rules) = rules {
            check(rules)?;
        }
        self.set_bucket_document(caller, bucket, KIND, rules).await
    }

    /// Applies every bucket's lifecycle rules as of `now` (Unix ms): one whole pass, which
    /// ends early, between two buckets, when `stop` is set. A bucket whose pass fails is
    /// logged and counted, and the others go on.
    pub async fn apply_lifecycle(
        self: &Arc<Self>,
        now: i64,
        stop: &StopSignal,
    ) -> ServiceResult<LifecycleReport> {
        let mut report = LifecycleReport::default();
        for (bucket, body) in self.meta.buckets_configured(KIND).await? {
            if stop.is_set() {
                break;
            }
            report.buckets += 1;
            let done = async {
                for rule in parse_document::<Vec<LifecycleRule>>(&body, KIND)?.iter().filter(|r| r.enabled) {
                    if rule.acts_on_versions() {
                        self.apply_to_versions(&bucket, rule, now, &mut report).await?;
                    }
                    if let Some(days) = rule.abort_multipart_after_days {
                        self.abort_old_uploads(&bucket, rule, now, days, &mut report).await?;
                    }
                }
                Ok::<_, ServiceError>(())
            }
            .await;
            if let Err(e) = done {
                report.failed += 1;
                tracing::warn!("lifecycle of bucket {} (account {}): {e}", bucket.name, bucket.account_id);
            }
        }
        Ok(report)
    }

    async fn apply_to_versions(
        &self,
        bucket: &Bucket,
        rule: &LifecycleRule,
        now: i64,
        report: &mut LifecycleReport,
    ) -> ServiceResult<()> {
        // Whether a version made at `made` has expired: S3 counts whole days, to the
        // midnight UTC after `made` + days.
        let expired = |made: i64| match (rule.expire_after_days, rule.expire_on) {
            (Some(days), _) => now >= due(made, days),
            (None, Some(on)) => now >= on,
            _ => false,
        };
        let keep = rule.keep_noncurrent.unwrap_or(0);
        let prefix = nuage_core::key::normalize_prefix(&rule.prefix);
        let mut cursor: Option<VersionCursor> = None;
        // The key being walked, when its newer version was made, and how many of its
        // noncurrent versions came so far (a key's versions may straddle two pages).
        let mut walking: Option<(String, i64, u32)> = None;
        loop {
            let page = self.meta.list_versions(bucket, &prefix, None, cursor.clone(), 1000).await?;
            for entry in &page.entries {
                let VersionEntry::Version { version: v, latest } = entry else { continue };
                if *latest {
                    walking = Some((v.key.clone(), v.created_at, 0));
                    self.apply_to_current(bucket, rule, v, expired(v.created_at), report).await?;
                    continue;
                }
                // A noncurrent version: noncurrent since its newer version was made. With
                // no newer one seen (a head that changed under the pass), wait for the next.
                let since = match walking.as_mut() {
                    Some((key, made, seen)) if *key == v.key => {
                        *seen += 1;
                        Some((std::mem::replace(made, v.created_at), *seen))
                    }
                    _ => {
                        walking = Some((v.key.clone(), v.created_at, 1));
                        None
                    }
                };
                let Some((since, seen)) = since else { continue };
                if seen > keep && rule.noncurrent_after_days.is_some_and(|days| now >= due(since, days)) {
                    // Only if still noncurrent when it commits: the head may have gone since.
                    match self.meta.delete_version(bucket, &v.key, v.id, &Precondition::default(), true).await
                    {
                        Ok(_) => report.noncurrent_removed += 1,
                        Err(e) if lost_race(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            match page.next {
                Some((key, Some(id))) => cursor = Some(VersionCursor { key, below: id }),
                Some((key, None)) => cursor = Some(VersionCursor { key, below: 0 }),
                None => return Ok(()),
            }
        }
    }

    /// The actions on a key's current version: its expiration, or the removal of a delete
    /// marker left alone.
    async fn apply_to_current(
        &self,
        bucket: &Bucket,
        rule: &LifecycleRule,
        v: &nuage_meta::Version,
        expired: bool,
        report: &mut LifecycleReport,
    ) -> ServiceResult<()> {
        let outcome = if v.tombstone {
            if !rule.expired_delete_markers || self.meta.versions(bucket, &v.key).await?.len() != 1 {
                return Ok(());
            }
            self.meta.delete_version(bucket, &v.key, v.id, &Precondition::default(), false).await.map(|_| {
                report.markers_removed += 1;
            })
        } else {
            if !expired {
                return Ok(());
            }
            // Only this version, if still current when the delete commits.
            self.meta.expire_version(bucket, &v.key, v.id).await.map(|_| {
                report.expired += 1;
            })
        };
        match outcome {
            Err(e) if !lost_race(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn abort_old_uploads(
        self: &Arc<Self>,
        bucket: &Bucket,
        rule: &LifecycleRule,
        now: i64,
        days: u32,
        report: &mut LifecycleReport,
    ) -> ServiceResult<()> {
        let prefix = nuage_core::key::normalize_prefix(&rule.prefix);
        let mut after: Option<(String, String)> = None;
        loop {
            let uploads = self
                .meta
                .multiparts(bucket.id, &prefix, after.as_ref().map(|(k, i)| (k.as_str(), i.as_str())), 1000)
                .await?;
            let Some(last) = uploads.last() else { return Ok(()) };
            after = Some((last.key.clone(), last.id.clone()));
            for u in uploads.iter().filter(|u| now >= due(u.created_at, days)) {
                match self.abort_multipart(bucket.account_id, &bucket.name, &u.key, &u.id).await {
                    Ok(()) => report.uploads_aborted += 1,
                    Err(e) if e.code == "multipart_not_found" => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_end_at_the_midnight_after() {
        let noon = 20_000 * DAY_MS + DAY_MS / 2;
        assert_eq!(due(noon, 1), 20_002 * DAY_MS);
        assert_eq!(due(20_000 * DAY_MS, 1), 20_001 * DAY_MS, "a midnight is its own");
    }

    #[test]
    fn rules_are_checked_as_s3_checks_them() {
        let ok = LifecycleRule { enabled: true, expire_after_days: Some(30), ..Default::default() };
        assert!(check(std::slice::from_ref(&ok)).is_ok());
        assert!(check(&[]).is_err());
        assert!(check(&[LifecycleRule { enabled: true, ..Default::default() }]).is_err(), "no action");
        assert!(check(&[LifecycleRule { expire_after_days: Some(0), ..ok.clone() }]).is_err());
        assert!(check(&[LifecycleRule { expire_on: Some(DAY_MS * 20_000), ..ok.clone() }]).is_err(), "both");
        let on =
            LifecycleRule { expire_after_days: None, expire_on: Some(DAY_MS * 20_000 + 1), ..ok.clone() };
        assert!(check(&[on]).is_err(), "not a midnight");
        let twice = LifecycleRule { id: Some("a".into()), ..ok.clone() };
        assert!(check(&[twice.clone(), twice]).is_err());
        let keep = LifecycleRule { keep_noncurrent: Some(2), ..ok.clone() };
        assert!(check(&[keep]).is_err());
        let markers = LifecycleRule { expired_delete_markers: true, ..ok };
        assert!(check(&[markers]).is_err());
    }
}
