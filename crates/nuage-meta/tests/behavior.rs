//! The metadata behavior suite: every test runs against SQLite (a temp file) and, when
//! `NUAGE_TEST_PG_URL` is set, against a fresh PostgreSQL database. `NUAGE_TEST_REQUIRE`
//! containing `postgres` makes a missing PostgreSQL a failure instead of a skip.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nuage_core::{ConvergenceSecret, Manifest, ManifestEntry, SealOptions, chunk};
use nuage_meta::{
    Attempt, BucketPolicy, ChunkRef, DeclareLimits, DeclaredChunk, DeletionDone, EntityTag, Error,
    EtagCondition, FREE_ATTEMPTS, ListEntry, Md5Tag, Meta, MultipartUpload, NewVersion, Opened, Part,
    PlacementState, Precondition, ProviderRecord, ProviderState, Removal, UploadSession, VersionCursor,
    VersionEntry, now_ms,
};
use sqlx::Connection;

/// Runs `test` against every configured backend.
async fn each_backend<F, Fut>(test: F)
where
    F: Fn(Arc<Meta>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("meta.db").display());
    let meta = Meta::open(&url).await.unwrap();
    test(Arc::new(meta)).await;

    let required = std::env::var("NUAGE_TEST_REQUIRE").unwrap_or_default().contains("postgres");
    match std::env::var("NUAGE_TEST_PG_URL").ok().filter(|u| !u.is_empty()) {
        Some(base) => {
            let url = fresh_pg_database(&base).await;
            let meta = Meta::open(&url).await.unwrap();
            test(Arc::new(meta)).await;
        }
        None if required => panic!("NUAGE_TEST_REQUIRE names postgres but NUAGE_TEST_PG_URL is not set"),
        None => {}
    }
}

/// Creates an empty database on the server of `base` and returns its URL.
async fn fresh_pg_database(base: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    sqlx::any::install_default_drivers();
    let name = format!(
        "nuage_t_{}_{}_{}",
        std::process::id(),
        rand::random::<u32>(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = sqlx::AnyConnection::connect(base).await.expect("connecting to PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let (server, _) = base.rsplit_once('/').expect("URL with a database name");
    format!("{server}/{name}")
}

/// A real manifest over real sealed chunks, and the chunk references to commit with it.
fn content(parts: &[&[u8]]) -> NewVersion {
    let secret = ConvergenceSecret::from_bytes([7; 32]);
    let mut entries = Vec::new();
    let mut chunks: Vec<ChunkRef> = Vec::new();
    let mut hasher = blake3::Hasher::new();
    let mut size = 0;
    for p in parts {
        let sealed = chunk::seal(&secret, p, &SealOptions::default());
        hasher.update(p);
        size += p.len() as u64;
        entries.push(ManifestEntry { address: sealed.address, key: sealed.key, plain_len: sealed.plain_len });
        if !chunks.iter().any(|c| c.address == *sealed.address.as_bytes()) {
            chunks.push(ChunkRef {
                address: *sealed.address.as_bytes(),
                stored_size: sealed.bytes.len() as u32,
                providers: vec!["local".into()],
                opened: Some(Opened { plain_len: sealed.plain_len, key_hash: sealed.key.fingerprint() }),
            });
        }
    }
    let hash = *hasher.finalize().as_bytes();
    NewVersion {
        size,
        etag: hash,
        content_type: Some("text/plain".into()),
        // Stand-ins: the metadata store keeps them as given.
        md5: Some(Md5Tag { digest: hash[..16].try_into().unwrap(), parts: None }),
        attrs: Some(format!("{{\"size\":{size}}}")),
        manifest: Manifest { entries, size, hash, parts: vec![] }.encode(),
        chunks,
        lease_holder: None,
    }
}

/// What a version is charged against the quota: the stored size of its distinct chunks.
fn charged(new: &NewVersion) -> u64 {
    new.chunks.iter().map(|c| u64::from(c.stored_size)).sum()
}

fn policy(keep_versions: u32) -> BucketPolicy {
    BucketPolicy { replicas: 1, write_quorum: 1, keep_versions, e2e_key_id: None, direct_upload: false }
}

const LIMITS: DeclareLimits = DeclareLimits { max_chunks: 1000, max_bytes: 1 << 30 };

fn rand_scope() -> i64 {
    (rand::random::<u64>() >> 1) as i64
}

fn none() -> Precondition {
    Precondition::default()
}

#[tokio::test]
async fn migrations_are_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("meta.db").display());
    let first = Meta::open(&url).await.unwrap();
    assert_eq!(first.schema_version().await.unwrap(), 12);
    first.create_account("a", None, None, [1; 32]).await.unwrap();
    first.close().await;
    let again = Meta::open(&url).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), 12);
    assert_eq!(again.account_by_name("a").await.unwrap().name, "a");
}

#[tokio::test]
async fn accounts_and_tokens() {
    each_backend(|m| async move {
        let a = m.create_account("alice", Some("$argon2id$x"), Some(1000), [1; 32]).await.unwrap();
        assert!(matches!(m.create_account("alice", None, None, [2; 32]).await, Err(Error::AccountExists(_))));
        assert_eq!(m.account_by_name("alice").await.unwrap(), a);
        let s = m.account_secrets(a.id).await.unwrap();
        assert_eq!((s.password_hash.as_deref(), s.convergence_secret), (Some("$argon2id$x"), [1; 32]));
        assert!(matches!(m.account_by_name("bob").await, Err(Error::AccountNotFound)));

        let t = m.create_token(a.id, [9; 32], "laptop", Some(123)).await.unwrap();
        assert_eq!(m.token_by_hash([9; 32]).await.unwrap(), Some(t.clone()));
        assert_eq!(m.token_by_hash([8; 32]).await.unwrap(), None);
        let b = m.create_account("bob", None, None, [3; 32]).await.unwrap();
        assert!(!m.revoke_token(b.id, t.id).await.unwrap(), "bob cannot revoke alice's token");
        assert!(m.revoke_token(a.id, t.id).await.unwrap());
        assert!(!m.revoke_token(a.id, t.id).await.unwrap(), "already revoked");
        assert!(m.token_by_hash([9; 32]).await.unwrap().unwrap().revoked_at.is_some());
    })
    .await;
}

#[tokio::test]
async fn access_keys_belong_to_one_account_and_their_ids_are_never_reused() {
    each_backend(|m| async move {
        let a = m.create_account("alice", None, None, [1; 32]).await.unwrap();
        let b = m.create_account("bob", None, None, [2; 32]).await.unwrap();
        let key = |id: &str, account_id: i64, at: i64| nuage_meta::AccessKey {
            id: id.into(),
            account_id,
            name: "s3".into(),
            bucket: Some("photos".into()),
            read_only: true,
            secret_sealed: vec![1, 2, 3],
            created_at: at,
            revoked_at: None,
        };
        let k1 = key("NUAAAAAAAAAAAAAAAAAA", a.id, 10);
        m.create_access_key(&k1).await.unwrap();
        let k2 =
            nuage_meta::AccessKey { bucket: None, read_only: false, ..key("NUBBBBBBBBBBBBBBBBBB", a.id, 20) };
        m.create_access_key(&k2).await.unwrap();
        assert_eq!(m.access_key(&k1.id).await.unwrap(), Some(k1.clone()), "read back as written");
        assert_eq!(m.access_keys(a.id).await.unwrap(), vec![k2.clone(), k1.clone()], "newest first");
        assert!(m.access_keys(b.id).await.unwrap().is_empty());
        assert!(matches!(m.create_access_key(&key(&k1.id, b.id, 30)).await, Err(Error::AccessKeyExists)));
        assert!(matches!(
            m.create_access_key(&key("NUCCCCCCCCCCCCCCCCCC", 999_999, 30)).await,
            Err(Error::AccountNotFound)
        ));
        assert!(!m.revoke_access_key(b.id, &k1.id).await.unwrap(), "not bob's");
        assert!(m.revoke_access_key(a.id, &k1.id).await.unwrap());
        assert!(!m.revoke_access_key(a.id, &k1.id).await.unwrap(), "revoked once");
        assert!(m.access_key(&k1.id).await.unwrap().unwrap().revoked_at.is_some());
        assert!(
            matches!(m.create_access_key(&key(&k1.id, a.id, 40)).await, Err(Error::AccessKeyExists)),
            "revoked ids stay taken"
        );
    })
    .await;
}

#[tokio::test]
async fn buckets_belong_to_one_account() {
    each_backend(|m| async move {
        let a = m.create_account("alice", None, None, [1; 32]).await.unwrap();
        let b = m.create_account("bob", None, None, [2; 32]).await.unwrap();
        let photos = m.create_bucket(a.id, "photos", policy(0)).await.unwrap();
        assert!(matches!(m.create_bucket(a.id, "photos", policy(0)).await, Err(Error::BucketExists(_))));
        m.create_bucket(b.id, "photos", policy(3)).await.unwrap();
        assert_eq!(m.buckets(a.id).await.unwrap(), vec![photos.clone()]);
        assert_eq!(m.bucket(b.id, "photos").await.unwrap().policy.keep_versions, 3);
        assert!(matches!(m.bucket(b.id, "docs").await, Err(Error::BucketNotFound)));

        m.put_version(&photos, "x", &content(&[b"x"]), &none(), None).await.unwrap();
        assert!(matches!(m.delete_bucket(a.id, "photos").await, Err(Error::BucketNotEmpty)));
        m.delete_object(&photos, "x", &none(), None).await.unwrap();
        m.delete_bucket(a.id, "photos").await.unwrap();
        assert!(matches!(m.bucket(a.id, "photos").await, Err(Error::BucketNotFound)));
        assert_eq!(m.account(a.id).await.unwrap().used_bytes, 0);
        assert_eq!(m.chunk_totals().await.unwrap(), (0, 1), "the chunk lost its reference");
        assert!(matches!(m.delete_bucket(a.id, "photos").await, Err(Error::BucketNotFound)));
    })
    .await;
}

#[tokio::test]
async fn workers_page_the_index_in_address_order_and_keep_their_state() {
    each_backend(|m| async move {
        let a = m.create_account("alice", None, None, [1; 32]).await.unwrap();
        let two = BucketPolicy { replicas: 2, write_quorum: 1, ..policy(0) };
        let bucket = m.create_bucket(a.id, "b", two).await.unwrap();
        let parts: Vec<Vec<u8>> = (0..25u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        m.put_version(&bucket, "k", &content(&refs), &none(), None).await.unwrap();
        // Pages of 10, in address order, every chunk once, with its placements and copies.
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = m.chunks_after(cursor, 10).await.unwrap();
            let Some(last) = page.last() else { break };
            cursor = Some(last.address);
            for c in &page {
                assert_eq!(c.placements, vec![("local".to_owned(), PlacementState::Stored)]);
                assert_eq!((c.replicas, c.refcount), (2, 1));
            }
            seen.extend(page.iter().map(|c| c.address));
        }
        assert_eq!(seen.len(), 25);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "address order");
        // Placement states, counted by provider.
        assert!(
            m.change_placement(&seen[3], "local", PlacementState::Stored, PlacementState::Corrupt, false)
                .await
                .unwrap()
        );
        // Changed since it was read: left alone.
        assert!(
            !m.change_placement(&seen[3], "local", PlacementState::Stored, PlacementState::Missing, false)
                .await
                .unwrap()
        );
        m.record_verified_copy(&seen[3], "other").await.unwrap();
        m.record_verified_copy(&[9; 32], "local").await.unwrap(); // not in the index: ignored
        let counts = m.placement_counts().await.unwrap();
        assert_eq!(
            counts,
            vec![
                ("local".to_owned(), PlacementState::Corrupt, 1),
                ("local".to_owned(), PlacementState::Stored, 24),
                ("other".to_owned(), PlacementState::Stored, 1)
            ]
        );
        // A worker's state survives, cursor included.
        assert_eq!(m.worker_state("scrub").await.unwrap().passes, 0);
        let mut w = m.worker_state("scrub").await.unwrap();
        (w.cursor, w.passes, w.found, w.pass_started_at) = (Some(seen[7]), 3, 2, Some(1234));
        m.save_worker_state(&w).await.unwrap();
        let back = m.worker_state("scrub").await.unwrap();
        assert_eq!(
            (back.cursor, back.passes, back.found, back.pass_started_at),
            (Some(seen[7]), 3, 2, Some(1234))
        );
        assert_eq!(m.chunks_after(back.cursor, 100).await.unwrap().len(), 25 - 8, "resumes after the cursor");
        // Paces set at run time: set, changed, one beyond i64 kept as the most, and back to
        // the configured one.
        assert!(m.worker_paces().await.unwrap().is_empty());
        m.set_worker_pace("scrub", Some(1_000)).await.unwrap();
        m.set_worker_pace("migrate", Some(5)).await.unwrap();
        m.set_worker_pace("scrub", Some(2_000)).await.unwrap();
        m.set_worker_pace("gc", Some(u64::MAX)).await.unwrap();
        assert_eq!(
            m.worker_paces().await.unwrap(),
            vec![("gc".to_owned(), i64::MAX as u64), ("migrate".to_owned(), 5), ("scrub".to_owned(), 2_000)]
        );
        m.set_worker_pace("scrub", None).await.unwrap();
        m.set_worker_pace("scrub", None).await.unwrap();
        assert_eq!(m.worker_paces().await.unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn versions_references_and_tombstones() {
    each_backend(|m| async move {
        let a = m.create_account("alice", None, None, [1; 32]).await.unwrap();
        let bucket = m.create_bucket(a.id, "b", policy(2)).await.unwrap();
        let (c1, c2, c3) =
            (content(&[b"one", b"shared"]), content(&[b"two", b"shared"]), content(&[b"three"]));
        let v1 = m.put_version(&bucket, "k", &c1, &none(), None).await.unwrap();
        let v2 = m.put_version(&bucket, "k", &c2, &none(), None).await.unwrap();
        assert!(v2.version.id > v1.version.id);
        assert_eq!(m.head(&bucket, "k").await.unwrap(), v2.version);
        // Charged on stored bytes, per version: each chunk stored is its plaintext (too
        // short to compress) and the format's 36 bytes.
        assert_eq!(charged(&c1), 3 + 6 + 2 * 36);
        assert_eq!(m.account(a.id).await.unwrap().used_bytes, charged(&c1) + charged(&c2));
        assert_eq!(m.chunk_totals().await.unwrap(), (4, 0));
        let shared = chunk::seal(&ConvergenceSecret::from_bytes([7; 32]), b"shared", &SealOptions::default());
        let info = m.chunk(shared.address.as_bytes()).await.unwrap().unwrap();
        assert_eq!(info.refcount, 2);
        assert_eq!(info.placements, vec![("local".to_owned(), PlacementState::Stored)]);
        let manifest = Manifest::decode(&m.manifest(v2.version.id).await.unwrap()).unwrap();
        assert_eq!(manifest.size, 9);

        // keep_versions = 2: the third version pushes the first out.
        let v3 = m.put_version(&bucket, "k", &c3, &none(), None).await.unwrap();
        assert_eq!(v3.pruned, vec![v1.version.id]);
        let ids: Vec<i64> = m.versions(&bucket, "k").await.unwrap().iter().map(|v| v.id).collect();
        assert_eq!(ids, vec![v3.version.id, v2.version.id]);
        assert_eq!(m.account(a.id).await.unwrap().used_bytes, charged(&c2) + charged(&c3));
        assert_eq!(m.chunk_totals().await.unwrap(), (3, 1), "'one' has no reference left");

        let del = m.delete_object(&bucket, "k", &none(), None).await.unwrap();
        assert!(del.version.tombstone);
        assert!(matches!(m.head(&bucket, "k").await, Err(Error::ObjectNotFound)));
        assert!(matches!(m.delete_object(&bucket, "k", &none(), None).await, Err(Error::ObjectNotFound)));
        assert!(m.version(&bucket, "k", v3.version.id).await.is_ok(), "old versions stay readable");
        let kinds: Vec<&str> =
            m.changes(a.id, 0, 100).await.unwrap().into_iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, ["bucket-create", "put", "put", "put", "delete"]);
    })
    .await;
}

#[tokio::test]
async fn quota_preconditions_and_idempotency_change_nothing_when_refused() {
    each_backend(|m| async move {
        // Room for the first version (8 + 36 stored bytes) and three of 1 + 36.
        let a = m.create_account("alice", None, Some(44 + 3 * 37), [1; 32]).await.unwrap();
        let bucket = m.create_bucket(a.id, "b", policy(0)).await.unwrap();
        let first =
            m.put_version(&bucket, "k", &content(&[b"12345678"]), &none(), Some("req-1")).await.unwrap();
        let before = (m.account(a.id).await.unwrap(), m.chunk_totals().await.unwrap());

        let incompressible: Vec<u8> = (0..80).collect();
        let big = m.put_version(&bucket, "k", &content(&[&incompressible]), &none(), None).await;
        assert!(matches!(big, Err(Error::QuotaExceeded { used: 44, quota: 155, needed: 116 })), "{big:?}");

        let stale =
            Precondition { if_match: Some(EtagCondition::OneOf(vec![EntityTag::Hash([0; 32])])), ..none() };
        assert!(matches!(
            m.put_version(&bucket, "k", &content(&[b"1"]), &stale, None).await,
            Err(Error::PreconditionFailed)
        ));
        let create_only = Precondition { if_none_match: Some(EtagCondition::Any), ..none() };
        assert!(matches!(
            m.put_version(&bucket, "k", &content(&[b"1"]), &create_only, None).await,
            Err(Error::PreconditionFailed)
        ));
        assert!(matches!(m.delete_object(&bucket, "k", &stale, None).await, Err(Error::PreconditionFailed)));

        let replay =
            m.put_version(&bucket, "k", &content(&[b"12345678"]), &none(), Some("req-1")).await.unwrap();
        assert!(replay.replayed);
        assert_eq!(replay.version, first.version);
        assert!(matches!(
            m.put_version(&bucket, "other", &content(&[b"1"]), &none(), Some("req-1")).await,
            Err(Error::IdempotencyConflict)
        ));
        assert_eq!((m.account(a.id).await.unwrap(), m.chunk_totals().await.unwrap()), before);
        assert_eq!(m.versions(&bucket, "k").await.unwrap().len(), 1);

        // The head keeps the MD5 tag and the attributes it was given, and answers to both its tags.
        let head = m.head(&bucket, "k").await.unwrap();
        assert_eq!((head.md5, head.attrs.as_deref()), (content(&[b"12345678"]).md5, Some("{\"size\":8}")));
        let md5 = head.md5.unwrap();
        let other_md5 = Md5Tag { parts: Some(2), ..md5 };
        let by_md5 =
            Precondition { if_match: Some(EtagCondition::OneOf(vec![EntityTag::Md5(other_md5)])), ..none() };
        assert!(matches!(
            m.put_version(&bucket, "k", &content(&[b"1"]), &by_md5, None).await,
            Err(Error::PreconditionFailed)
        ));
        let by_md5 =
            Precondition { if_match: Some(EtagCondition::OneOf(vec![EntityTag::Md5(md5)])), ..none() };
        let second = m.put_version(&bucket, "k", &content(&[b"1"]), &by_md5, None).await.unwrap();
        let matching = Precondition {
            if_match: Some(EtagCondition::OneOf(vec![EntityTag::Hash(second.version.etag.unwrap())])),
            ..none()
        };
        m.put_version(&bucket, "k", &content(&[b"1"]), &matching, None).await.unwrap();
        assert!(matches!(
            m.put_version(&bucket, "fresh", &content(&[b"2"]), &create_only, None).await,
            Ok(c) if !c.replayed
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_hold_their_room_before_storing_and_chunks_belong_to_accounts() {
    each_backend(|m| async move {
        let a = m.create_account("alice", None, Some(1000), [1; 32]).await.unwrap();
        let b = m.create_account("bob", None, None, [2; 32]).await.unwrap();
        let bucket = m.create_bucket(a.id, "b", policy(0)).await.unwrap();
        let later = now_ms() + 60_000;
        let c1 = content(&[b"first file"]);
        let c1_addresses: Vec<[u8; 32]> = c1.chunks.iter().map(|c| c.address).collect();
        m.lease_chunks("put:1", &c1_addresses, later, Some((a.id, charged(&c1)))).await.unwrap();
        m.lease_chunks("put:2", &[[2; 32]], later, Some((a.id, 900))).await.unwrap();
        let refused = m.lease_chunks("put:3", &[[3; 32]], later, Some((a.id, 100))).await;
        assert!(
            matches!(refused, Err(Error::QuotaExceeded { used: 946, quota: 1000, needed: 100 })),
            "{refused:?}"
        );
        assert_eq!(
            m.start_deletions(&[[3; 32]], i64::MAX).await.unwrap(),
            vec![[3; 32]],
            "the refused call took no lease either"
        );

        // The commit turns its hold into usage; a released hold gives its room back; an
        // expired one counts for nothing.
        let c1 = NewVersion { lease_holder: Some("put:1".into()), ..c1 };
        m.put_version(&bucket, "one", &c1, &none(), None).await.unwrap();
        assert_eq!(m.account(a.id).await.unwrap().used_bytes, 46);
        m.release_leases("put:2").await.unwrap();
        m.lease_chunks("put:4", &[[4; 32]], now_ms() - 1, Some((a.id, 900))).await.unwrap();
        m.lease_chunks("put:5", &[[5; 32]], later, Some((a.id, 900))).await.unwrap();
        m.release_leases("put:5").await.unwrap();

        // Concurrent holds never pass the quota together: 954 bytes of room, 20 × 100.
        let tries: Vec<_> = (0..20)
            .map(|i| {
                let m = m.clone();
                tokio::spawn(async move {
                    m.lease_chunks(&format!("t{i}"), &[[6; 32]], later, Some((a.id, 100))).await.is_ok()
                })
            })
            .collect();
        let mut held = 0;
        for t in tries {
            held += usize::from(t.await.unwrap());
        }
        assert_eq!(held, 9);
        for i in 0..20 {
            m.release_leases(&format!("t{i}")).await.unwrap();
        }

        // A smart upload declares within its limits and the room, holds each chunk's bytes
        // when they arrive, and only then does the account hold the chunk.
        let c2 = content(&[b"second file"]);
        let chunk = c2.chunks[0].clone();
        let s = UploadSession {
            id: "up_quota".into(),
            account_id: a.id,
            bucket_id: bucket.id,
            key: "two".into(),
            created_at: now_ms(),
            expires_at: later,
            scope: rand_scope(),
        };
        m.create_upload_session(&s).await.unwrap();
        assert_eq!(m.upload_session_by_scope(s.scope).await.unwrap(), s);
        let decl = DeclaredChunk { address: chunk.address, stored_size: chunk.stored_size };
        let big = DeclaredChunk { address: [7; 32], stored_size: 955 };
        let one = DeclareLimits { max_chunks: 1, max_bytes: 1 << 30 };
        assert!(m.declare_upload_chunks(&s, &[decl, decl], one).await.is_ok(), "one distinct chunk");
        assert!(matches!(m.declare_upload_chunks(&s, &[big], one).await, Err(Error::UploadTooLarge(_))));
        assert!(matches!(
            m.declare_upload_chunks(&s, &[big], LIMITS).await,
            Err(Error::QuotaExceeded { .. })
        ));
        assert_eq!(m.upload_session_chunks(&s.id).await.unwrap().len(), 1, "refusals declare nothing");

        let opened = chunk.opened;
        assert!(matches!(m.record_sent_chunk(&s, &[8; 32], 10, None).await, Err(Error::ChunkNotDeclared)));
        assert!(matches!(
            m.record_sent_chunk(&s, &chunk.address, chunk.stored_size + 1, opened).await,
            Err(Error::ChunkNotDeclared)
        ));
        // Another upload takes all the room but 10 bytes: the chunk's 47 no longer fit.
        m.lease_chunks("put:6", &[[6; 32]], later, Some((a.id, 1000 - 46 - 10))).await.unwrap();
        assert!(matches!(
            m.record_sent_chunk(&s, &chunk.address, chunk.stored_size, opened).await,
            Err(Error::QuotaExceeded { .. })
        ));
        assert!(!m.upload_session_chunks(&s.id).await.unwrap()[&chunk.address].sent);
        assert!(m.owned_chunks(a.id, &[chunk.address]).await.unwrap().is_empty());
        m.release_leases("put:6").await.unwrap();
        for _ in 0..2 {
            m.record_sent_chunk(&s, &chunk.address, chunk.stored_size, opened).await.unwrap();
        }
        let sent = m.upload_session_chunks(&s.id).await.unwrap()[&chunk.address];
        assert!(sent.sent && sent.opened == opened);
        assert_eq!(m.owned_chunks(a.id, &[chunk.address]).await.unwrap()[&chunk.address], opened);
        assert!(m.owned_chunks(b.id, &[chunk.address]).await.unwrap().is_empty(), "alice's, not bob's");
        // Sent twice, held once: 46 used + 47 held leaves exactly 907.
        m.lease_chunks("put:7", &[[6; 32]], later, Some((a.id, 907))).await.unwrap();
        m.release_leases("put:7").await.unwrap();

        let c2 = NewVersion { lease_holder: Some(s.id.clone()), ..c2 };
        m.put_version(&bucket, "two", &c2, &none(), Some("upload:up_quota")).await.unwrap();
        assert_eq!(m.account(a.id).await.unwrap().used_bytes, 46 + 47);
        m.lease_chunks("put:8", &[[6; 32]], later, Some((a.id, 907))).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_multipart_upload_completes_once_or_is_aborted_never_both() {
    each_backend(|m| async move {
        let a = m.create_account("mp", None, None, [3; 32]).await.unwrap();
        let bucket = m.create_bucket(a.id, "b", policy(0)).await.unwrap();
        let later = now_ms() + 60_000;
        let upload = |id: &str, key: &str, expires_at: i64| MultipartUpload {
            id: format!("mp_{id}"),
            account_id: a.id,
            bucket_id: bucket.id,
            key: key.into(),
            content_type: Some("text/x-parts".into()),
            attrs: None,
            created_at: now_ms(),
            expires_at,
        };
        // Stores a part the way the object service does: its chunks leased to the upload first.
        let store = |u: MultipartUpload, number: u32, body: &'static [u8]| {
            let m = m.clone();
            async move {
                let c = content(&[body]);
                let addresses: Vec<[u8; 32]> = c.chunks.iter().map(|c| c.address).collect();
                m.lease_chunks(&u.id, &addresses, u.expires_at, None).await.unwrap();
                let part = Part {
                    number,
                    size: c.size,
                    md5: [number as u8; 16],
                    checksums: None,
                    manifest: c.manifest.clone(),
                    chunks: c.chunks.clone(),
                    created_at: now_ms(),
                };
                (m.put_part(&u, &part, later).await, c, part)
            }
        };
        let first = upload("first", "k", later);
        m.create_multipart(&first).await.unwrap();
        assert_eq!(m.multipart(bucket.id, "k", &first.id).await.unwrap(), first);
        assert!(matches!(m.multipart(bucket.id, "other", &first.id).await, Err(Error::MultipartNotFound)));
        let (stored, c, part) = store(first.clone(), 1, b"one").await;
        stored.unwrap();
        // A part sent again under its number replaces the first.
        let (again, c2, part2) = store(first.clone(), 1, b"one again").await;
        again.unwrap();
        let listed = m.parts(&first.id, 0, 10, true).await.unwrap();
        assert_eq!(listed, vec![part2.clone()]);
        let bare = m.parts(&first.id, 0, 10, false).await.unwrap();
        assert_eq!((bare[0].size, bare[0].manifest.len(), bare[0].chunks.len()), (part2.size, 0, 0));
        assert!(m.parts(&first.id, 1, 10, false).await.unwrap().is_empty());
        assert_ne!(part.manifest, part2.manifest);
        drop(c);
        // The completion consumes the upload and its leases, in its transaction.
        let new = NewVersion { lease_holder: Some(first.id.clone()), ..c2 };
        let done = m.put_version(&bucket, "k", &new, &none(), Some("multipart:mp_first")).await.unwrap();
        assert_eq!(m.head(&bucket, "k").await.unwrap(), done.version);
        assert!(matches!(m.multipart(bucket.id, "k", &first.id).await, Err(Error::MultipartNotFound)));
        assert!(matches!(m.abort_multipart(&first).await, Err(Error::MultipartNotFound)));
        assert!(matches!(store(first.clone(), 2, b"late").await.0, Err(Error::MultipartNotFound)));
        assert!(m.parts(&first.id, 0, 10, true).await.unwrap().is_empty());
        // (the late part's own leases stay until they expire; the collector takes its chunk)
        // An aborted upload can no longer complete: the completion changes nothing.
        let second = upload("second", "k", later);
        m.create_multipart(&second).await.unwrap();
        let (stored, c3, _) = store(second.clone(), 1, b"two").await;
        stored.unwrap();
        m.abort_multipart(&second).await.unwrap();
        let new = NewVersion { lease_holder: Some(second.id.clone()), ..c3 };
        assert!(matches!(
            m.put_version(&bucket, "k", &new, &none(), None).await,
            Err(Error::MultipartNotFound)
        ));
        assert_eq!(m.head(&bucket, "k").await.unwrap(), done.version);
        // Listing: in key then id order, under a prefix, after a marker.
        for (id, key) in [("c", "l/x"), ("d", "l/y"), ("e", "l/y"), ("f", "m")] {
            m.create_multipart(&upload(id, key, later)).await.unwrap();
        }
        let ids = |v: Vec<MultipartUpload>| v.into_iter().map(|u| u.id).collect::<Vec<_>>();
        assert_eq!(ids(m.multiparts(bucket.id, "l/", None, 10).await.unwrap()), ["mp_c", "mp_d", "mp_e"]);
        assert_eq!(ids(m.multiparts(bucket.id, "", None, 2).await.unwrap()), ["mp_c", "mp_d"]);
        assert_eq!(
            ids(m.multiparts(bucket.id, "", Some(("l/y", "mp_d")), 10).await.unwrap()),
            ["mp_e", "mp_f"]
        );
        assert_eq!(ids(m.multiparts(bucket.id, "", Some(("l/y", "")), 10).await.unwrap()), ["mp_f"]);
        // The leases of a live upload outlast their own expiry; those of another holder, or
        // of an upload that expired, do not.
        let live = upload("live", "k", later);
        m.create_multipart(&live).await.unwrap();
        let chunk = content(&[b"leased"]).chunks[0].address;
        m.lease_chunks(&live.id, &[chunk], now_ms() - 1, None).await.unwrap();
        m.lease_chunks("put:other", &[chunk], now_ms() - 1, None).await.unwrap();
        m.drop_expired_leases().await.unwrap();
        assert_eq!(m.leased_by(&live.id).await.unwrap(), vec![chunk]);
        assert!(m.leased_by("put:other").await.unwrap().is_empty());
        // An expired upload is gone for every call, and housekeeping forgets it.
        let old = upload("old", "k", now_ms() - 1);
        m.create_multipart(&old).await.unwrap();
        assert!(matches!(m.multipart(bucket.id, "k", &old.id).await, Err(Error::MultipartNotFound)));
        assert!(matches!(store(old.clone(), 1, b"x").await.0, Err(Error::MultipartNotFound)));
        m.lease_chunks(&old.id, &[chunk], now_ms() - 1, None).await.unwrap();
        m.drop_expired_leases().await.unwrap();
        assert!(m.leased_by(&old.id).await.unwrap().is_empty());
        assert!(m.drop_multiparts_expired_before(now_ms()).await.unwrap() >= 1);
        assert!(matches!(m.abort_multipart(&old).await, Err(Error::MultipartNotFound)));
    })
    .await;
}

#[tokio::test]
async fn strays_are_old_enough_to_delete_only_once_seen_for_the_grace_period() {
    each_backend(|m| async move {
        let (x, y) = ([21; 32], [22; 32]);
        let day = 86_400_000;
        assert!(m.sight_strays("a", &[x, y], day).await.unwrap().is_empty(), "first seen now");
        assert!(m.sight_strays("a", &[x], day).await.unwrap().is_empty(), "seen again, still young");
        assert_eq!(m.sight_strays("a", &[x, y], 0).await.unwrap(), vec![x, y], "no grace period");
        // Per provider: seen on b only now, young there.
        assert!(m.sight_strays("b", &[x], 1).await.unwrap().is_empty());
        // Sightings a whole listing did not renew are forgotten, and only those of its provider.
        assert_eq!(m.forget_strays_unseen_since("a", 0).await.unwrap(), 0);
        assert_eq!(m.forget_strays_unseen_since("a", i64::MAX).await.unwrap(), 2);
        assert!(m.sight_strays("a", &[x], day).await.unwrap().is_empty(), "young again");
        assert_eq!(m.forget_strays_unseen_since("b", i64::MAX).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_attempts_are_counted_before_the_check_across_servers() {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![format!("sqlite:{}", dir.path().join("meta.db").display())];
    if let Some(base) = std::env::var("NUAGE_TEST_PG_URL").ok().filter(|u| !u.is_empty()) {
        urls.push(fresh_pg_database(&base).await);
    }
    for url in urls {
        // Two servers of one deployment: two handles on one database.
        let servers = [Arc::new(Meta::open(&url).await.unwrap()), Arc::new(Meta::open(&url).await.unwrap())];
        let guesses: Vec<_> = (0..40)
            .map(|i| {
                let m = servers[i % 2].clone();
                tokio::spawn(async move {
                    let go = m.begin_attempt("share:1").await.unwrap() == Attempt::Go;
                    if go {
                        m.end_attempt("share:1", false).await.unwrap(); // a wrong password
                    }
                    go
                })
            })
            .collect();
        let mut checked = 0;
        for g in guesses {
            checked += i64::from(g.await.unwrap());
        }
        assert!((1..=FREE_ATTEMPTS).contains(&checked), "{checked} of 40 guesses checked");
        // Guessing on, one at a time: exactly the free attempts are ever checked.
        while servers[1].begin_attempt("share:1").await.unwrap() == Attempt::Go {
            servers[1].end_attempt("share:1", false).await.unwrap();
            checked += 1;
        }
        assert_eq!(checked, FREE_ATTEMPTS);
        assert!(matches!(servers[0].begin_attempt("share:1").await.unwrap(), Attempt::Wait(s) if s >= 1));

        // At most two checked at once; a right password forgives the failures.
        let m = &servers[0];
        assert_eq!(m.begin_attempt("login:x").await.unwrap(), Attempt::Go);
        assert_eq!(servers[1].begin_attempt("login:x").await.unwrap(), Attempt::Go);
        assert_eq!(m.begin_attempt("login:x").await.unwrap(), Attempt::Wait(1), "two in flight");
        m.end_attempt("login:x", false).await.unwrap();
        m.end_attempt("login:x", true).await.unwrap();
        for _ in 0..FREE_ATTEMPTS {
            assert_eq!(m.begin_attempt("login:x").await.unwrap(), Attempt::Go, "forgiven");
            m.end_attempt("login:x", false).await.unwrap();
        }
        assert!(matches!(m.begin_attempt("login:x").await.unwrap(), Attempt::Wait(_)));
        assert_eq!(m.drop_idle_attempts(now_ms() - 3_600_000).await.unwrap(), 0, "both still matter");
    }
}

#[tokio::test]
async fn listing_with_prefix_delimiter_and_pages() {
    each_backend(|m| async move {
        let a = m.create_account("alice", None, None, [1; 32]).await.unwrap();
        let bucket = m.create_bucket(a.id, "b", policy(0)).await.unwrap();
        for key in ["a.txt", "docs/1", "docs/2", "docs/sub/3", "photos/x.jpg", "z", "docs0"] {
            m.put_version(&bucket, key, &content(&[key.as_bytes()]), &none(), None).await.unwrap();
        }
        m.delete_object(&bucket, "z", &none(), None).await.unwrap();
        let names = |l: &nuage_meta::Listing| -> Vec<String> {
            l.entries
                .iter()
                .map(|e| match e {
                    ListEntry::Object(v) => v.key.clone(),
                    ListEntry::Prefix(p) => format!("{p}*"),
                })
                .collect()
        };
        let all = m.list_objects(&bucket, "", None, None, 100).await.unwrap();
        assert_eq!(names(&all), ["a.txt", "docs/1", "docs/2", "docs/sub/3", "docs0", "photos/x.jpg"]);
        let top = m.list_objects(&bucket, "", Some("/"), None, 100).await.unwrap();
        assert_eq!(names(&top), ["a.txt", "docs/*", "docs0", "photos/*"]);
        let docs = m.list_objects(&bucket, "docs/", Some("/"), None, 100).await.unwrap();
        assert_eq!(names(&docs), ["docs/1", "docs/2", "docs/sub/*"]);

        let mut pages = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let page = m.list_objects(&bucket, "", Some("/"), start.as_deref(), 1).await.unwrap();
            pages.extend(names(&page));
            match page.next {
                Some(n) => start = Some(n),
                None => break,
            }
        }
        assert_eq!(pages, names(&top));
    })
    .await;
}

#[tokio::test]
async fn versions_list_by_key_newest_first_and_go_one_at_a_time() {
    each_backend(|m| async move {
        let a = m.create_account("alice", None, None, [1; 32]).await.unwrap();
        let bucket = m.create_bucket(a.id, "b", policy(0)).await.unwrap();
        let (c1, c2, c3) = (content(&[b"one"]), content(&[b"two"]), content(&[b"three"]));
        let k1 = m.put_version(&bucket, "k", &c1, &none(), None).await.unwrap().version;
        let k2 = m.put_version(&bucket, "k", &c2, &none(), None).await.unwrap().version;
        let k3 = m.delete_object(&bucket, "k", &none(), None).await.unwrap().version;
        let d1 = m.put_version(&bucket, "dir/x", &c3, &none(), None).await.unwrap().version;
        let j1 = m.put_version(&bucket, "j", &c1, &none(), None).await.unwrap().version;
        let names = |l: &nuage_meta::VersionListing| -> Vec<String> {
            l.entries
                .iter()
                .map(|e| match e {
                    VersionEntry::Version { version, latest } => {
                        format!("{}@{}{}", version.key, version.id, if *latest { "!" } else { "" })
                    }
                    VersionEntry::Prefix(p) => format!("{p}*"),
                })
                .collect()
        };
        let all = m.list_versions(&bucket, "", None, None, 100).await.unwrap();
        let want = [
            format!("dir/x@{}!", d1.id),
            format!("j@{}!", j1.id),
            format!("k@{}!", k3.id),
            format!("k@{}", k2.id),
            format!("k@{}", k1.id),
        ];
        assert_eq!(names(&all), want);
        assert_eq!(all.next, None);
        let top = m.list_versions(&bucket, "", Some("/"), None, 100).await.unwrap();
        assert_eq!(names(&top)[0], "dir/*");
        assert_eq!(names(&top)[1..], want[1..]);
        assert_eq!(names(&m.list_versions(&bucket, "k", None, None, 100).await.unwrap()), want[2..]);
        // Pages of one entry, each starting after the last one of the page before (a
        // prefix: after every key under it), give the same entries.
        let mut pages = Vec::new();
        let mut start = None;
        loop {
            let page = m.list_versions(&bucket, "", Some("/"), start.clone(), 1).await.unwrap();
            pages.extend(names(&page));
            start = match page.next {
                Some((key, Some(id))) => Some(VersionCursor { key, below: id }),
                Some((prefix, None)) => {
                    Some(VersionCursor { key: format!("{prefix}\u{10FFFF}"), below: i64::MAX })
                }
                None => break,
            };
        }
        assert_eq!(pages, names(&top));

        // Removing an old version leaves the key as it reads; the feed has nothing new.
        let seq = m.account(a.id).await.unwrap().change_seq;
        let used = m.account(a.id).await.unwrap().used_bytes;
        let (gone, head_changed) = m.delete_version(&bucket, "k", k1.id, &none(), false).await.unwrap();
        assert_eq!((gone.id, head_changed), (k1.id, false));
        assert_eq!(m.account(a.id).await.unwrap().used_bytes, used - charged(&c1));
        assert_eq!(m.account(a.id).await.unwrap().change_seq, seq);
        assert!(matches!(m.version(&bucket, "k", k1.id).await, Err(Error::ObjectNotFound)));
        assert!(matches!(
            m.delete_version(&bucket, "k", k1.id, &none(), false).await,
            Err(Error::ObjectNotFound)
        ));
        // A condition that does not hold changes nothing.
        let wrong = Precondition {
            if_match: Some(EtagCondition::OneOf(vec![EntityTag::Hash([9; 32])])),
            if_none_match: None,
        };
        assert!(matches!(
            m.delete_version(&bucket, "k", k2.id, &wrong, false).await,
            Err(Error::PreconditionFailed)
        ));
        assert!(m.version(&bucket, "k", k2.id).await.is_ok());
        // Removing the delete marker brings the version under it back as current.
        let (_, head_changed) = m.delete_version(&bucket, "k", k3.id, &none(), false).await.unwrap();
        assert!(head_changed);
        assert_eq!(m.head(&bucket, "k").await.unwrap().id, k2.id);
        let last = m.changes(a.id, seq, 10).await.unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!((last[0].kind.as_str(), last[0].version_id), ("put", Some(k2.id)));
        // Removing the last version removes the key.
        // Only a noncurrent one: the current version is refused.
        assert!(matches!(
            m.delete_version(&bucket, "k", k2.id, &none(), true).await,
            Err(Error::PreconditionFailed)
        ));
        m.delete_version(&bucket, "k", k2.id, &none(), false).await.unwrap();
        assert!(matches!(m.head(&bucket, "k").await, Err(Error::ObjectNotFound)));
        assert!(m.versions(&bucket, "k").await.unwrap().is_empty());
        let listed = m.list_objects(&bucket, "", None, None, 100).await.unwrap();
        assert_eq!(listed.entries.len(), 2, "dir/x and j");
        assert_eq!(m.account(a.id).await.unwrap().used_bytes, charged(&c3) + charged(&c1));
        // The key can be written again; an expiry takes only the version it names, current.
        let again = m.put_version(&bucket, "k", &c2, &none(), None).await.unwrap().version;
        let newer = m.put_version(&bucket, "k", &c2, &none(), None).await.unwrap().version;
        assert!(matches!(m.expire_version(&bucket, "k", again.id).await, Err(Error::PreconditionFailed)));
        let marker = m.expire_version(&bucket, "k", newer.id).await.unwrap().version;
        assert!(marker.tombstone);
        assert!(matches!(m.expire_version(&bucket, "k", marker.id).await, Err(Error::PreconditionFailed)));
        assert!(matches!(m.head(&bucket, "k").await, Err(Error::ObjectNotFound)));

        // Keeping one version: the next write of a key drops the others.
        m.set_keep_versions(&bucket, 1).await.unwrap();
        let bucket = m.bucket(a.id, "b").await.unwrap();
        assert_eq!(bucket.policy.keep_versions, 1);
        m.put_version(&bucket, "j", &c2, &none(), None).await.unwrap();
        assert_eq!(m.versions(&bucket, "j").await.unwrap().len(), 1);

        // A record read before the versioning changed (another server's, kept for a few
        // seconds) neither prunes what the bucket now keeps nor skips what it drops: the
        // commit reads the count itself.
        m.set_keep_versions(&bucket, 0).await.unwrap();
        for _ in 0..3 {
            m.put_version(&bucket, "stale", &c2, &none(), None).await.unwrap();
        }
        assert_eq!(m.versions(&bucket, "stale").await.unwrap().len(), 3, "a stale 'keep one' pruned");
        let mut keeps_all = bucket.clone();
        keeps_all.policy.keep_versions = 0;
        m.set_keep_versions(&bucket, 1).await.unwrap();
        m.put_version(&keeps_all, "stale", &c2, &none(), None).await.unwrap();
        assert_eq!(m.versions(&keeps_all, "stale").await.unwrap().len(), 1, "a stale 'keep all' kept");
    })
    .await;
}

#[tokio::test]
async fn bucket_configs_are_whole_documents_that_go_with_their_bucket() {
    each_backend(|m| async move {
        let a = m.create_account("alice", None, None, [1; 32]).await.unwrap();
        let b = m.create_account("bob", None, None, [2; 32]).await.unwrap();
        let one = m.create_bucket(a.id, "one", policy(0)).await.unwrap();
        let two = m.create_bucket(a.id, "two", policy(0)).await.unwrap();
        assert_eq!(m.bucket_config(one.id, "cors").await.unwrap(), None);
        m.set_bucket_config(&one, "cors", Some("[1]")).await.unwrap();
        m.set_bucket_config(&one, "cors", Some("[2]")).await.unwrap();
        m.set_bucket_config(&two, "lifecycle", Some("{}")).await.unwrap();
        assert_eq!(m.bucket_config(one.id, "cors").await.unwrap().as_deref(), Some("[2]"));
        assert_eq!(m.bucket_config(one.id, "lifecycle").await.unwrap(), None);
        let configured = m.buckets_configured("lifecycle").await.unwrap();
        assert_eq!(
            configured.iter().map(|(b, c)| (b.name.as_str(), c.as_str())).collect::<Vec<_>>(),
            [("two", "{}")]
        );
        // A bucket as another account would name it is not found.
        let theirs = nuage_meta::Bucket { account_id: b.id, ..one.clone() };
        assert!(matches!(m.set_bucket_config(&theirs, "cors", None).await, Err(Error::BucketNotFound)));
        assert!(m.bucket_config(one.id, "cors").await.unwrap().is_some());
        m.set_bucket_config(&one, "cors", None).await.unwrap();
        assert_eq!(m.bucket_config(one.id, "cors").await.unwrap(), None);
        m.delete_bucket(a.id, "two").await.unwrap();
        assert!(m.buckets_configured("lifecycle").await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn concurrent_writes_to_one_key_all_commit_and_references_add_up() {
    each_backend(|m| async move {
        let a = m.create_account("alice", None, None, [1; 32]).await.unwrap();
        let bucket = m.create_bucket(a.id, "b", policy(0)).await.unwrap();
        let mut tasks = Vec::new();
        let mut charges = 0;
        for i in 0..8u8 {
            let (m, bucket) = (m.clone(), bucket.clone());
            let new = content(&[&[i; 100], b"common"]);
            charges += charged(&new);
            tasks.push(tokio::spawn(async move {
                m.put_version(&bucket, "k", &new, &none(), None).await.unwrap()
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap().version.id);
        }
        let head = m.head(&bucket, "k").await.unwrap();
        assert_eq!(head.id, *ids.iter().max().unwrap(), "the last commit wins");
        assert_eq!(m.versions(&bucket, "k").await.unwrap().len(), 8);
        assert_eq!(m.chunk_totals().await.unwrap(), (16, 0));
        assert_eq!(m.account(a.id).await.unwrap().used_bytes, charges);
        let seqs: Vec<i64> = m.changes(a.id, 0, 100).await.unwrap().iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (1..=9).collect::<Vec<_>>(), "one change per write, no gap");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_refused_for_their_own_reasons_leave_the_others_whole() {
    each_backend(|m| async move {
        let a = m.create_account("alice", None, None, [1; 32]).await.unwrap();
        let bucket = m.create_bucket(a.id, "b", policy(0)).await.unwrap();
        m.put_version(&bucket, "k0", &content(&[b"first"]), &none(), None).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..24u8 {
            let (m, bucket) = (m.clone(), bucket.clone());
            tasks.push(tokio::spawn(async move {
                match i % 3 {
                    0 => {
                        let create_only = Precondition { if_none_match: Some(EtagCondition::Any), ..none() };
                        m.put_version(&bucket, "k0", &content(&[&[i; 10]]), &create_only, None).await
                    }
                    1 => {
                        m.put_version(&bucket, &format!("new{i}"), &content(&[&[i; 10]]), &none(), None).await
                    }
                    _ => {
                        m.put_version(&bucket, "same", &content(&[b"once"]), &none(), Some("retry-me")).await
                    }
                }
            }));
        }
        let (mut refused, mut made, mut replays, mut ids) = (0, 0, 0, std::collections::HashSet::new());
        for (i, t) in tasks.into_iter().enumerate() {
            match (i % 3, t.await.unwrap()) {
                (0, Err(Error::PreconditionFailed)) => refused += 1,
                (1, Ok(c)) if !c.replayed => made += 1,
                (2, Ok(c)) => {
                    replays += usize::from(c.replayed);
                    ids.insert(c.version.id);
                }
                (kind, other) => panic!("task kind {kind}: {other:?}"),
            }
        }
        assert_eq!((refused, made, replays, ids.len()), (8, 8, 7, 1), "one upload, seven replays of it");
        assert_eq!(m.versions(&bucket, "k0").await.unwrap().len(), 1);
        assert_eq!(m.chunk_totals().await.unwrap(), (10, 0), "k0, eight new keys, one 'same'");
        let seqs: Vec<i64> = m.changes(a.id, 0, 100).await.unwrap().iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (1..=11).collect::<Vec<_>>(), "no gap from the refused writes or the replays");
        assert_eq!(m.account(a.id).await.unwrap().change_seq, 11);
    })
    .await;
}

#[tokio::test]
async fn leases_and_deletions_exclude_each_other() {
    each_backend(|m| async move {
        let a = m.create_account("alice", None, None, [1; 32]).await.unwrap();
        let bucket = m.create_bucket(a.id, "b", policy(1)).await.unwrap();
        let x = content(&[b"shared"]);
        let addr = x.chunks[0].address;
        let later = now_ms() + 3_600_000;
        // v1 references the chunk; v2 (other content) prunes v1: the chunk is unreferenced.
        m.put_version(&bucket, "k", &x, &none(), None).await.unwrap();
        m.put_version(&bucket, "k", &content(&[b"other"]), &none(), None).await.unwrap();
        assert_eq!(m.unreferenced_chunks(None, i64::MAX, 10).await.unwrap().len(), 1);
        assert!(m.unreferenced_chunks(None, 0, 10).await.unwrap().is_empty(), "inside the grace period");
        assert!(m.start_deletions(&[addr], 0).await.unwrap().is_empty(), "inside the grace period");

        // An upload leases it first: the collector leaves it alone, the commit drops the lease.
        assert!(m.lease_chunks("up-1", &[addr], later, None).await.unwrap().is_empty());
        assert_eq!(m.lease_count().await.unwrap(), (1, 1));
        assert!(m.start_deletions(&[addr], i64::MAX).await.unwrap().is_empty(), "leased");
        let again = NewVersion { lease_holder: Some("up-1".into()), ..x.clone() };
        m.put_version(&bucket, "k", &again, &none(), None).await.unwrap();
        assert_eq!(m.lease_count().await.unwrap(), (0, 0), "the commit dropped the lease");
        assert!(m.start_deletions(&[addr], i64::MAX).await.unwrap().is_empty(), "referenced again");

        // Unreferenced again, the collector comes first: a writer is told, and waits.
        m.put_version(&bucket, "k", &content(&[b"third"]), &none(), None).await.unwrap();
        assert_eq!(m.start_deletions(&[addr], i64::MAX).await.unwrap(), vec![addr]);
        assert!(m.start_deletions(&[addr], i64::MAX).await.unwrap().is_empty(), "under way already");
        assert_eq!(m.lease_chunks("up-2", &[addr], later, None).await.unwrap(), vec![addr]);
        assert_eq!(m.deleting(&[addr, [7; 32]]).await.unwrap(), vec![addr]);
        assert_eq!(m.deletions().await.unwrap(), vec![addr]);
        assert!(m.chunks_after(None, 100).await.unwrap().iter().all(|c| c.address != addr), "not scrubbed");
        let everywhere = DeletionDone { address: addr, everywhere: true, deleted_from: vec!["local".into()] };
        m.finish_deletions(&[everywhere]).await.unwrap();
        assert!(m.deleting(&[addr]).await.unwrap().is_empty());
        assert!(m.chunk(&addr).await.unwrap().is_none(), "out of the index");
        assert_eq!(m.unindexed(&[addr, [7; 32]]).await.unwrap(), vec![addr, [7; 32]]);
        // The writer leases again, now with nothing in the way, and the lease protects the
        // chunk as a stray (on a provider, not in the index) until it expires.
        assert!(m.lease_chunks("up-2", &[addr], later, None).await.unwrap().is_empty());
        assert!(m.start_deletions(&[addr], i64::MAX).await.unwrap().is_empty(), "leased stray");
        assert!(m.lease_chunks("up-2", &[addr], now_ms() - 1, None).await.unwrap().is_empty());
        assert_eq!(m.start_deletions(&[addr], i64::MAX).await.unwrap(), vec![addr], "the lease expired");
        // A deletion given up (a provider did not answer) frees the chunk for writers again.
        let partial = DeletionDone { address: addr, everywhere: false, deleted_from: vec![] };
        m.finish_deletions(&[partial]).await.unwrap();
        assert!(m.deleting(&[addr]).await.unwrap().is_empty());

        // A live upload session's declared chunks are its leases; an expired one's are not.
        let session = |id: &str, expires_at| UploadSession {
            id: id.into(),
            account_id: a.id,
            bucket_id: bucket.id,
            key: "k".into(),
            created_at: now_ms(),
            expires_at,
            scope: rand_scope(),
        };
        let stray = [9; 32];
        let decl = [DeclaredChunk { address: stray, stored_size: 10 }];
        let live = session("up_live", later);
        m.create_upload_session(&live).await.unwrap();
        assert!(m.declare_upload_chunks(&live, &decl, LIMITS).await.unwrap().is_empty());
        assert!(
            m.start_deletions(&[stray], i64::MAX).await.unwrap().is_empty(),
            "declared by a live session"
        );
        let dead = session("up_dead", now_ms() - 1);
        m.create_upload_session(&dead).await.unwrap();
        let other = [10; 32];
        m.declare_upload_chunks(&dead, &[DeclaredChunk { address: other, stored_size: 10 }], LIMITS)
            .await
            .unwrap();
        assert_eq!(m.start_deletions(&[stray, other], i64::MAX).await.unwrap(), vec![other]);
        // A commit whose leases ran out, and were dropped by the collector, is refused and
        // changes nothing: its chunks may be gone.
        let late = NewVersion { lease_holder: Some("up-3".into()), ..content(&[b"late"]) };
        let late_addr = late.chunks[0].address;
        assert!(m.lease_chunks("up-3", &[late_addr], now_ms() - 1, None).await.unwrap().is_empty());
        assert_eq!(m.start_deletions(&[late_addr], i64::MAX).await.unwrap(), vec![late_addr]);
        assert!(matches!(m.put_version(&bucket, "late", &late, &none(), None).await, Err(Error::LeaseLost)));
        assert!(matches!(m.head(&bucket, "late").await, Err(Error::ObjectNotFound)));

        // One process at a time per worker: a claim holds until it is released, its holder
        // dies (PostgreSQL: its session ends; SQLite: its pid is gone) or, on SQLite, it runs
        // out unrenewed.
        let pg = m.backend() == nuage_meta::Backend::Postgres;
        let mut a = m.claim_worker("gc", "h:1:a", later, |_| false).await.unwrap().expect("free");
        assert_eq!(a.taken_from(), None, "nobody held it");
        assert!(m.renew_claim(&mut a, later).await.unwrap(), "renewed");
        assert!(m.claim_worker("gc", "h:2:b", later, |_| false).await.unwrap().is_none(), "held by another");
        let scrub = m.claim_worker("scrub", "h:2:b", later, |_| false).await.unwrap();
        assert!(scrub.is_some(), "each worker has a claim of its own");
        assert_eq!(m.claim_holder("gc").await.unwrap().map(|(o, _)| o).as_deref(), Some("h:1:a"));
        let mut b = if pg {
            // A holder that dies (its session closes) gives its claim up at once, whatever
            // its host name and pid; one whose pid is "gone" but whose session lives keeps it.
            assert!(m.claim_worker("gc", "h:2:b", later, |_| true).await.unwrap().is_none(), "alive");
            drop(a);
            let mut b = None;
            for _ in 0..100 {
                b = m.claim_worker("gc", "h:2:b", later, |_| false).await.unwrap();
                if b.is_some() {
                    break;
                }
                // The server ends the closed session on its own time: wait for it.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            b.expect("a closed session's claim is free")
        } else {
            let b = m.claim_worker("gc", "h:2:b", later, |o| o == "h:1:a").await.unwrap();
            let b = b.expect("its process is gone");
            assert_eq!(b.taken_from(), None, "a holder known dead has nothing in flight");
            assert!(!m.renew_claim(&mut a, later).await.unwrap(), "the old holder lost it");
            b
        };
        if pg {
            assert_eq!(b.taken_from(), Some("h:1:a"), "taken from a holder that did not give it back");
            b.settle();
        }
        m.release_claim(b).await.unwrap();
        let c = m.claim_worker("gc", "h:3:c", now_ms() - 1, |_| false).await.unwrap().expect("released");
        assert_eq!(c.taken_from(), None, "given back");
        if !pg {
            // On SQLite a claim that ran out is free.
            let d = m.claim_worker("gc", "h:4:d", later, |_| false).await.unwrap();
            assert!(d.is_some(), "the claim ran out");
            assert_eq!(d.as_ref().unwrap().taken_from(), Some("h:3:c"), "ran out, not given back");
            // Given back unsettled, the claim names the holder before it again, for the next.
            m.release_claim(d.unwrap()).await.unwrap();
            let mut e = m.claim_worker("gc", "h:5:e", later, |_| false).await.unwrap().expect("given back");
            assert_eq!(e.taken_from(), Some("h:3:c"), "still not settled");
            e.settle();
            m.release_claim(e).await.unwrap();
            let f = m.claim_worker("gc", "h:6:f", later, |_| false).await.unwrap().expect("given back");
            assert_eq!(f.taken_from(), None, "settled");
            m.release_claim(f).await.unwrap();
        }
        drop(c);
        if let Some(s) = scrub {
            m.release_claim(s).await.unwrap();
        }

        // A session declaring a chunk being deleted is told so.
        assert_eq!(
            m.declare_upload_chunks(&live, &[DeclaredChunk { address: other, stored_size: 10 }], LIMITS)
                .await
                .unwrap(),
            vec![other]
        );
    })
    .await;
}

#[tokio::test]
async fn providers_added_at_run_time_are_removed_only_drained_and_empty() {
    each_backend(|m| async move {
        let record = |name: &str, settings: Option<&str>| ProviderRecord {
            name: name.into(),
            scheme: "fs".into(),
            region: None,
            state: ProviderState::Active,
            weight: 1,
            settings: settings.map(str::to_owned),
        };
        m.register_providers(&[record("local", None)]).await.unwrap();
        m.add_provider(&record("added", Some("{\"v\":1}"))).await.unwrap();
        for taken in ["local", "added"] {
            assert!(matches!(
                m.add_provider(&record(taken, Some("{}"))).await,
                Err(Error::ProviderExists(n)) if n == taken
            ));
        }
        let state = |list: Vec<ProviderRecord>, name: &str| {
            let p = list.into_iter().find(|p| p.name == name).unwrap();
            (p.state, p.settings)
        };
        assert_eq!(
            state(m.providers().await.unwrap(), "added"),
            (ProviderState::Active, Some("{\"v\":1}".into()))
        );

        // A chunk placed on it: not removable while active, draining, or drained with the
        // placement still there.
        let a = m.create_account("alice", None, None, [1; 32]).await.unwrap();
        let bucket = m.create_bucket(a.id, "b", policy(0)).await.unwrap();
        let new = content(&[b"on added"]);
        let address = new.chunks[0].address;
        m.put_version(&bucket, "k", &new, &none(), None).await.unwrap();
        m.add_placements(&address, &["added".to_owned()]).await.unwrap();
        assert_eq!(m.remove_provider("added").await.unwrap(), Removal::NotDrained, "active");
        assert!(m.set_provider_state("added", ProviderState::Draining).await.unwrap());
        assert_eq!(m.remove_provider("added").await.unwrap(), Removal::NotDrained, "draining");
        assert!(!m.mark_drained("added").await.unwrap(), "a placement is left");
        // An upload that began before the drain ended holds a lease; one that began after
        // (leased once the provider is drained) does not count.
        let before = now_ms() + 600_000;
        m.lease_chunks("put:early", &[[9; 32]], before, None).await.unwrap();
        m.drop_placement(&address, "added").await.unwrap();
        assert!(m.mark_drained("added").await.unwrap());
        // A placement a late commit put there after the drain: refused.
        m.add_placements(&address, &["added".to_owned()]).await.unwrap();
        assert_eq!(m.remove_provider("added").await.unwrap(), Removal::PlacementsLeft(1));
        m.drop_placement(&address, "added").await.unwrap();
        assert_eq!(m.remove_provider("added").await.unwrap(), Removal::UploadsPending(1));
        m.release_leases("put:early").await.unwrap();
        // A lease taken just after counts too (the margin for clocks and late views), and so
        // does a smart upload's session opened before with chunks declared; not one opened
        // past the margin, nor one whose commit dropped its declarations.
        m.lease_chunks("put:late", &[[9; 32]], before, None).await.unwrap();
        let session = |id: &str, created_at| UploadSession {
            id: id.into(),
            account_id: a.id,
            bucket_id: bucket.id,
            key: "k".into(),
            created_at,
            expires_at: before,
            scope: rand_scope(),
        };
        let declared = [DeclaredChunk { address: [9; 32], stored_size: 10 }];
        for (id, created_at) in
            [("up_old", now_ms() - 1000), ("up_new", now_ms() + 2 * nuage_meta::CLOCK_MARGIN_MS)]
        {
            let s = session(id, created_at);
            m.create_upload_session(&s).await.unwrap();
            m.declare_upload_chunks(&s, &declared, LIMITS).await.unwrap();
        }
        assert_eq!(m.remove_provider("added").await.unwrap(), Removal::UploadsPending(2));
        m.release_leases("put:late").await.unwrap();
        assert_eq!(m.remove_provider("added").await.unwrap(), Removal::UploadsPending(1));
        m.release_leases("up_old").await.unwrap(); // its commit
        assert_eq!(m.remove_provider("added").await.unwrap(), Removal::Removed);
        assert_eq!(state(m.providers().await.unwrap(), "added"), (ProviderState::Removed, None));
        // Removed: its state no longer moves, and the name may be added again, active.
        assert!(!m.set_provider_state("added", ProviderState::Active).await.unwrap());
        m.add_provider(&record("added", Some("{\"v\":2}"))).await.unwrap();
        assert_eq!(
            state(m.providers().await.unwrap(), "added"),
            (ProviderState::Active, Some("{\"v\":2}".into()))
        );
    })
    .await;
}
