//! API tests in process: the real router over SQLite and a local-folder provider, driven
//! with `tower::ServiceExt::oneshot`. Every refused request is checked for its status, its
//! code, and for having changed nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use nuage_server::{Nuage, ServerConfig, auth};
use tower::ServiceExt;

struct Env {
    nuage: Arc<Nuage>,
    app: Router,
    alice: String,
    alice_id: i64,
    bob: String,
    /// The keys of the chunks sealed for normal buckets, as a device remembers them to send
    /// them with the chunks.
    keys: std::sync::Mutex<std::collections::HashMap<nuage_core::Address, nuage_core::chunk::ChunkKey>>,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_owned()
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
    }
}

/// The environments every test runs in: SQLite always; PostgreSQL (a fresh database) when
/// `NUAGE_TEST_PG_URL` is set, required when `NUAGE_TEST_REQUIRE` names `postgres`.
async fn envs() -> Vec<Env> {
    envs_with("").await
}

/// [`envs`], with more configuration (TOML sections) for the server.
async fn envs_with(extra: &str) -> Vec<Env> {
    let mut out = vec![env(None, extra).await];
    let required = std::env::var("NUAGE_TEST_REQUIRE").unwrap_or_default().contains("postgres");
    match std::env::var("NUAGE_TEST_PG_URL").ok().filter(|u| !u.is_empty()) {
        Some(base) => out.push(env(Some(fresh_pg_database(&base).await), extra).await),
        None => assert!(!required, "NUAGE_TEST_REQUIRE names postgres but NUAGE_TEST_PG_URL is not set"),
    }
    out
}

async fn fresh_pg_database(base: &str) -> String {
    use sqlx::Connection;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    sqlx::any::install_default_drivers();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("nuage_api_{}_{nanos}_{n}", std::process::id());
    let mut conn = sqlx::AnyConnection::connect(base).await.expect("connecting to PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let (server, _) = base.rsplit_once('/').expect("URL with a database name");
    format!("{server}/{name}")
}

/// Runs a test body in every environment of [`envs`].
macro_rules! on_every_backend {
    ($(#[$attr:meta])* fn $name:ident($e:ident) $body:block) => {
        $(#[$attr])*
        async fn $name() {
            for $e in envs().await {
                $body
            }
        }
    };
}

async fn env(database_url: Option<String>, extra: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config: ServerConfig = toml::from_str(&format!(
        "data_dir = {:?}\n[chunking]\nmin_size = 16384\navg_size = 65536\nmax_size = 262144\n{extra}",
        dir.path()
    ))
    .unwrap();
    config.service.database_url = database_url;
    let nuage = Arc::new(Nuage::open(config.service).await.unwrap());
    let a = nuage
        .meta
        .create_account("alice", Some(&auth::hash_password("pw").unwrap()), None, [1; 32])
        .await
        .unwrap();
    let b = nuage.meta.create_account("bob", None, None, [2; 32]).await.unwrap();
    let alice = nuage_server::issue_token(&nuage, a.id, "test").await.unwrap().token;
    let bob = nuage_server::issue_token(&nuage, b.id, "test").await.unwrap().token;
    Env {
        app: nuage_server::router(nuage.clone()),
        nuage,
        alice,
        alice_id: a.id,
        bob,
        keys: Default::default(),
        _dir: dir,
    }
}

impl Env {
    async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
        Answer { status, headers, body }
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if !token.is_empty() {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    async fn alice(&self, method: &str, uri: &str, body: Vec<u8>) -> Answer {
        self.call(method, uri, &self.alice.clone(), &[], body).await
    }

    async fn versions(&self, key: &str) -> usize {
        self.versions_in("box", key).await
    }

    async fn versions_in(&self, bucket: &str, key: &str) -> usize {
        let a = self.alice("GET", &format!("/v1/buckets/{bucket}/versions/{key}"), vec![]).await;
        a.json()["versions"].as_array().map_or(0, |v| v.len())
    }

    async fn used(&self) -> u64 {
        self.nuage.meta.account(self.alice_id).await.unwrap().used_bytes
    }
}

fn data(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

on_every_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    fn put_get_head_range_and_conditions(e) {
        assert_eq!(e.alice("PUT", "/v1/buckets/box", vec![]).await.status, StatusCode::CREATED);
        let body = data(1_500_000, 1);
        let put = e
            .call(
                "PUT",
                "/v1/buckets/box/objects/dir/file.bin",
                &e.alice,
                &[("content-type", "image/png")],
                body.clone(),
            )
            .await;
        assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.json());
        let etag = format!("\"{}\"", blake3::hash(&body).to_hex());
        assert_eq!(put.header("etag"), etag);

        let get = e.alice("GET", "/v1/buckets/box/objects/dir/file.bin", vec![]).await;
        assert_eq!(get.status, StatusCode::OK);
        assert!(get.body == body, "the body comes back identical");
        assert_eq!((get.header("etag"), get.header("content-type")), (etag.as_str(), "image/png"));

        let head = e.alice("HEAD", "/v1/buckets/box/objects/dir/file.bin", vec![]).await;
        assert_eq!((head.status, head.header("content-length"), head.body.len()), (StatusCode::OK, "1500000", 0));

        // A range across chunk boundaries (chunks are 16–256 KiB here).
        let r = e
            .call(
                "GET",
                "/v1/buckets/box/objects/dir/file.bin",
                &e.alice,
                &[("range", "bytes=100000-900009")],
                vec![],
            )
            .await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.header("content-range"), "bytes 100000-900009/1500000");
        assert!(r.body == body[100_000..900_010]);
        let r = e
            .call("GET", "/v1/buckets/box/objects/dir/file.bin", &e.alice, &[("range", "bytes=-10")], vec![])
            .await;
        assert!(r.body == body[body.len() - 10..]);
        let r = e
            .call("GET", "/v1/buckets/box/objects/dir/file.bin", &e.alice, &[("range", "bytes=1500000-")], vec![])
            .await;
        assert_eq!(
            (r.status, r.code().as_str(), r.header("content-range")),
            (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable", "bytes */1500000")
        );

        let r = e
            .call("GET", "/v1/buckets/box/objects/dir/file.bin", &e.alice, &[("if-none-match", &etag)], vec![])
            .await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
        let wrong = format!("\"{}\"", "0".repeat(64));
        let r = e
            .call("GET", "/v1/buckets/box/objects/dir/file.bin", &e.alice, &[("if-match", &wrong)], vec![])
            .await;
        assert_eq!((r.status, r.code().as_str()), (StatusCode::PRECONDITION_FAILED, "precondition_failed"));

        // If-Match mismatch on PUT: refused, nothing changes.
        let used = e.used().await;
        let r = e
            .call(
                "PUT",
                "/v1/buckets/box/objects/dir/file.bin",
                &e.alice,
                &[("if-match", &wrong)],
                b"new".to_vec(),
            )
            .await;
        assert_eq!((r.status, r.code().as_str()), (StatusCode::PRECONDITION_FAILED, "precondition_failed"));
        assert_eq!((e.versions("dir/file.bin").await, e.used().await), (1, used));
        let r = e
            .call(
                "PUT",
                "/v1/buckets/box/objects/dir/file.bin",
                &e.alice,
                &[("if-none-match", "*")],
                b"new".to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
        let r = e
            .call(
                "PUT",
                "/v1/buckets/box/objects/dir/file.bin",
                &e.alice,
                &[("if-match", &etag)],
                b"new".to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(e.alice("GET", "/v1/buckets/box/objects/dir/file.bin", vec![]).await.body, b"new");

        // Content-MD5 is checked (a mismatch commits nothing); the version answers to its MD5 tag.
        let (versions, used) = (e.versions("dir/file.bin").await, e.used().await);
        let md5_of_new = "Iq9kXRhZy1ym2gxITx836g==";
        let env = &e;
        let put = |md5: &'static str, body: &'static [u8]| async move {
            let headers = [("content-md5", md5)];
            env.call("PUT", "/v1/buckets/box/objects/dir/file.bin", &env.alice, &headers, body.to_vec()).await
        };
        let r = put(md5_of_new, b"newer").await;
        assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "bad_digest"));
        let r = put("not base64", b"newer").await;
        assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_digest"));
        assert_eq!((e.versions("dir/file.bin").await, e.used().await), (versions, used));
        assert_eq!(put(md5_of_new, b"new").await.status, StatusCode::CREATED);
        let md5_tag = "\"22af645d1859cb5ca6da0c484f1f37ea\"";
        let r = e
            .call("GET", "/v1/buckets/box/objects/dir/file.bin", &e.alice, &[("if-none-match", md5_tag)], vec![])
            .await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);

        // Empty objects work too.
        assert_eq!(e.alice("PUT", "/v1/buckets/box/objects/empty", vec![]).await.status, StatusCode::CREATED);
        let g = e.alice("GET", "/v1/buckets/box/objects/empty", vec![]).await;
        assert_eq!((g.status, g.body.len()), (StatusCode::OK, 0));
    }
}

/// Writes share one write memory (`[chunking] write_memory_mib`), here far smaller than
/// what they carry at once: each waits for room the others give back as their chunks are
/// stored, and all of them complete, whole. (A write that stopped driving its own stores
/// while it waited for its next chunk once held room none of them could get back.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_sharing_a_small_write_memory_all_complete() {
    for e in envs_with("write_memory_mib = 1").await {
        assert_eq!(e.alice("PUT", "/v1/buckets/box", vec![]).await.status, StatusCode::CREATED);
        let bodies: Vec<Vec<u8>> = (0..8).map(|n| data(3_000_000, 100 + n)).collect();
        let uris: Vec<String> = (0..bodies.len()).map(|n| format!("/v1/buckets/box/objects/w{n}")).collect();
        let puts =
            bodies.iter().zip(&uris).map(|(body, uri)| e.call("PUT", uri, &e.alice, &[], body.clone()));
        let all = tokio::time::timeout(std::time::Duration::from_secs(120), futures::future::join_all(puts));
        for (n, put) in all.await.expect("every write completes").into_iter().enumerate() {
            assert_eq!(put.status, StatusCode::CREATED, "write {n}: {:?}", put.json());
        }
        for (n, body) in bodies.iter().enumerate() {
            let get = e.alice("GET", &format!("/v1/buckets/box/objects/w{n}"), vec![]).await;
            assert!(get.status == StatusCode::OK && get.body == *body, "write {n} reads back whole");
        }
        assert_eq!(e.nuage.write_memory_free(), 1 << 20, "all the room is given back");
    }
}

on_every_backend! {
    #[tokio::test]
    fn tokens_missing_forged_expired_revoked_and_login(e) {
        let check = |a: Answer, code: &str| {
            assert_eq!((a.status, a.code().as_str()), (StatusCode::UNAUTHORIZED, code));
        };
        check(e.call("GET", "/v1/buckets", "", &[], vec![]).await, "token_missing");
        check(
            e.call("GET", "/v1/buckets", &format!("nu_{}", "ab".repeat(32)), &[], vec![]).await,
            "token_invalid",
        );
        check(e.call("GET", "/v1/buckets", "garbage", &[], vec![]).await, "token_invalid");
        let (text, hash) = auth::new_token();
        e.nuage.meta.create_token(e.alice_id, hash, "old", Some(nuage_meta::now_ms() - 1)).await.unwrap();
        check(e.call("PUT", "/v1/buckets/nope", &text, &[], vec![]).await, "token_expired");
        assert!(e.nuage.meta.buckets(e.alice_id).await.unwrap().is_empty(), "nothing was created");

        let login = |password: &str| {
            serde_json::to_vec(&serde_json::json!({"account": "alice", "password": password})).unwrap()
        };
        let bad = e.call("POST", "/v1/login", "", &[("content-type", "application/json")], login("nope")).await;
        check(bad, "invalid_credentials");
        let ok = e.call("POST", "/v1/login", "", &[("content-type", "application/json")], login("pw")).await;
        assert_eq!(ok.status, StatusCode::OK);
        let token = ok.json()["token"].as_str().unwrap().to_owned();
        assert_eq!(e.call("GET", "/v1/account", &token, &[], vec![]).await.json()["name"], "alice");
        assert_eq!(
            e.call("DELETE", "/v1/tokens/current", &token, &[], vec![]).await.status,
            StatusCode::NO_CONTENT
        );
        check(e.call("GET", "/v1/account", &token, &[], vec![]).await, "token_revoked");
    }
}

on_every_backend! {
    #[tokio::test]
    fn accounts_never_see_each_other_and_bad_names_change_nothing(e) {
        e.alice("PUT", "/v1/buckets/box", vec![]).await;
        e.alice("PUT", "/v1/buckets/box/objects/secret", b"alice's".to_vec()).await;
        for (method, uri) in [
            ("GET", "/v1/buckets/box/objects/secret"),
            ("PUT", "/v1/buckets/box/objects/secret"),
            ("DELETE", "/v1/buckets/box/objects/secret"),
            ("GET", "/v1/buckets/box/objects"),
            ("DELETE", "/v1/buckets/box"),
        ] {
            let a = e.call(method, uri, &e.bob.clone(), &[], b"bob's".to_vec()).await;
            assert_eq!(
                (a.status, a.code().as_str()),
                (StatusCode::NOT_FOUND, "bucket_not_found"),
                "{method} {uri}"
            );
        }
        assert_eq!(
            e.call("GET", "/v1/buckets", &e.bob.clone(), &[], vec![]).await.json()["buckets"],
            serde_json::json!([])
        );
        assert_eq!(e.alice("GET", "/v1/buckets/box/objects/secret", vec![]).await.body, b"alice's");

        let unknown = e.alice("PUT", "/v1/buckets/nope/objects/k", b"x".to_vec()).await;
        assert_eq!((unknown.status, unknown.code().as_str()), (StatusCode::NOT_FOUND, "bucket_not_found"));
        let long = format!("/v1/buckets/box/objects/{}", "k".repeat(1025));
        for uri in [
            "/v1/buckets/box/objects/a/../b",
            "/v1/buckets/box/objects/a/%2E%2E/b",
            "/v1/buckets/box/objects/nul%00byte",
            "/v1/buckets/box/objects/a//b",
            &long,
        ] {
            let a = e.alice("PUT", uri, b"x".to_vec()).await;
            assert_eq!((a.status, a.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_key"), "{uri}");
        }
        let bad = e.alice("PUT", "/v1/buckets/Bad_Name", vec![]).await;
        assert_eq!((bad.status, bad.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_bucket_name"));
        let keys =
            e.alice("GET", "/v1/buckets/box/objects", vec![]).await.json()["objects"].as_array().unwrap().len();
        assert_eq!(keys, 1, "only the one good object exists");
        let busy = e.alice("DELETE", "/v1/buckets/box", vec![]).await;
        assert_eq!((busy.status, busy.code().as_str()), (StatusCode::CONFLICT, "bucket_not_empty"));
        let placement = e
            .call(
                "PUT",
                "/v1/buckets/box2",
                &e.alice.clone(),
                &[("content-type", "application/json")],
                br#"{"replicas": 3}"#.to_vec(),
            )
            .await;
        assert_eq!((placement.status, placement.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_placement"));
    }
}

on_every_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    fn quota_is_enforced_before_storing_with_or_without_length(e) {
        e.alice("PUT", "/v1/buckets/box", vec![]).await;
        e.nuage.meta.set_quota(e.alice_id, Some(100_000)).await.unwrap();
        let small = || {
            e.call(
                "PUT",
                "/v1/buckets/box/objects/small",
                &e.alice,
                &[("idempotency-key", "q-1")],
                data(60_000, 2),
            )
        };
        assert_eq!(small().await.status, StatusCode::CREATED);
        // Charged what it stores: random bytes do not compress, so the plaintext and the
        // format's 36 bytes per chunk (16 KiB to 256 KiB chunks here).
        let used = e.used().await;
        assert!((60_000 + 36..=60_000 + 4 * 36).contains(&used), "{used}");
        // A retry of that upload is answered as the first time, although a second copy would not
        // fit in the quota any more.
        let retry = small().await;
        assert_eq!((retry.status, retry.json()["replayed"].as_bool()), (StatusCode::OK, Some(true)));
        let big = e.alice("PUT", "/v1/buckets/box/objects/big", data(50_000, 3)).await;
        assert_eq!((big.status, big.code().as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded"));
        let chunks_before = e.nuage.meta.chunk_totals().await.unwrap();
        let files_before = chunk_files(&e);
        // Streamed without Content-Length: refused while it streams.
        let parts: Vec<Result<Vec<u8>, std::io::Error>> = (0..10).map(|i| Ok(data(10_000, 10 + i))).collect();
        let req = Request::put("/v1/buckets/box/objects/big")
            .header("authorization", format!("Bearer {}", e.alice))
            .body(Body::from_stream(futures::stream::iter(parts)))
            .unwrap();
        let streamed = e.send(req).await;
        assert_eq!(
            (streamed.status, streamed.code().as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded")
        );
        assert_eq!(e.used().await, used);
        assert_eq!(e.versions("big").await, 0);
        assert_eq!(e.nuage.meta.chunk_totals().await.unwrap(), chunks_before);
        assert_eq!(chunk_files(&e), files_before, "what a refused upload stored is deleted");
    }
}

/// Chunk files on the server's local provider.
fn chunk_files(e: &Env) -> usize {
    fn walk(p: &std::path::Path) -> usize {
        std::fs::read_dir(p)
            .map_or(0, |d| d.flatten().map(|f| if f.path().is_dir() { walk(&f.path()) } else { 1 }).sum())
    }
    walk(&e._dir.path().join("chunks"))
}

on_every_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    fn concurrent_uploads_hold_their_room_before_any_byte_is_stored(e) {
        e.alice("PUT", "/v1/buckets/box", vec![]).await;
        // Room for ten 10 KB objects (10,036 bytes stored each), not eleven.
        e.nuage.meta.set_quota(e.alice_id, Some(10 * 10_036 + 5_000)).await.unwrap();
        let before = chunk_files(&e);
        let puts: Vec<_> = (0..60u32)
            .map(|i| {
                let req = Request::put(format!("/v1/buckets/box/objects/o{i}"))
                    .header("authorization", format!("Bearer {}", e.alice))
                    .body(Body::from(data(10_000, 100 + i)))
                    .unwrap();
                let app = e.app.clone();
                tokio::spawn(async move { app.oneshot(req).await.unwrap().status() })
            })
            .collect();
        let (mut made, mut refused) = (0, 0);
        for p in puts {
            match p.await.unwrap() {
                StatusCode::CREATED => made += 1,
                StatusCode::PAYLOAD_TOO_LARGE => refused += 1,
                s => panic!("unexpected {s}"),
            }
        }
        assert_eq!((made, refused), (10, 50), "exactly what fits is made");
        assert_eq!(e.used().await, 10 * 10_036);
        // A refused upload never reached a provider: one chunk file per object made.
        assert_eq!(chunk_files(&e) - before, 10);
    }
}

on_every_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    fn smart_uploads_are_charged_what_they_store_and_prove_every_chunk(e) {
        assert_eq!(e.alice("PUT", "/v1/buckets/smart", vec![]).await.status, StatusCode::CREATED);
        let body = data(600_000, 41);
        let sealed = e.seal_like_a_device(&body).await;
        let stored: u64 = sealed.chunks.values().map(|c| c.len() as u64).sum();
        assert!(sealed.chunks.len() >= 3);

        // The device's word on lengths is checked against what the chunks open to: a
        // manifest claiming 1 byte per chunk is refused, and so is one with a wrong key.
        let mut lying = sealed.manifest.clone();
        for entry in &mut lying.entries {
            entry.plain_len = 1;
        }
        lying.size = lying.entries.len() as u64;
        let lie = e.smart_put("smart", "lie.bin", &sealed, &lying.encode()).await;
        assert_eq!((lie.status, lie.code().as_str()), (StatusCode::BAD_REQUEST, "manifest_invalid"), "{:?}", lie.json());
        let mut wrong_key = sealed.manifest.clone();
        wrong_key.entries[0].key = nuage_core::chunk::ChunkKey::from_bytes([9; 32]);
        let wrong = e.smart_put("smart", "lie.bin", &sealed, &wrong_key.encode()).await;
        assert_eq!((wrong.status, wrong.code().as_str()), (StatusCode::BAD_REQUEST, "manifest_invalid"));
        assert_eq!(e.versions_in("smart", "lie.bin").await, 0);
        for a in sealed.chunks.keys() {
            assert!(e.nuage.store.locate(a).await.unwrap().is_empty(), "an aborted upload's chunks are deleted");
        }
        let good = e.smart_put("smart", "good.bin", &sealed, &sealed.manifest.encode()).await;
        assert_eq!(good.status, StatusCode::CREATED, "{:?}", good.json());
        assert_eq!(e.used().await, stored, "charged the stored bytes");
        assert!(e.alice("GET", "/v1/buckets/smart/objects/good.bin", vec![]).await.body == body);

        // A chunk sent without its key, or with another key, is refused and not stored.
        let body2 = data(300_000, 42);
        let sealed2 = e.seal_like_a_device(&body2).await;
        let started = e.start_upload("two.bin", &sealed2).await.json();
        let t = &started["missing"][0];
        let a: nuage_core::Address = t["address"].as_str().unwrap().parse().unwrap();
        let grant = t["headers"]["x-nuage-grant"].as_str().unwrap();
        let path = format!("/v1/chunks/{}", a.to_hex());
        let bytes = sealed2.chunks[&a].clone();
        let no_key = e.call("PUT", &path, "", &[("x-nuage-grant", grant)], bytes.clone()).await;
        assert_eq!((no_key.status, no_key.code().as_str()), (StatusCode::BAD_REQUEST, "chunk_key_missing"));
        let other = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk"; // [9; 32]
        let bad_key = e.call("PUT", &path, "", &[("x-nuage-grant", grant), ("x-nuage-chunk-key", other)], bytes).await;
        assert_eq!((bad_key.status, bad_key.code().as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "chunk_key_mismatch"));
        assert!(e.nuage.store.locate(&a).await.unwrap().is_empty(), "nothing stored");

        // Quota: a start without `size` is held to the room too, on what it declares.
        e.nuage.meta.set_quota(e.alice_id, Some(stored + 100_000)).await.unwrap();
        let big = e.start_upload("big.bin", &e.seal_like_a_device(&data(300_000, 43)).await).await;
        assert_eq!((big.status, big.code().as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded"));
        // Room shrinks between the declaration and the bytes (another upload holds it): the
        // chunk that no longer fits is refused before it is stored.
        e.nuage.meta.set_quota(e.alice_id, Some(stored + 400_000)).await.unwrap();
        let sealed3 = e.seal_like_a_device(&data(300_000, 44)).await;
        let started3 = e.start_upload("three.bin", &sealed3).await;
        assert_eq!(started3.status, StatusCode::CREATED, "{:?}", started3.json());
        e.nuage.meta.set_quota(e.alice_id, Some(stored + 1_000)).await.unwrap();
        let t = &started3.json()["missing"][0];
        let a3: nuage_core::Address = t["address"].as_str().unwrap().parse().unwrap();
        let late = e.put_chunk(&a3, t["headers"]["x-nuage-grant"].as_str().unwrap(), sealed3.chunks[&a3].clone()).await;
        assert_eq!((late.status, late.code().as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded"));
        assert!(e.nuage.store.locate(&a3).await.unwrap().is_empty(), "nothing stored");
        assert_eq!(e.used().await, stored);

        // Bob learnt Alice's chunk addresses: declaring them gets him targets as for any
        // chunk nobody has (nothing tells him they exist), and his commit without the bytes
        // is refused.
        let addresses: Vec<_> = sealed.chunks.iter().map(|(a, b)| serde_json::json!({"address": a.to_hex(), "size": b.len()})).collect();
        let json = [("content-type", "application/json")];
        let req = serde_json::json!({"bucket": "mine", "key": "stolen", "chunks": addresses});
        assert_eq!(e.call("PUT", "/v1/buckets/mine", &e.bob, &[], vec![]).await.status, StatusCode::CREATED);
        let bobs = e.call("POST", "/v1/uploads", &e.bob, &json, req.to_string().into_bytes()).await;
        assert_eq!(bobs.status, StatusCode::CREATED);
        let targets = bobs.json()["missing"].as_array().unwrap().len();
        assert_eq!(targets, sealed.chunks.len(), "every chunk asked for");
        use base64::Engine;
        let m = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed.manifest.encode());
        let commit = serde_json::json!({"manifest": m});
        let id = bobs.json()["upload_id"].as_str().unwrap().to_owned();
        let stolen = e.call("POST", &format!("/v1/uploads/{id}/commit"), &e.bob, &json, commit.to_string().into_bytes()).await;
        assert_eq!((stolen.status, stolen.code().as_str()), (StatusCode::CONFLICT, "chunks_missing"));
    }
}

on_every_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    fn idempotent_retries_truncated_bodies_and_concurrent_puts(e) {
        e.alice("PUT", "/v1/buckets/box", vec![]).await;
        let first = e
            .call(
                "PUT",
                "/v1/buckets/box/objects/k",
                &e.alice.clone(),
                &[("idempotency-key", "abc-1")],
                b"v1".to_vec(),
            )
            .await;
        let retry = e
            .call(
                "PUT",
                "/v1/buckets/box/objects/k",
                &e.alice.clone(),
                &[("idempotency-key", "abc-1")],
                b"v1".to_vec(),
            )
            .await;
        assert_eq!((first.status, retry.status), (StatusCode::CREATED, StatusCode::OK));
        assert_eq!(first.header("x-nuage-version"), retry.header("x-nuage-version"));
        assert_eq!(e.versions("k").await, 1);
        // A key that is no idempotency key is refused, after the key and the bucket (each
        // write alike), and makes nothing.
        let bad = "x".repeat(256);
        for (method, uri, body, code) in [
            ("PUT", "/v1/buckets/box/objects/k", b"v2".to_vec(), "invalid_idempotency_key"),
            ("PUT", "/v1/buckets/nope/objects/k", b"v2".to_vec(), "bucket_not_found"),
            ("PUT", "/v1/buckets/box/objects/a%5Cb", b"v2".to_vec(), "invalid_key"),
            ("DELETE", "/v1/buckets/box/objects/k", vec![], "invalid_idempotency_key"),
            ("POST", "/v1/buckets/box/versions/k", br#"{"version": 1}"#.to_vec(), "invalid_idempotency_key"),
        ] {
            for idem in [bad.as_str(), "a b", "a\tb"] {
                let headers = [("idempotency-key", idem), ("content-type", "application/json")];
                let a = e.call(method, uri, &e.alice.clone(), &headers, body.clone()).await;
                assert_eq!(a.code(), code, "{method} {uri} with Idempotency-Key {idem:?}");
            }
        }
        assert_eq!(e.versions("k").await, 1);
        let other = e
            .call(
                "PUT",
                "/v1/buckets/box/objects/k2",
                &e.alice.clone(),
                &[("idempotency-key", "abc-1")],
                b"v1".to_vec(),
            )
            .await;
        assert_eq!(
            (other.status, other.code().as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
        );
        let delete = e
            .call("DELETE", "/v1/buckets/box/objects/k", &e.alice.clone(), &[("idempotency-key", "abc-1")], vec![])
            .await;
        assert_eq!(
            (delete.status, delete.code().as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            "a DELETE cannot reuse a PUT's key"
        );
        assert_eq!(e.versions("k").await, 1);

        // The client goes away mid-body: no version appears.
        let parts: Vec<Result<Vec<u8>, std::io::Error>> =
            vec![Ok(data(100_000, 4)), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "gone"))];
        let req = Request::put("/v1/buckets/box/objects/cut")
            .header("authorization", format!("Bearer {}", e.alice))
            .body(Body::from_stream(futures::stream::iter(parts)))
            .unwrap();
        let cut = e.send(req).await;
        assert_eq!((cut.status, cut.code().as_str()), (StatusCode::BAD_REQUEST, "body_incomplete"));
        assert_eq!(e.versions("cut").await, 0);

        // Two PUTs to one key at once: both complete, one wins, the object is one of the two.
        let (a, b) = (data(700_000, 5), data(700_000, 6));
        let (ra, rb) = tokio::join!(
            e.alice("PUT", "/v1/buckets/box/objects/race", a.clone()),
            e.alice("PUT", "/v1/buckets/box/objects/race", b.clone())
        );
        assert_eq!((ra.status, rb.status), (StatusCode::CREATED, StatusCode::CREATED));
        let got = e.alice("GET", "/v1/buckets/box/objects/race", vec![]).await.body;
        assert!(got == a || got == b, "the object is one whole upload");
        assert_eq!(e.versions("race").await, 2);
    }
}

on_every_backend! {
    #[tokio::test]
    fn versions_tombstones_listing(e) {
        let policy = br#"{"keep_versions": 2}"#.to_vec();
        e.call("PUT", "/v1/buckets/box", &e.alice.clone(), &[("content-type", "application/json")], policy).await;
        let v1 = e.alice("PUT", "/v1/buckets/box/objects/doc", b"one".to_vec()).await.json()["version"]
            .as_i64()
            .unwrap();
        e.alice("PUT", "/v1/buckets/box/objects/doc", b"two".to_vec()).await;
        let v3 = e.alice("PUT", "/v1/buckets/box/objects/doc", b"three".to_vec()).await.json()["version"]
            .as_i64()
            .unwrap();
        assert_eq!(e.versions("doc").await, 2, "keep_versions = 2 pruned the first");
        let gone = e.alice("GET", &format!("/v1/buckets/box/objects/doc?version={v1}"), vec![]).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        assert_eq!(e.used().await, (3 + 36) + (5 + 36), "the stored bytes of the two kept versions");

        let del = e.alice("DELETE", "/v1/buckets/box/objects/doc", vec![]).await;
        assert_eq!(del.status, StatusCode::NO_CONTENT);
        let after = e.alice("GET", "/v1/buckets/box/objects/doc", vec![]).await;
        assert_eq!((after.status, after.code().as_str()), (StatusCode::NOT_FOUND, "object_not_found"));
        let old = e.alice("GET", &format!("/v1/buckets/box/objects/doc?version={v3}"), vec![]).await;
        assert_eq!(old.body, b"three", "an old version stays readable after the delete");
        let vs = e.alice("GET", "/v1/buckets/box/versions/doc", vec![]).await.json();
        assert_eq!(vs["versions"][0]["tombstone"], true);

        for k in ["a/1", "a/2", "b/1", "c"] {
            e.alice("PUT", &format!("/v1/buckets/box/objects/{k}"), k.as_bytes().to_vec()).await;
        }
        let top = e.alice("GET", "/v1/buckets/box/objects?delimiter=/", vec![]).await.json();
        assert_eq!(top["prefixes"], serde_json::json!(["a/", "b/"]));
        assert_eq!(top["objects"][0]["key"], "c");
        let mut keys = Vec::new();
        let mut uri = "/v1/buckets/box/objects?prefix=a/&limit=1".to_owned();
        loop {
            let page = e.alice("GET", &uri, vec![]).await.json();
            keys.extend(
                page["objects"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap().to_owned()),
            );
            match page["next_page_token"].as_str() {
                Some(t) => uri = format!("/v1/buckets/box/objects?prefix=a/&limit=1&page_token={t}"),
                None => break,
            }
        }
        assert_eq!(keys, ["a/1", "a/2"]);
        let bad = e.alice("GET", "/v1/buckets/box/objects?page_token=zz", vec![]).await;
        assert_eq!(bad.code(), "invalid_page_token");
    }
}

on_every_backend! {
    #[tokio::test]
    fn a_restore_copies_the_manifest_of_an_old_version_and_moves_no_byte(e) {
        e.alice("PUT", "/v1/buckets/box", vec![]).await;
        let old = data(300_000, 41);
        let v1 = e.alice("PUT", "/v1/buckets/box/objects/doc", old.clone()).await.json();
        e.alice("PUT", "/v1/buckets/box/objects/doc", b"newer".to_vec()).await;
        e.alice("PUT", "/v1/buckets/box/objects/other", b"other".to_vec()).await;
        let gone = e.alice("DELETE", "/v1/buckets/box/objects/doc", vec![]).await;
        let tombstone = gone.header("x-nuage-version").to_owned();
        let (files, chunks, used) = (chunk_files(&e), e.nuage.meta.chunk_totals().await.unwrap(), e.used().await);
        let restore = |version: serde_json::Value, headers: Vec<(&'static str, String)>| {
            let body = serde_json::to_vec(&serde_json::json!({ "version": version })).unwrap();
            let token = e.alice.clone();
            let e = &e;
            async move {
                let mut h: Vec<(&str, &str)> = vec![("content-type", "application/json")];
                h.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
                e.call("POST", "/v1/buckets/box/versions/doc", &token, &h, body).await
            }
        };
        // A tombstone, another key's version, a version that never was: nothing to restore.
        let other = e.alice("GET", "/v1/buckets/box/versions/other", vec![]).await.json()["versions"][0]["version"].clone();
        for v in [serde_json::json!(tombstone.parse::<i64>().unwrap()), other, serde_json::json!(999_999)] {
            let a = restore(v.clone(), vec![]).await;
            assert_eq!((a.status, a.code().as_str()), (StatusCode::NOT_FOUND, "object_not_found"), "{v}");
        }
        let bad = restore(serde_json::json!("one"), vec![]).await;
        assert_eq!((bad.status, bad.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
        let wrong = restore(v1["version"].clone(), vec![("if-match", format!("\"{}\"", "0".repeat(64)))]).await;
        assert_eq!(wrong.status, StatusCode::PRECONDITION_FAILED);
        // Another account: no such bucket.
        let body = serde_json::to_vec(&serde_json::json!({ "version": v1["version"] })).unwrap();
        let bob = e.call("POST", "/v1/buckets/box/versions/doc", &e.bob.clone(), &[("content-type", "application/json")], body).await;
        assert_eq!((bob.status, bob.code().as_str()), (StatusCode::NOT_FOUND, "bucket_not_found"));
        // The quota counts the restored version as an upload of its chunks would.
        e.nuage.meta.set_quota(e.alice_id, Some(used + 10)).await.unwrap();
        let full = restore(v1["version"].clone(), vec![]).await;
        assert_eq!((full.status, full.code().as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded"));
        assert_eq!(e.versions("doc").await, 3, "a refused restore makes nothing");
        e.nuage.meta.set_quota(e.alice_id, None).await.unwrap();

        let made = restore(v1["version"].clone(), vec![("idempotency-key", "restore-1".into())]).await;
        assert_eq!(made.status, StatusCode::CREATED);
        let made = made.json();
        assert_eq!(made["etag"], v1["etag"]);
        assert!(made["version"].as_i64() > v1["version"].as_i64());
        assert_eq!(e.alice("GET", "/v1/buckets/box/objects/doc", vec![]).await.body, old, "undeleted, old content");
        let (refs, zero) = e.nuage.meta.chunk_totals().await.unwrap();
        assert_eq!((chunk_files(&e), zero), (files, chunks.1), "no chunk written");
        assert!(refs > chunks.0, "the new version references the old one's chunks");
        assert!(e.used().await > used, "charged");
        let replay = restore(v1["version"].clone(), vec![("idempotency-key", "restore-1".into())]).await;
        assert_eq!(replay.status, StatusCode::OK);
        assert_eq!((replay.json()["replayed"].clone(), replay.json()["version"].clone()), (serde_json::json!(true), made["version"].clone()));
        assert_eq!(e.versions("doc").await, 4, "v1, newer, the tombstone, the restored one");
        let current = restore(made["version"].clone(), vec![]).await;
        assert_eq!((current.status, current.json()["version"].clone()), (StatusCode::OK, made["version"].clone()));
        assert_eq!(e.versions("doc").await, 4, "restoring the current version makes nothing");
        // In a bucket that keeps two versions, the restore prunes the version it copied:
        // the chunks stay referenced by the new one.
        let policy = br#"{"keep_versions": 2}"#.to_vec();
        e.call("PUT", "/v1/buckets/two", &e.alice.clone(), &[("content-type", "application/json")], policy).await;
        let first = e.alice("PUT", "/v1/buckets/two/objects/k", old.clone()).await.json();
        e.alice("PUT", "/v1/buckets/two/objects/k", b"second".to_vec()).await;
        let body = serde_json::to_vec(&serde_json::json!({ "version": first["version"] })).unwrap();
        let back = e.call("POST", "/v1/buckets/two/versions/k", &e.alice.clone(), &[("content-type", "application/json")], body).await;
        assert_eq!(back.status, StatusCode::CREATED);
        assert_eq!(e.versions_in("two", "k").await, 2, "the copied version was pruned");
        let unreferenced = e.nuage.meta.unreferenced_chunks(None, nuage_meta::now_ms() + 60_000, 1000).await.unwrap();
        assert!(unreferenced.is_empty(), "the restored version references its chunks");
        assert_eq!(e.alice("GET", "/v1/buckets/two/objects/k", vec![]).await.body, old);
        assert_eq!(e.alice("GET", "/v1/buckets/box/objects/doc", vec![]).await.body, old);
    }
}

on_every_backend! {
    #[tokio::test]
    fn access_keys_are_the_callers_own(e) {
        let alice = e.alice.clone();
        let made = e.json_call("POST", "/v1/access-keys", &alice, serde_json::json!({"name": "app", "read_only": true})).await;
        assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.json());
        let made = made.json();
        let id = made["id"].as_str().unwrap().to_owned();
        assert_eq!(made["secret"].as_str().unwrap().len(), 40);
        assert_eq!((made["name"].as_str(), made["read_only"].as_bool()), (Some("app"), Some(true)));
        // The secret opens: the S3 endpoint would find it.
        let (key, secret) = e.nuage.access_key_secret(&id).await.unwrap();
        assert_eq!((key.account_id, secret.as_str()), (e.alice_id, made["secret"].as_str().unwrap()));
        let listed = e.alice("GET", "/v1/access-keys", vec![]).await.json();
        assert_eq!(listed["access_keys"][0]["id"], id.as_str());
        assert!(listed["access_keys"][0].get("secret").is_none(), "never listed with its secret");
        // Another account neither sees it nor revokes it.
        let bob = e.bob.clone();
        assert_eq!(e.call("GET", "/v1/access-keys", &bob, &[], vec![]).await.json()["access_keys"], serde_json::json!([]));
        let theirs = e.call("DELETE", &format!("/v1/access-keys/{id}"), &bob, &[], vec![]).await;
        assert_eq!((theirs.status, theirs.code().as_str()), (StatusCode::NOT_FOUND, "access_key_not_found"));
        assert!(e.nuage.access_key_secret(&id).await.is_ok());
        // Bad input makes nothing.
        let bad = e.json_call("POST", "/v1/access-keys", &alice, serde_json::json!({"bucket": "No_Such"})).await;
        assert_eq!((bad.status, bad.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_bucket_name"));
        let unknown = e.json_call("POST", "/v1/access-keys", &alice, serde_json::json!({"admin": true})).await;
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.alice("GET", "/v1/access-keys", vec![]).await.json()["access_keys"].as_array().unwrap().len(), 1);
        // Revoked: refused from then on, and once only.
        let gone = e.call("DELETE", &format!("/v1/access-keys/{id}"), &alice, &[], vec![]).await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT);
        assert_eq!(e.nuage.access_key_secret(&id).await.unwrap_err().code, "access_key_invalid");
        let again = e.call("DELETE", &format!("/v1/access-keys/{id}"), &alice, &[], vec![]).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
        assert_eq!(e.call("GET", "/v1/access-keys", "", &[], vec![]).await.status, StatusCode::UNAUTHORIZED);
    }
}

on_every_backend! {
    #[tokio::test]
    fn lifecycle_rules_expire_remove_and_abort_when_due_and_only_then(e) {
        use nuage_service::lifecycle::LifecycleRule;
        const DAY: i64 = 86_400_000;
        let never = nuage_service::background::StopSignal::never();
        let caller = nuage_service::auth::Caller { account_id: e.alice_id, token_id: 0 };
        assert_eq!(e.alice("PUT", "/v1/buckets/box", vec![]).await.status, StatusCode::CREATED);
        for (key, body) in [("logs/a", "one"), ("logs/a", "two"), ("keep/b", "kept")] {
            let put = e.alice("PUT", &format!("/v1/buckets/box/objects/{key}"), body.as_bytes().to_vec()).await;
            assert_eq!(put.status, StatusCode::CREATED);
        }
        let upload = e
            .nuage
            .start_multipart(e.alice_id, "box", "logs/big", None, Default::default())
            .await
            .unwrap();
        let rule = LifecycleRule {
            enabled: true,
            prefix: "logs/".into(),
            expire_after_days: Some(1),
            noncurrent_after_days: Some(1),
            abort_multipart_after_days: Some(1),
            ..Default::default()
        };
        e.nuage.set_lifecycle(caller, "box", Some(std::slice::from_ref(&rule))).await.unwrap();
        assert_eq!(e.nuage.lifecycle(caller, "box").await.unwrap(), Some(vec![rule.clone()]));
        let now = nuage_meta::now_ms();
        // Not yet due: nothing changes.
        let r = e.nuage.apply_lifecycle(now, &never).await.unwrap();
        assert_eq!((r.buckets, r.expired, r.noncurrent_removed, r.uploads_aborted), (1, 0, 0, 0));
        // Two days on: the current version expires under a delete marker, the version it
        // replaced goes, the upload is aborted; keys outside the prefix stay.
        let r = e.nuage.apply_lifecycle(now + 2 * DAY, &never).await.unwrap();
        assert_eq!((r.expired, r.noncurrent_removed, r.uploads_aborted), (1, 1, 1));
        assert_eq!(e.alice("GET", "/v1/buckets/box/objects/logs/a", vec![]).await.status, StatusCode::NOT_FOUND);
        assert_eq!(e.alice("GET", "/v1/buckets/box/objects/keep/b", vec![]).await.body, b"kept");
        let versions = e.alice("GET", "/v1/buckets/box/versions/logs/a", vec![]).await.json();
        assert_eq!(versions["versions"].as_array().unwrap().len(), 2, "{versions}");
        let gone = e.nuage.multipart(e.alice_id, "box", "logs/big", &upload.id).await;
        assert_eq!(gone.unwrap_err().code, "multipart_not_found");
        // Again: the version the marker covers has been noncurrent since the marker was made.
        let r = e.nuage.apply_lifecycle(now + 2 * DAY, &never).await.unwrap();
        assert_eq!((r.expired, r.noncurrent_removed, r.markers_removed), (0, 1, 0));
        // A rule that removes markers left alone takes the key with its last version.
        let markers = LifecycleRule { enabled: true, prefix: "logs/".into(), expired_delete_markers: true, ..Default::default() };
        e.nuage.set_lifecycle(caller, "box", Some(&[markers])).await.unwrap();
        assert_eq!(e.nuage.apply_lifecycle(now, &never).await.unwrap().markers_removed, 1);
        assert_eq!(e.alice("GET", "/v1/buckets/box/versions/logs/a", vec![]).await.status, StatusCode::NOT_FOUND);
        // A disabled rule does nothing; bad rules are refused and change nothing.
        let off = LifecycleRule { enabled: false, ..rule.clone() };
        e.nuage.set_lifecycle(caller, "box", Some(&[off])).await.unwrap();
        let r = e.nuage.apply_lifecycle(now + 30 * DAY, &never).await.unwrap();
        assert_eq!((r.expired, r.noncurrent_removed, r.markers_removed), (0, 0, 0));
        let bad = LifecycleRule { expire_after_days: Some(0), ..rule };
        assert_eq!(e.nuage.set_lifecycle(caller, "box", Some(&[bad])).await.unwrap_err().code, "invalid_lifecycle");
        assert!(!e.nuage.lifecycle(caller, "box").await.unwrap().unwrap()[0].enabled);
        e.nuage.set_lifecycle(caller, "box", None).await.unwrap();
        assert_eq!(e.nuage.lifecycle(caller, "box").await.unwrap(), None);
    }
}

on_every_backend! {
    #[tokio::test]
    fn openapi_metrics_and_health_need_no_token(e) {
        let doc = e.call("GET", "/v1/openapi.json", "", &[], vec![]).await;
        assert_eq!(doc.status, StatusCode::OK);
        let doc = doc.json();
        let object = &doc["paths"]["/v1/buckets/{bucket}/objects/{key}"];
        for method in ["put", "get", "head", "delete"] {
            assert!(object[method].is_object(), "{method} documented");
        }
        assert!(object["put"]["responses"]["413"].is_object(), "quota answer documented");
        assert!(object["get"]["responses"]["200"]["headers"]["ETag"].is_object(), "response headers declared");
        assert!(doc["components"]["securitySchemes"]["token"].is_object());
        assert!(doc["paths"]["/s/{token}"]["get"].is_object(), "the share page is listed");
        assert_eq!(doc["paths"].as_object().unwrap().len(), 30);
        // Every operation that needs a token says what a missing one answers; a query
        // parameter is declared in the query.
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                    assert!(op["responses"]["401"].is_object(), "{method} {path}: no 401");
                }
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["in"] == "path" {
                        assert!(path.contains(&format!("{{{}}}", p["name"].as_str().unwrap())), "{method} {path}: {p}");
                    }
                }
            }
        }
        let health = e.call("GET", "/healthz", "", &[], vec![]).await;
        assert_eq!((health.status, health.json()["status"].as_str()), (StatusCode::OK, Some("ok")));
        e.alice("PUT", "/v1/buckets/box", vec![]).await;
        let metrics = String::from_utf8(e.call("GET", "/metrics", "", &[], vec![]).await.body).unwrap();
        assert!(metrics.contains("nuage_http_requests_total{method=\"PUT\",status=\"201\"} 1"), "{metrics}");
        let nowhere = e.call("GET", "/v2/nothing", "", &[], vec![]).await;
        assert_eq!((nowhere.status, nowhere.code().as_str()), (StatusCode::NOT_FOUND, "no_route"));
    }
}

/// A file sealed on the device side, as the smart client does it.
struct Sealed {
    manifest: nuage_core::Manifest,
    chunks: std::collections::HashMap<nuage_core::Address, Vec<u8>>,
}

impl Env {
    async fn seal_like_a_device(&self, body: &[u8]) -> Sealed {
        self.seal_with(body, None).await
    }

    /// Seals as the device does, for an end-to-end bucket when `key` is given.
    async fn seal_with(&self, body: &[u8], key: Option<&nuage_core::e2e::ContentKey>) -> Sealed {
        use base64::Engine;
        let s = self.alice("GET", "/v1/uploads/settings", vec![]).await.json();
        let secret: [u8; 32] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s["convergence_secret"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let size = |k: &str| s[k].as_u64().unwrap() as usize;
        let pipeline = nuage_core::pipeline::Pipeline {
            chunker: nuage_core::ChunkerConfig {
                min_size: size("min_size"),
                avg_size: size("avg_size"),
                max_size: size("max_size"),
            },
            seal: nuage_core::SealOptions {
                compression: if key.is_some() {
                    nuage_core::Compression::None
                } else {
                    nuage_core::Compression::Zstd(1)
                },
            },
            secret: match key {
                Some(k) => k.convergence_secret(),
                None => nuage_core::ConvergenceSecret::from_bytes(secret),
            },
        };
        let mut chunks = std::collections::HashMap::new();
        let manifest = pipeline
            .run_parallel(body, |c| -> Result<(), ()> {
                if key.is_none() {
                    self.keys.lock().unwrap().insert(c.address, c.key);
                }
                chunks.insert(c.address, c.bytes);
                Ok(())
            })
            .unwrap();
        Sealed { manifest, chunks }
    }

    async fn start_upload(&self, key: &str, sealed: &Sealed) -> Answer {
        self.start_upload_in("smart", key, sealed).await
    }

    async fn start_upload_in(&self, bucket: &str, key: &str, sealed: &Sealed) -> Answer {
        let chunks: Vec<_> = sealed
            .chunks
            .iter()
            .map(|(a, b)| serde_json::json!({"address": a.to_hex(), "size": b.len()}))
            .collect();
        let req = serde_json::json!({"bucket": bucket, "key": key, "chunks": chunks});
        self.call(
            "POST",
            "/v1/uploads",
            &self.alice,
            &[("content-type", "application/json")],
            req.to_string().into_bytes(),
        )
        .await
    }

    async fn commit_upload(&self, id: &str, manifest: &nuage_core::Manifest) -> Answer {
        self.commit_raw(id, &manifest.encode()).await
    }

    async fn commit_raw(&self, id: &str, manifest: &[u8]) -> Answer {
        use base64::Engine;
        let m = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(manifest);
        let req = serde_json::json!({"manifest": m, "content_type": "text/plain"});
        self.call(
            "POST",
            &format!("/v1/uploads/{id}/commit"),
            &self.alice,
            &[("content-type", "application/json")],
            req.to_string().into_bytes(),
        )
        .await
    }

    /// Sends a chunk as the device does: with its key when it was sealed for a normal bucket.
    async fn put_chunk(&self, address: &nuage_core::Address, grant: &str, bytes: Vec<u8>) -> Answer {
        use base64::Engine;
        let key = self
            .keys
            .lock()
            .unwrap()
            .get(address)
            .map(|k| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k.as_bytes()));
        let mut headers: Vec<(&str, &str)> =
            if grant.is_empty() { vec![] } else { vec![("x-nuage-grant", grant)] };
        if let Some(k) = &key {
            headers.push(("x-nuage-chunk-key", k));
        }
        self.call("PUT", &format!("/v1/chunks/{}", address.to_hex()), "", &headers, bytes).await
    }

    /// A grant signed with the server's current key, with any content.
    async fn forge_with_real_key(&self, grant: nuage_core::grant::Grant) -> String {
        let keys = self.nuage.meta.grant_keys().await.unwrap();
        let k = keys.iter().rev().find(|k| k.retired_at.is_none()).unwrap();
        nuage_core::grant::GrantSigner::from_seed(k.id as u32, &k.seed).sign(&grant)
    }
}

on_every_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    fn chunks_an_interrupted_upload_sent_are_not_asked_for_again(e) {
        e.alice("PUT", "/v1/buckets/smart", vec![]).await;
        let sealed = e.seal_like_a_device(&data(1_500_000, 23)).await;
        let first = e.start_upload("cut.bin", &sealed).await.json();
        let targets = first["missing"].as_array().unwrap().clone();
        assert!(targets.len() >= 4, "{} chunks", targets.len());
        // The device sends half of them, then dies: no commit, no abort.
        let mut sent = std::collections::BTreeSet::new();
        for t in &targets[..targets.len() / 2] {
            let address: nuage_core::Address = t["address"].as_str().unwrap().parse().unwrap();
            let put = e.put_chunk(&address, t["headers"]["x-nuage-grant"].as_str().unwrap(), sealed.chunks[&address].clone()).await;
            assert_eq!(put.status, StatusCode::CREATED);
            sent.insert(address.to_hex());
        }
        // Run again: a new session is asked for the other half only, and commits.
        let again = e.start_upload("cut.bin", &sealed).await.json();
        let asked: std::collections::BTreeSet<String> =
            again["missing"].as_array().unwrap().iter().map(|t| t["address"].as_str().unwrap().to_owned()).collect();
        assert_eq!(asked.len(), targets.len() - sent.len(), "only what the first attempt did not send");
        assert!(asked.is_disjoint(&sent));
        for t in again["missing"].as_array().unwrap() {
            let address: nuage_core::Address = t["address"].as_str().unwrap().parse().unwrap();
            let put = e.put_chunk(&address, t["headers"]["x-nuage-grant"].as_str().unwrap(), sealed.chunks[&address].clone()).await;
            assert_eq!(put.status, StatusCode::CREATED);
        }
        let done = e.commit_upload(again["upload_id"].as_str().unwrap(), &sealed.manifest).await;
        assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.json());
        // Another account that learnt the addresses is asked for every one of them.
        let chunks: Vec<_> = sealed.chunks.iter().map(|(a, b)| serde_json::json!({"address": a.to_hex(), "size": b.len()})).collect();
        e.call("PUT", "/v1/buckets/bobs", &e.bob.clone(), &[], vec![]).await;
        let req = serde_json::json!({"bucket": "bobs", "key": "cut.bin", "chunks": chunks});
        let bobs = e.call("POST", "/v1/uploads", &e.bob.clone(), &[("content-type", "application/json")], req.to_string().into_bytes()).await;
        assert_eq!(bobs.json()["missing"].as_array().unwrap().len(), targets.len());
    }
}

on_every_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    fn smart_upload_sends_only_what_is_missing_and_commits_once(e) {
        assert_eq!(e.alice("PUT", "/v1/buckets/smart", vec![]).await.status, StatusCode::CREATED);
        let body = data(2_000_000, 7);
        let sealed = e.seal_like_a_device(&body).await;
        let start = e.start_upload("doc.txt", &sealed).await;
        assert_eq!(start.status, StatusCode::CREATED, "{:?}", start.json());
        let started = start.json();
        let id = started["upload_id"].as_str().unwrap().to_owned();
        let missing = started["missing"].as_array().unwrap().clone();
        assert_eq!(missing.len(), sealed.chunks.len(), "a new file: every chunk is missing");

        // Committing before the chunks are there is refused, and makes nothing.
        let early = e.commit_upload(&id, &sealed.manifest).await;
        assert_eq!((early.status, early.code().as_str()), (StatusCode::CONFLICT, "chunks_missing"));
        assert_eq!(e.versions_in("smart", "doc.txt").await, 0);

        for t in &missing {
            assert_eq!((t["method"].as_str(), t["url"].as_str().unwrap().starts_with("/v1/chunks/")), (Some("PUT"), true));
            let address: nuage_core::Address = t["address"].as_str().unwrap().parse().unwrap();
            let grant = t["headers"]["x-nuage-grant"].as_str().unwrap();
            let put = e.put_chunk(&address, grant, sealed.chunks[&address].clone()).await;
            assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.json());
        }
        // `nuage admin status` counts what the open session holds: its chunks, and the bytes
        // it has sent.
        let stored: u64 = sealed.chunks.values().map(|b| b.len() as u64).sum();
        let holds = e.nuage.meta.open_session_holds().await.unwrap();
        assert_eq!(holds, (1, sealed.chunks.len() as i64, stored as i64));
        let done = e.commit_upload(&id, &sealed.manifest).await;
        assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.json());
        assert_eq!(e.nuage.meta.open_session_holds().await.unwrap(), (0, 0, 0), "a committed session holds nothing");
        let version = done.json()["version"].as_i64().unwrap();
        // The same commit again is a replay: same version, nothing new.
        let again = e.commit_upload(&id, &sealed.manifest).await;
        assert_eq!((again.status, again.json()["version"].as_i64()), (StatusCode::OK, Some(version)));
        let abort = e.alice("DELETE", &format!("/v1/uploads/{id}"), vec![]).await;
        assert_eq!((abort.status, abort.code().as_str()), (StatusCode::CONFLICT, "upload_committed"));
        assert_eq!(e.versions_in("smart", "doc.txt").await, 1);
        let get = e.alice("GET", "/v1/buckets/smart/objects/doc.txt", vec![]).await;
        assert!(get.status == StatusCode::OK && get.body == body, "reads back identical");
        assert_eq!(get.header("etag"), format!("\"{}\"", blake3::hash(&body).to_hex()));

        // The same file with 1,000 bytes changed in the middle: only the chunks around the
        // change are asked for.
        let mut edited = body.clone();
        edited[1_000_000..1_001_000].fill(0xAB);
        let sealed2 = e.seal_like_a_device(&edited).await;
        let start2 = e.start_upload("doc.txt", &sealed2).await.json();
        let missing2 = start2["missing"].as_array().unwrap();
        assert!(!missing2.is_empty() && missing2.len() <= 2, "{} chunks asked for", missing2.len());
        let sent: usize = missing2
            .iter()
            .map(|t| sealed2.chunks[&t["address"].as_str().unwrap().parse().unwrap()].len())
            .sum();
        assert!(sent * 4 < edited.len(), "sent {sent} of {} bytes", edited.len());

        // A session may start with no chunks and declare them in later batches, as the client
        // does for a large file.
        let body3 = data(700_000, 11);
        let sealed3 = e.seal_like_a_device(&body3).await;
        let json = [("content-type", "application/json")];
        let req = serde_json::json!({"bucket": "smart", "key": "batched.bin", "chunks": []});
        let start3 = e.call("POST", "/v1/uploads", &e.alice, &json, req.to_string().into_bytes()).await;
        assert_eq!(start3.status, StatusCode::CREATED);
        let (id3, none) = (start3.json()["upload_id"].as_str().unwrap().to_owned(), start3.json()["missing"].clone());
        assert_eq!(none.as_array().map(Vec::len), Some(0));
        let mut sent3 = 0;
        for part in sealed3.chunks.iter().collect::<Vec<_>>().chunks(2) {
            let decl: Vec<_> =
                part.iter().map(|(a, b)| serde_json::json!({"address": a.to_hex(), "size": b.len()})).collect();
            let req = serde_json::json!({ "chunks": decl });
            let more = e.call("POST", &format!("/v1/uploads/{id3}/chunks"), &e.alice, &json, req.to_string().into_bytes()).await;
            assert_eq!(more.status, StatusCode::OK, "{:?}", more.json());
            for t in more.json()["missing"].as_array().unwrap() {
                let address: nuage_core::Address = t["address"].as_str().unwrap().parse().unwrap();
                let put = e.put_chunk(&address, t["headers"]["x-nuage-grant"].as_str().unwrap(), sealed3.chunks[&address].clone()).await;
                assert_eq!(put.status, StatusCode::CREATED);
                sent3 += 1;
            }
        }
        assert_eq!(sent3, sealed3.chunks.len());
        assert_eq!(e.commit_upload(&id3, &sealed3.manifest).await.status, StatusCode::CREATED);
        assert!(e.alice("GET", "/v1/buckets/smart/objects/batched.bin", vec![]).await.body == body3);

        // A manifest naming a chunk the session did not declare is refused.
        let id2 = start2["upload_id"].as_str().unwrap();
        let mut foreign = sealed2.manifest.clone();
        foreign.entries[0].address = nuage_core::Address::of(b"not declared");
        let bad = e.commit_upload(id2, &foreign).await;
        assert_eq!((bad.status, bad.code().as_str()), (StatusCode::BAD_REQUEST, "manifest_undeclared_chunk"));
        // Bob cannot commit Alice's session.
        let bobs = e
            .call("POST", &format!("/v1/uploads/{id2}/commit"), &e.bob, &[("content-type", "application/json")],
                  serde_json::json!({"manifest": ""}).to_string().into_bytes())
            .await;
        assert_eq!((bobs.status, bobs.code().as_str()), (StatusCode::NOT_FOUND, "upload_not_found"));
    }
}

on_every_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    fn bad_grants_are_refused_with_their_own_code_and_store_nothing(e) {
        use nuage_core::grant::{Grant, Operation};
        assert_eq!(e.alice("PUT", "/v1/buckets/smart", vec![]).await.status, StatusCode::CREATED);
        let sealed = e.seal_like_a_device(&data(600_000, 9)).await;
        let started = e.start_upload("g.bin", &sealed).await.json();
        let targets = started["missing"].as_array().unwrap();
        assert!(targets.len() >= 2);
        let target = |i: usize| {
            let t = &targets[i];
            let a: nuage_core::Address = t["address"].as_str().unwrap().parse().unwrap();
            (a, t["headers"]["x-nuage-grant"].as_str().unwrap().to_owned())
        };
        let ((a, grant_a), (b, _)) = (target(0), target(1));
        let bytes_a = sealed.chunks[&a].clone();
        let id = started["upload_id"].as_str().unwrap();
        let scope = e.nuage.meta.upload_session(e.alice_id, id).await.unwrap().scope as u64;
        let base = Grant {
            op: Operation::PutChunk,
            key_id: 0,
            address: a,
            scope,
            max_size: bytes_a.len() as u64,
            expires_at: nuage_meta::now_ms() + 60_000,
        };
        let mut flipped = grant_a.clone().into_bytes();
        let i = flipped.len() - 5;
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        let expired = e.forge_with_real_key(Grant { expires_at: nuage_meta::now_ms() - 1, ..base }).await;
        let wrong_op = e.forge_with_real_key(Grant { op: Operation::GetChunk, ..base }).await;
        let outsider = nuage_core::grant::GrantSigner::from_seed(1, &[42; 32]).sign(&base);

        // (what, address in the URL, grant, body, expected status, expected code)
        type Case<'a> = (&'a str, nuage_core::Address, String, Vec<u8>, StatusCode, &'a str);
        let cases: Vec<Case> = vec![
            ("no grant", a, String::new(), bytes_a.clone(), StatusCode::FORBIDDEN, "grant_missing"),
            ("a flipped character", a, flipped, bytes_a.clone(), StatusCode::FORBIDDEN, "grant_forged"),
            ("signed by another key", a, outsider, bytes_a.clone(), StatusCode::FORBIDDEN, "grant_forged"),
            ("expired", a, expired, bytes_a.clone(), StatusCode::FORBIDDEN, "grant_expired"),
            ("for reading", a, wrong_op, bytes_a.clone(), StatusCode::FORBIDDEN, "grant_wrong_operation"),
            ("for another address", b, grant_a.clone(), sealed.chunks[&b].clone(), StatusCode::FORBIDDEN, "grant_wrong_address"),
            ("bytes of another chunk", a, grant_a.clone(), {
                let mut x = bytes_a.clone();
                x[0] ^= 1;
                x
            }, StatusCode::UNPROCESSABLE_ENTITY, "chunk_address_mismatch"),
            ("more bytes than granted", a, grant_a.clone(), [bytes_a.clone(), vec![0]].concat(), StatusCode::PAYLOAD_TOO_LARGE, "grant_size_exceeded"),
        ];
        for (what, address, grant, bytes, status, code) in cases {
            let r = e.put_chunk(&address, &grant, bytes).await;
            assert_eq!((r.status, r.code().as_str()), (status, code), "{what}");
            assert!(e.nuage.store.locate(&address).await.unwrap().is_empty(), "{what}: nothing stored");
        }

        // Rotation: a grant handed out before it keeps working after.
        e.nuage.grants.rotate(&e.nuage.meta).await.unwrap();
        let keys = e.alice("GET", "/v1/grant-keys", vec![]).await.json();
        assert_eq!(keys.as_array().unwrap().len(), 2, "{keys:?}");
        let r = e.put_chunk(&a, &grant_a, bytes_a).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
        assert_eq!(e.nuage.store.locate(&a).await.unwrap().len(), 1);
    }
}

impl Env {
    async fn json_call(&self, method: &str, uri: &str, token: &str, body: serde_json::Value) -> Answer {
        self.call(method, uri, token, &[("content-type", "application/json")], body.to_string().into_bytes())
            .await
    }

    /// Makes a share link as Alice; answers its id and path.
    async fn share(&self, body: serde_json::Value) -> (i64, String) {
        let a = self.json_call("POST", "/v1/shares", &self.alice.clone(), body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.json());
        (a.json()["id"].as_i64().unwrap(), a.json()["path"].as_str().unwrap().to_owned())
    }

    /// Moves a share link's expiry into the past, through the database itself (no waiting).
    async fn expire_share(&self, id: i64) {
        use sqlx::Connection;
        let mut conn = sqlx::AnyConnection::connect(&self.nuage.config.database_url()).await.unwrap();
        sqlx::query("UPDATE shares SET expires_at = 1 WHERE id = $1")
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
    }

    /// Uploads `body` through the smart path; answers the version made.
    async fn smart_put(&self, bucket: &str, key: &str, sealed: &Sealed, manifest: &[u8]) -> Answer {
        let started = self.start_upload_in(bucket, key, sealed).await;
        assert_eq!(started.status, StatusCode::CREATED, "{:?}", started.json());
        let started = started.json();
        for t in started["missing"].as_array().unwrap() {
            let address: nuage_core::Address = t["address"].as_str().unwrap().parse().unwrap();
            let put = self
                .put_chunk(
                    &address,
                    t["headers"]["x-nuage-grant"].as_str().unwrap(),
                    sealed.chunks[&address].clone(),
                )
                .await;
            assert_eq!(put.status, StatusCode::CREATED);
        }
        let id = started["upload_id"].as_str().unwrap();
        let done = self.commit_raw(id, manifest).await;
        if !done.status.is_success() {
            // As the client does: a session that cannot commit is aborted, and gives back
            // the room its chunks held.
            let aborted = self.alice("DELETE", &format!("/v1/uploads/{id}"), vec![]).await;
            assert_eq!(aborted.status, StatusCode::NO_CONTENT, "{:?}", aborted.json());
            let again = self.commit_raw(id, manifest).await;
            assert_eq!((again.status, again.code().as_str()), (StatusCode::GONE, "upload_expired"));
        }
        done
    }
}

on_every_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    fn share_links_enforce_limits_passwords_expiry_and_revocation(e) {
        assert_eq!(e.alice("PUT", "/v1/buckets/box", vec![]).await.status, StatusCode::CREATED);
        let body = data(300_000, 21);
        assert_eq!(e.alice("PUT", "/v1/buckets/box/objects/dir/a.txt", body.clone()).await.status, StatusCode::CREATED);

        // Refused requests make no link.
        let cases = [
            (serde_json::json!({"bucket": "box", "key": "missing"}), StatusCode::NOT_FOUND, "object_not_found"),
            (serde_json::json!({"bucket": "nope", "key": "dir/a.txt"}), StatusCode::NOT_FOUND, "bucket_not_found"),
            (serde_json::json!({"bucket": "box", "key": "dir/a.txt", "max_downloads": 0}), StatusCode::BAD_REQUEST, "invalid_request"),
            (serde_json::json!({"bucket": "box", "key": "dir/a.txt", "password": ""}), StatusCode::BAD_REQUEST, "invalid_request"),
        ];
        for (req, status, code) in cases {
            let a = e.json_call("POST", "/v1/shares", &e.alice.clone(), req.clone()).await;
            assert_eq!((a.status, a.code().as_str()), (status, code), "{req}");
        }
        let bobs = e.json_call("POST", "/v1/shares", &e.bob.clone(), serde_json::json!({"bucket": "box", "key": "dir/a.txt"})).await;
        assert_eq!(bobs.status, StatusCode::NOT_FOUND, "Bob cannot share Alice's object");
        assert_eq!(e.alice("GET", "/v1/shares", vec![]).await.json()["shares"].as_array().unwrap().len(), 0);

        // A link for 5 downloads; 10 race for them: exactly 5 get the file.
        let (limited, path) = e.share(serde_json::json!({"bucket": "box", "key": "dir/a.txt", "max_downloads": 5})).await;
        let info = e.call("GET", &format!("{path}/info"), "", &[], vec![]).await.json();
        assert_eq!((info["name"].as_str(), info["size"].as_u64(), info["e2e"].as_bool()), (Some("a.txt"), Some(300_000), Some(false)));
        assert_eq!(info["etag"].as_str().unwrap(), blake3::hash(&body).to_hex().as_str());
        assert_eq!(info["downloads_left"].as_u64(), Some(5), "info counts nothing");
        let racers: Vec<_> = (0..10)
            .map(|_| {
                let app = e.app.clone();
                let uri = format!("{path}/content");
                tokio::spawn(async move {
                    let res = app.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
                    let status = res.status();
                    (status, res.into_body().collect().await.unwrap().to_bytes().to_vec())
                })
            })
            .collect();
        let mut won = 0;
        for r in racers {
            let (status, got) = r.await.unwrap();
            match status {
                StatusCode::OK => {
                    won += 1;
                    assert!(got == body, "a winner gets the whole file");
                }
                StatusCode::GONE => {
                    let code: serde_json::Value = serde_json::from_slice(&got).unwrap();
                    assert_eq!(code["error"]["code"], "share_exhausted");
                }
                s => panic!("unexpected {s}"),
            }
        }
        assert_eq!(won, 5, "exactly the limit succeeds");
        let after = e.call("GET", &format!("{path}/info"), "", &[], vec![]).await;
        assert_eq!((after.status, after.code().as_str()), (StatusCode::GONE, "share_exhausted"));

        // An unlimited link: ranges, and the version it was made for even after an overwrite.
        let (open, open_path) = e.share(serde_json::json!({"bucket": "box", "key": "dir/a.txt"})).await;
        let (locked, locked_path) = e.share(serde_json::json!({"bucket": "box", "key": "dir/a.txt", "password": "open sesame"})).await;
        let (_, other_locked) = e.share(serde_json::json!({"bucket": "box", "key": "dir/a.txt", "password": "other"})).await;
        assert_eq!(e.alice("PUT", "/v1/buckets/box/objects/dir/a.txt", b"newer".to_vec()).await.status, StatusCode::CREATED);
        let part = e.call("GET", &format!("{open_path}/content"), "", &[("range", "bytes=10-19")], vec![]).await;
        assert_eq!((part.status, part.body.as_slice()), (StatusCode::PARTIAL_CONTENT, &body[10..20]));
        assert!(part.header("content-disposition").contains("a.txt"));

        // A password: asked for, wrong refused, right trades for a grant of this link only.
        let no = e.call("GET", &format!("{locked_path}/content"), "", &[], vec![]).await;
        assert_eq!((no.status, no.code().as_str()), (StatusCode::UNAUTHORIZED, "share_password_required"));
        let wrong = e.json_call("POST", &format!("{locked_path}/unlock"), "", serde_json::json!({"password": "sesame"})).await;
        assert_eq!((wrong.status, wrong.code().as_str()), (StatusCode::FORBIDDEN, "share_password_wrong"));
        let unlocked = e.json_call("POST", &format!("{locked_path}/unlock"), "", serde_json::json!({"password": "open sesame"})).await;
        assert_eq!(unlocked.status, StatusCode::OK);
        let grant = unlocked.json()["grant"].as_str().unwrap().to_owned();
        let yes = e.call("GET", &format!("{locked_path}/content"), "", &[("x-nuage-grant", &grant)], vec![]).await;
        assert!(yes.status == StatusCode::OK && yes.body == body);
        // Guessing is slowed down: after 5 wrong passwords in a row, even the right one waits.
        let other_unlock = format!("{other_locked}/unlock");
        for _ in 0..5 {
            let w = e.json_call("POST", &other_unlock, "", serde_json::json!({"password": "guess"})).await;
            assert_eq!(w.code(), "share_password_wrong");
        }
        let throttled = e.json_call("POST", &other_unlock, "", serde_json::json!({"password": "other"})).await;
        assert_eq!((throttled.status, throttled.code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "share_unlock_throttled"));
        assert!(throttled.header("retry-after").parse::<u64>().unwrap() >= 1);
        let elsewhere = e.call("GET", &format!("{other_locked}/content?grant={grant}"), "", &[], vec![]).await;
        assert_eq!((elsewhere.status, elsewhere.code().as_str()), (StatusCode::FORBIDDEN, "grant_wrong_address"));

        // Expiry and revocation hold at once; Bob cannot revoke Alice's link.
        e.expire_share(open).await;
        let expired = e.call("GET", &format!("{open_path}/content"), "", &[], vec![]).await;
        assert_eq!((expired.status, expired.code().as_str()), (StatusCode::GONE, "share_expired"));
        let bob_revokes = e.call("DELETE", &format!("/v1/shares/{locked}"), &e.bob.clone(), &[], vec![]).await;
        assert_eq!((bob_revokes.status, bob_revokes.code().as_str()), (StatusCode::NOT_FOUND, "share_not_found"));
        assert_eq!(e.alice("DELETE", &format!("/v1/shares/{locked}"), vec![]).await.status, StatusCode::NO_CONTENT);
        let revoked = e.call("GET", &format!("{locked_path}/content"), "", &[("x-nuage-grant", &grant)], vec![]).await;
        assert_eq!((revoked.status, revoked.code().as_str()), (StatusCode::GONE, "share_revoked"));
        let unknown = e.call("GET", "/s/sh_nothing/info", "", &[], vec![]).await;
        assert_eq!((unknown.status, unknown.code().as_str()), (StatusCode::NOT_FOUND, "share_not_found"));

        let list = e.alice("GET", "/v1/shares", vec![]).await.json();
        let states: std::collections::BTreeMap<i64, String> = list["shares"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].as_i64().unwrap(), s["state"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(states[&limited], "exhausted");
        assert_eq!(states[&open], "expired");
        assert_eq!(states[&locked], "revoked");
        // The page is served with a policy that keeps its script and connections to this server.
        let page = e.call("GET", &locked_path, "", &[], vec![]).await;
        assert!(page.status == StatusCode::OK && page.header("content-security-policy").contains("connect-src 'self'"));
    }
}

on_every_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    fn end_to_end_buckets_keep_the_content_from_the_server(e) {
        use base64::Engine;
        use nuage_core::e2e::{self, ContentKey};
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let key = ContentKey::from_bytes([5; 32]);
        let bad = e.json_call("PUT", "/v1/buckets/vault", &e.alice.clone(), serde_json::json!({"e2e_key_id": "xyz"})).await;
        assert_eq!((bad.status, bad.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_key_id"));
        let made = e.json_call("PUT", "/v1/buckets/vault", &e.alice.clone(), serde_json::json!({"e2e_key_id": hex::encode(key.id())})).await;
        assert_eq!(made.status, StatusCode::CREATED);
        assert_eq!(made.json()["e2e_key_id"].as_str(), Some(hex::encode(key.id()).as_str()));
        assert_eq!(e.alice("PUT", "/v1/buckets/smart", vec![]).await.status, StatusCode::CREATED);

        // The plaintext paths are closed.
        for method in ["PUT", "GET"] {
            let r = e.alice(method, "/v1/buckets/vault/objects/x", b"plain".to_vec()).await;
            assert_eq!((r.status, r.code().as_str()), (StatusCode::CONFLICT, "end_to_end_bucket"), "{method}");
        }

        let body = data(500_000, 33);
        let sealed = e.seal_with(&body, Some(&key)).await;
        let (sealed_manifest, _) = e2e::seal_manifest(&key, &sealed.manifest);
        // A plain manifest, or one sealed with another key, is refused and makes nothing.
        let plain = e.smart_put("vault", "doc.bin", &sealed, &sealed.manifest.encode()).await;
        assert_eq!((plain.status, plain.code().as_str()), (StatusCode::BAD_REQUEST, "manifest_invalid"));
        let (other, _) = e2e::seal_manifest(&ContentKey::from_bytes([6; 32]), &sealed.manifest);
        let mismatch = e.smart_put("vault", "doc.bin", &sealed, &other).await;
        assert_eq!((mismatch.status, mismatch.code().as_str()), (StatusCode::CONFLICT, "e2e_key_mismatch"));
        let mut lying = sealed.manifest.clone();
        lying.size = 1;
        let (small, _) = e2e::seal_manifest(&key, &lying);
        let quota_dodge = e.smart_put("vault", "doc.bin", &sealed, &small).await;
        assert_eq!((quota_dodge.status, quota_dodge.code().as_str()), (StatusCode::BAD_REQUEST, "manifest_invalid"), "the size is what the chunks hold");
        // (Its chunks would not even be taken: a normal bucket's come with their keys.)
        let into_normal = e.start_upload_in("smart", "doc.bin", &sealed).await.json();
        let misplaced = e.commit_raw(into_normal["upload_id"].as_str().unwrap(), &sealed_manifest).await;
        assert_eq!((misplaced.status, misplaced.code().as_str()), (StatusCode::BAD_REQUEST, "manifest_invalid"));
        assert_eq!(e.versions_in("vault", "doc.bin").await + e.versions_in("smart", "doc.bin").await, 0);
        let done = e.smart_put("vault", "doc.bin", &sealed, &sealed_manifest).await;
        assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.json());
        // The server lists the name and size, and its ETag is not the file's hash.
        let listed = e.alice("GET", "/v1/buckets/vault/objects", vec![]).await.json();
        let o = &listed["objects"][0];
        assert_eq!((o["key"].as_str(), o["size"].as_u64()), (Some("doc.bin"), Some(500_000)));
        assert_ne!(o["etag"].as_str().unwrap(), blake3::hash(&body).to_hex().as_str());

        // The owner reads it through the manifest and chunk grants, and opens it here.
        let view = e.alice("GET", "/v1/buckets/vault/manifests/doc.bin", vec![]).await.json();
        let stored = b64.decode(view["manifest"].as_str().unwrap()).unwrap();
        let file_key = e2e::unwrap_file_key(&key, &stored).unwrap();
        let manifest = e2e::open_manifest(&file_key, &stored).unwrap();
        let mut back = Vec::new();
        for entry in &manifest.entries {
            let grant = view["grants"][entry.address.to_hex()].as_str().unwrap();
            let c = e.call("GET", &format!("/v1/chunks/{}", entry.address.to_hex()), "", &[("x-nuage-grant", grant)], vec![]).await;
            assert_eq!(c.status, StatusCode::OK);
            back.extend(nuage_core::chunk::open(&c.body, &entry.key, entry.plain_len).unwrap());
        }
        assert!(back == body);

        // Chunk reads refuse bad grants with their own codes.
        let (a, b) = (manifest.entries[0].address, manifest.entries[1].address);
        let grant_a = view["grants"][a.to_hex()].as_str().unwrap().to_owned();
        let started = e.start_upload_in("vault", "other.bin", &e.seal_with(&data(100_000, 34), Some(&key)).await).await.json();
        let put_grant = started["missing"][0]["headers"]["x-nuage-grant"].as_str().unwrap().to_owned();
        let put_address = started["missing"][0]["address"].as_str().unwrap().to_owned();
        let cases = [
            (a.to_hex(), String::new(), "grant_missing"),
            (b.to_hex(), grant_a.clone(), "grant_wrong_address"),
            (put_address, put_grant, "grant_wrong_operation"),
        ];
        for (address, grant, code) in cases {
            let headers: Vec<(&str, &str)> = if grant.is_empty() { vec![] } else { vec![("x-nuage-grant", &grant)] };
            let r = e.call("GET", &format!("/v1/chunks/{address}"), "", &headers, vec![]).await;
            assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, code));
        }

        // A share link gives the sealed manifest (counted) and chunk grants tied to the link.
        let (id, path) = e.share(serde_json::json!({"bucket": "vault", "key": "doc.bin", "max_downloads": 1})).await;
        let info = e.call("GET", &format!("{path}/info"), "", &[], vec![]).await.json();
        assert_eq!((info["e2e"].as_bool(), info["etag"].is_null()), (Some(true), true));
        let content = e.call("GET", &format!("{path}/content"), "", &[], vec![]).await;
        assert_eq!((content.status, content.code().as_str()), (StatusCode::CONFLICT, "end_to_end_bucket"));
        let shared = e.call("GET", &format!("{path}/manifest"), "", &[], vec![]).await;
        assert_eq!(shared.status, StatusCode::OK);
        let shared = shared.json();
        assert_eq!(b64.decode(shared["manifest"].as_str().unwrap()).unwrap(), stored);
        let again = e.call("GET", &format!("{path}/manifest"), "", &[], vec![]).await;
        assert_eq!((again.status, again.code().as_str()), (StatusCode::GONE, "share_exhausted"));
        let share_grant = shared["grants"][a.to_hex()].as_str().unwrap().to_owned();
        let chunk_uri = format!("/v1/chunks/{}", a.to_hex());
        let ok = e.call("GET", &chunk_uri, "", &[("x-nuage-grant", &share_grant)], vec![]).await;
        assert_eq!(ok.status, StatusCode::OK, "the counted download may still fetch its chunks");
        assert_eq!(e.alice("DELETE", &format!("/v1/shares/{id}"), vec![]).await.status, StatusCode::NO_CONTENT);
        let revoked = e.call("GET", &chunk_uri, "", &[("x-nuage-grant", &share_grant)], vec![]).await;
        assert_eq!((revoked.status, revoked.code().as_str()), (StatusCode::GONE, "share_revoked"), "revocation holds at once");
    }
}

/// Direct upload: the device sends chunks straight to S3 (the test server) with presigned
/// URLs; the commit reads them back and verifies them, and the second replica (a local
/// folder) is made afterwards. Runs when `NUAGE_TEST_S3_ENDPOINT` is set, and must when
/// `NUAGE_TEST_REQUIRE` names `s3`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_upload_to_s3_is_verified_then_replicated() {
    let required = std::env::var("NUAGE_TEST_REQUIRE").unwrap_or_default().contains("s3");
    let Some(endpoint) = std::env::var("NUAGE_TEST_S3_ENDPOINT").ok().filter(|v| !v.is_empty()) else {
        assert!(!required, "NUAGE_TEST_REQUIRE names s3 but NUAGE_TEST_S3_ENDPOINT is not set");
        return;
    };
    let var = |n: &str| std::env::var(n).unwrap_or_else(|_| panic!("{n} must be set"));
    let dir = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let text = format!(
        r#"data_dir = {data:?}
[chunking]
min_size = 16384
avg_size = 65536
max_size = 262144
[buckets]
replicas = 2
[[providers]]
name = "s3"
scheme = "s3"
bucket = "{bucket}"
endpoint = "{endpoint}"
access_key_id = "{ak}"
secret_access_key = "{sk}"
root = "/api-direct-{nanos}/"
[[providers]]
name = "local"
scheme = "fs"
root = {local:?}
"#,
        data = dir.path(),
        bucket = var("NUAGE_TEST_S3_BUCKET"),
        ak = var("NUAGE_TEST_S3_ACCESS_KEY"),
        sk = var("NUAGE_TEST_S3_SECRET_KEY"),
        local = dir.path().join("local"),
    );
    let config: ServerConfig = toml::from_str(&text).unwrap();
    let nuage = Arc::new(Nuage::open(config.service).await.unwrap());
    let a = nuage.meta.create_account("alice", None, None, [1; 32]).await.unwrap();
    let alice = nuage_server::issue_token(&nuage, a.id, "test").await.unwrap().token;
    let e = Env {
        app: nuage_server::router(nuage.clone()),
        nuage,
        alice: alice.clone(),
        alice_id: a.id,
        bob: alice,
        keys: Default::default(),
        _dir: dir,
    };

    let made = e
        .json_call("PUT", "/v1/buckets/smart", &e.alice.clone(), serde_json::json!({"direct_upload": true}))
        .await;
    assert_eq!((made.status, made.json()["direct_upload"].as_bool()), (StatusCode::CREATED, Some(true)));
    let body = data(400_000, 51);
    let sealed = e.seal_like_a_device(&body).await;
    assert!(sealed.chunks.len() >= 3);
    let started = e.start_upload("direct.bin", &sealed).await.json();
    let id = started["upload_id"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let send = |t: &serde_json::Value, bytes: Vec<u8>| {
        let mut r = http.request(t["method"].as_str().unwrap().parse().unwrap(), t["url"].as_str().unwrap());
        for (k, v) in t["headers"].as_object().unwrap() {
            r = r.header(k, v.as_str().unwrap());
        }
        async move { r.body(bytes).send().await.unwrap().status() }
    };
    let targets = started["missing"].as_array().unwrap();
    assert_eq!(targets.len(), sealed.chunks.len());
    for (i, t) in targets.iter().enumerate() {
        assert!(t["url"].as_str().unwrap().starts_with(&endpoint), "a presigned S3 URL: {t}");
        assert!(t["headers"].get("x-nuage-grant").is_none());
        let address: nuage_core::Address = t["address"].as_str().unwrap().parse().unwrap();
        let mut bytes = sealed.chunks[&address].clone();
        if i < 3 {
            bytes[30] ^= 1; // the provider takes anything; the commit must not
        }
        assert!(send(t, bytes).await.is_success());
    }
    let bad = e.commit_upload(&id, &sealed.manifest).await;
    assert_eq!(
        (bad.status, bad.code().as_str()),
        (StatusCode::CONFLICT, "chunks_missing"),
        "a chunk that does not hash to its address is not committed"
    );
    assert_eq!(e.versions_in("smart", "direct.bin").await, 0);
    // Three bad objects (what would mark a provider down if they were the provider's fault)
    // are deleted, and S3 stays up for everyone else.
    assert!(!e.nuage.store.provider("s3").unwrap().is_down(), "a device's bad uploads do not mark S3 down");
    for t in &targets[..3] {
        let address: nuage_core::Address = t["address"].as_str().unwrap().parse().unwrap();
        assert!(
            !e.nuage.store.provider("s3").unwrap().exists(&address).await.unwrap(),
            "the bad object was deleted"
        );
        assert!(send(t, sealed.chunks[&address].clone()).await.is_success());
    }
    let done = e.commit_upload(&id, &sealed.manifest).await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.json());
    assert_eq!(
        e.nuage.metrics.chunks_written.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no chunk went through the server"
    );

    e.nuage.replicate_pending().await;
    for address in sealed.chunks.keys() {
        let info = e.nuage.meta.chunk(address.as_bytes()).await.unwrap().unwrap();
        let on: Vec<&str> = info.placements.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(on, ["local", "s3"], "both replicas, after the background copy");
        assert!(e.nuage.store.provider("local").unwrap().exists(address).await.unwrap());
    }
    let get = e.alice("GET", "/v1/buckets/smart/objects/direct.bin", vec![]).await;
    assert!(get.status == StatusCode::OK && get.body == body);
}

/// Every chunk address a provider holds.
async fn listed(p: &nuage_blob::Provider) -> std::collections::BTreeSet<nuage_core::Address> {
    use futures::TryStreamExt;
    p.list().await.unwrap().try_collect().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_deletes_what_nothing_references_and_never_what_an_upload_is_using() {
    use nuage_server::workers::{Kind, run_pass};
    for e in envs_with("[workers]\ngc_grace_secs = 0").await {
        let policy = br#"{"keep_versions": 1}"#.to_vec();
        let json = [("content-type", "application/json")];
        assert_eq!(
            e.call("PUT", "/v1/buckets/smart", &e.alice, &json, policy).await.status,
            StatusCode::CREATED
        );
        let provider = e.nuage.store.providers()[0].clone();
        let (a, b) = (data(300_000, 1), data(200_000, 2));
        assert_eq!(
            e.alice("PUT", "/v1/buckets/smart/objects/a.bin", a.clone()).await.status,
            StatusCode::CREATED
        );
        assert_eq!(
            e.alice("PUT", "/v1/buckets/smart/objects/b.bin", b.clone()).await.status,
            StatusCode::CREATED
        );
        let a_chunks: std::collections::BTreeSet<_> =
            e.seal_like_a_device(&a).await.chunks.into_keys().collect();
        let b_chunks: std::collections::BTreeSet<_> =
            e.seal_like_a_device(&b).await.chunks.into_keys().collect();
        assert!(a_chunks.len() >= 3 && a_chunks.is_disjoint(&b_chunks), "{} chunks", a_chunks.len());
        // Nothing is garbage yet.
        let report = run_pass(&e.nuage, Kind::Gc, false, |_| {}).await.unwrap();
        assert_eq!(report.found, 0);
        // The delete's tombstone prunes a.bin's only version: its chunks lose their last
        // reference. And a stray: a chunk stored by an upload that never committed.
        assert_eq!(
            e.alice("DELETE", "/v1/buckets/smart/objects/a.bin", vec![]).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            e.nuage.meta.unreferenced_chunks(None, i64::MAX, 100).await.unwrap().len(),
            a_chunks.len()
        );
        let stray = nuage_blob::StoredChunk::verify(
            nuage_core::Address::of(b"stray"),
            bytes::Bytes::from_static(b"stray"),
        )
        .unwrap();
        provider.put(&stray.address(), stray.bytes().clone()).await.unwrap();

        // A smart upload of a.bin's content starts: the index still holds its chunks, so the
        // device is asked for none of them...
        let sealed = e.seal_like_a_device(&a).await;
        let start = e.start_upload("again.bin", &sealed).await.json();
        assert_eq!(start["missing"].as_array().unwrap().len(), 0, "held by the index");
        // ...and the collector, running between that answer and the commit, leaves them.
        let report = run_pass(&e.nuage, Kind::Gc, false, |_| {}).await.unwrap();
        assert_eq!(
            (report.found, report.listed.clone()),
            (1, vec![stray.address().to_hex()]),
            "only the stray"
        );
        let held = listed(&provider).await;
        assert!(a_chunks.is_subset(&held) && b_chunks.is_subset(&held) && !held.contains(&stray.address()));
        let done = e.commit_upload(start["upload_id"].as_str().unwrap(), &sealed.manifest).await;
        assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.json());
        let get = e.alice("GET", "/v1/buckets/smart/objects/again.bin", vec![]).await;
        assert!(get.status == StatusCode::OK && get.body == a, "reads back whole");

        // Once nothing references them, every chunk goes, from the provider and the index.
        for key in ["again.bin", "b.bin"] {
            let d = e.alice("DELETE", &format!("/v1/buckets/smart/objects/{key}"), vec![]).await;
            assert_eq!(d.status, StatusCode::NO_CONTENT);
        }
        let totals = e.nuage.meta.chunk_totals().await.unwrap();
        let report = run_pass(&e.nuage, Kind::Gc, false, |_| {}).await.unwrap();
        assert_eq!(report.found as usize, a_chunks.len() + b_chunks.len(), "{totals:?} {report:?}");
        assert!(listed(&provider).await.is_empty(), "nothing left on the provider");
        assert_eq!(e.nuage.meta.chunk_totals().await.unwrap(), (0, 0), "nothing left in the index");
        assert_eq!(run_pass(&e.nuage, Kind::Gc, false, |_| {}).await.unwrap().found, 0, "idempotent");

        // A collector that stopped between recording deletions and making them: an upload of
        // that content waits, the next collector finishes the deletions, then the upload
        // writes the chunks again and commits; nothing it references is missing.
        assert_eq!(
            e.alice("PUT", "/v1/buckets/smart/objects/c.bin", b.clone()).await.status,
            StatusCode::CREATED
        );
        assert_eq!(
            e.alice("DELETE", "/v1/buckets/smart/objects/c.bin", vec![]).await.status,
            StatusCode::NO_CONTENT
        );
        let doomed: Vec<[u8; 32]> = b_chunks.iter().map(|a| *a.as_bytes()).collect();
        assert_eq!(e.nuage.meta.start_deletions(&doomed, i64::MAX).await.unwrap().len(), b_chunks.len());
        let waits = || e.nuage.metrics.deletion_waits.load(std::sync::atomic::Ordering::Relaxed);
        let before = waits();
        let put = {
            let (app, token, body) = (e.app.clone(), e.alice.clone(), b.clone());
            tokio::spawn(async move {
                let req = Request::builder()
                    .method("PUT")
                    .uri("/v1/buckets/smart/objects/d.bin")
                    .header("authorization", format!("Bearer {token}"))
                    .body(Body::from(body))
                    .unwrap();
                app.oneshot(req).await.unwrap().status()
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while waits() == before {
            assert!(std::time::Instant::now() < deadline, "the upload never waited for the deletions");
            tokio::task::yield_now().await;
        }
        assert!(!put.is_finished(), "it waits while the deletions are recorded");
        let report = run_pass(&e.nuage, Kind::Gc, false, |_| {}).await.unwrap();
        assert_eq!(report.found as usize, b_chunks.len(), "the next collector finished them");
        assert_eq!(put.await.unwrap(), StatusCode::CREATED);
        let get = e.alice("GET", "/v1/buckets/smart/objects/d.bin", vec![]).await;
        assert!(get.status == StatusCode::OK && get.body == b, "written again, reads back whole");
        assert!(b_chunks.is_subset(&listed(&provider).await));
        assert_eq!(e.nuage.meta.worker_state("gc").await.unwrap().passes, 0, "a one-off pass keeps no state");
    }
}

/// An access key's secret is kept sealed in the database, comes back whole for the signature
/// check while the key is active, and not once it is revoked; another account cannot revoke it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_keys_keep_their_secrets_sealed_and_stop_when_revoked() {
    use nuage_service::access_keys::KeyScope;
    use nuage_service::auth::Caller;
    for e in envs().await {
        let alice = Caller { account_id: e.alice_id, token_id: 0 };
        let scope = KeyScope { bucket: Some("photos".into()), read_only: true };
        let (key, secret) = e.nuage.create_access_key(alice, "nas", &scope).await.unwrap();
        assert_eq!((key.bucket.as_deref(), key.read_only), (Some("photos"), true));
        let stored = e.nuage.meta.access_key(&key.id).await.unwrap().unwrap();
        assert!(!stored.secret_sealed.windows(secret.len()).any(|w| w == secret.as_bytes()), "sealed");
        let (found, back) = e.nuage.access_key_secret(&key.id).await.unwrap();
        assert_eq!((found.account_id, back.as_str()), (e.alice_id, secret.as_str()));
        assert_eq!(e.nuage.access_keys(alice).await.unwrap().len(), 1);
        let bad = KeyScope { bucket: Some("No".into()), read_only: false };
        assert_eq!(
            e.nuage.create_access_key(alice, "x", &bad).await.unwrap_err().code,
            "invalid_bucket_name"
        );
        let bob = e.nuage.meta.account_by_name("bob").await.unwrap();
        let bob = Caller { account_id: bob.id, token_id: 0 };
        assert_eq!(e.nuage.revoke_access_key(bob, &key.id).await.unwrap_err().code, "access_key_not_found");
        assert_eq!(
            e.nuage.access_key_secret("NUNOSUCHKEYAAAAAAAAA").await.unwrap_err().code,
            "access_key_invalid"
        );
        e.nuage.revoke_access_key(alice, &key.id).await.unwrap();
        assert_eq!(e.nuage.access_key_secret(&key.id).await.unwrap_err().code, "access_key_invalid");
    }
}

/// A collector that takes its claim over from a holder that did not give it back (and is not
/// known dead: it may have been cut off from the database while it lived) finishes that
/// holder's recorded deletions only once its provider deletes can no longer be in flight; one
/// that follows a holder that gave its claim back does not wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_takes_over_waits_out_the_last_holders_provider_requests() {
    use nuage_server::workers::{Kind, run_pass};
    use sqlx::Connection;
    let folder = tempfile::tempdir().unwrap();
    // A one-second time-out: the longest request is 3 attempts of 1 s, plus the pauses.
    let extra = format!(
        "[workers]\ngc_grace_secs = 0\n[[providers]]\nname = \"local\"\nscheme = \"fs\"\nroot = {:?}\ntimeout_secs = 1\n",
        folder.path()
    );
    for e in envs_with(&extra).await {
        let settle = std::time::Duration::from_secs(2) + e.nuage.store.longest_request();
        assert!(settle >= std::time::Duration::from_secs(5), "{settle:?}");
        let url = e.nuage.config.database_url();
        // Deletions recorded as started by a holder that is gone: `given_back` says whether it
        // gave its claim back.
        let interrupted = |seed: u32, given_back: bool| {
            let (e, url) = (&e, url.clone());
            async move {
                let body = data(100_000, seed);
                let key = format!("/v1/buckets/gcb/objects/k{seed}");
                assert_eq!(e.alice("PUT", &key, body.clone()).await.status, StatusCode::CREATED);
                // The tombstone prunes the only version (the bucket keeps one): its chunks are
                // garbage.
                assert_eq!(e.alice("DELETE", &key, vec![]).await.status, StatusCode::NO_CONTENT);
                let chunks: Vec<[u8; 32]> =
                    e.seal_like_a_device(&body).await.chunks.into_keys().map(|a| *a.as_bytes()).collect();
                let owner = if given_back { None } else { Some("elsewhere:1:0badc0de") };
                let mut db = sqlx::AnyConnection::connect(&url).await.unwrap();
                sqlx::query(
                    "INSERT INTO workers (name, owner, owner_until, updated_at) VALUES ('gc', $1, 0, 0) \
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, owner_until = 0",
                )
                .bind(owner)
                .execute(&mut db)
                .await
                .unwrap();
                db.close().await.unwrap();
                assert_eq!(
                    e.nuage.meta.start_deletions(&chunks, i64::MAX).await.unwrap().len(),
                    chunks.len()
                );
                chunks.len() as u64
            }
        };
        let json = [("content-type", "application/json")];
        let policy = br#"{"keep_versions": 1}"#.to_vec();
        assert_eq!(
            e.call("PUT", "/v1/buckets/gcb", &e.alice, &json, policy).await.status,
            StatusCode::CREATED
        );
        sqlx::any::install_default_drivers();
        let n = interrupted(1, true).await;
        let started = std::time::Instant::now();
        let report = run_pass(&e.nuage, Kind::Gc, false, |_| {}).await.unwrap();
        assert_eq!(report.found, n, "finished the deletions left");
        assert!(
            started.elapsed() < settle,
            "no wait after a holder that gave its claim back: {:?}",
            started.elapsed()
        );
        let n = interrupted(2, false).await;
        let started = std::time::Instant::now();
        let report = run_pass(&e.nuage, Kind::Gc, false, |_| {}).await.unwrap();
        assert_eq!(report.found, n, "finished the deletions left");
        assert!(
            started.elapsed() >= settle,
            "waited out the last holder's requests: {:?}",
            started.elapsed()
        );
        // An upload that gives up meanwhile takes the collector's claim for a moment (to
        // delete what it stored): it does nothing then, and gives the claim back still naming
        // the holder before, so that the next pass waits all the same.
        let n = interrupted(3, false).await;
        assert_eq!(nuage_server::workers::discard_now(&e.nuage, &[]).await.unwrap(), 0);
        let started = std::time::Instant::now();
        let report = run_pass(&e.nuage, Kind::Gc, false, |_| {}).await.unwrap();
        assert_eq!(report.found, n, "finished the deletions left");
        assert!(
            started.elapsed() >= settle,
            "still waited, after the upload's claim: {:?}",
            started.elapsed()
        );
        // Settled: the pass after does not wait.
        let started = std::time::Instant::now();
        run_pass(&e.nuage, Kind::Gc, false, |_| {}).await.unwrap();
        assert!(started.elapsed() < settle, "{:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_held_with_fewer_copies_gets_its_new_buckets_copies_before_the_commit_answers() {
    let mut databases = vec![None];
    if let Some(base) = std::env::var("NUAGE_TEST_PG_URL").ok().filter(|u| !u.is_empty()) {
        databases.push(Some(fresh_pg_database(&base).await));
    }
    for database in databases {
        // Two folders of its own per backend: what one run left would be found by the next.
        let folders = tempfile::tempdir().unwrap();
        let provider = |n: &str| {
            format!("[[providers]]\nname = {n:?}\nscheme = \"fs\"\nroot = {:?}\n", folders.path().join(n))
        };
        let e = env(database, &(provider("a") + &provider("b"))).await;
        let json = [("content-type", "application/json")];
        for (name, replicas) in [("one", 1), ("two", 2)] {
            let policy = serde_json::json!({"replicas": replicas}).to_string().into_bytes();
            let made = e.call("PUT", &format!("/v1/buckets/{name}"), &e.alice, &json, policy).await;
            assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.json());
        }
        let sealed = e.seal_like_a_device(&data(500_000, 61)).await;
        let first = e.smart_put("one", "f", &sealed, &sealed.manifest.encode()).await;
        assert_eq!(first.status, StatusCode::CREATED);
        let nuage = e.nuage.clone();
        let copies = |a: nuage_core::Address| {
            let nuage = nuage.clone();
            async move { nuage.meta.chunk(a.as_bytes()).await.unwrap().unwrap().placements.len() }
        };
        for a in sealed.chunks.keys() {
            assert_eq!(copies(*a).await, 1, "one copy in a bucket of one replica");
        }
        // The same file into a bucket of two: nothing to send, and the commit answers only
        // once every chunk has its two copies.
        let started = e.start_upload_in("two", "f", &sealed).await.json();
        assert_eq!(started["missing"].as_array().unwrap().len(), 0, "the account holds every chunk");
        let done = e.commit_raw(started["upload_id"].as_str().unwrap(), &sealed.manifest.encode()).await;
        assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.json());
        for a in sealed.chunks.keys() {
            assert_eq!(copies(*a).await, 2, "both copies, recorded");
            for p in e.nuage.store.providers().iter() {
                assert!(p.get_raw(a).await.unwrap().is_some(), "on {}", p.name());
            }
        }
    }
}

on_every_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    fn password_guesses_sent_at_once_are_counted_before_they_are_checked(e) {
        assert_eq!(e.alice("PUT", "/v1/buckets/box", vec![]).await.status, StatusCode::CREATED);
        assert_eq!(e.alice("PUT", "/v1/buckets/box/objects/a", b"secret".to_vec()).await.status, StatusCode::CREATED);
        let (_, path) = e.share(serde_json::json!({"bucket": "box", "key": "a", "password": "right one"})).await;
        let unlock = format!("{path}/unlock");
        let guesses: Vec<_> = (0..40)
            .map(|i| {
                let app = e.app.clone();
                let req = Request::post(unlock.clone())
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::json!({"password": format!("guess {i}")}).to_string()))
                    .unwrap();
                tokio::spawn(async move { app.oneshot(req).await.unwrap().status() })
            })
            .collect();
        let (mut wrong, mut throttled) = (0, 0);
        for g in guesses {
            match g.await.unwrap() {
                StatusCode::FORBIDDEN => wrong += 1,
                StatusCode::TOO_MANY_REQUESTS => throttled += 1,
                s => panic!("unexpected {s}"),
            }
        }
        assert!(wrong <= nuage_meta::FREE_ATTEMPTS && wrong + throttled == 40, "{wrong} guesses checked");

        // Logins: per name, known or not, the same answers.
        for name in ["alice", "nobody"] {
            let login = |password: &str| {
                e.json_call("POST", "/v1/login", "", serde_json::json!({"account": name, "password": password}))
            };
            for _ in 0..nuage_meta::FREE_ATTEMPTS {
                assert_eq!(login("wrong").await.code(), "invalid_credentials", "{name}");
            }
            let slowed = login("pw").await;
            assert_eq!((slowed.status, slowed.code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "login_throttled"), "{name}");
            assert!(slowed.header("retry-after").parse::<u64>().unwrap() >= 1);
        }
    }
}

on_every_backend! {
    #[tokio::test]
    fn conditional_reads_and_resumed_ranges_never_splice_two_versions(e) {
        assert_eq!(e.alice("PUT", "/v1/buckets/box", vec![]).await.status, StatusCode::CREATED);
        let (one, two) = (data(200_000, 71), data(200_000, 72));
        assert_eq!(put_f(&e, one.clone(), "v1").await.status, StatusCode::CREATED);
        let first = e.alice("GET", "/v1/buckets/box/objects/f", vec![]).await;
        let (etag1, modified) = (first.header("etag").to_owned(), first.header("last-modified").to_owned());
        assert!(httpdate::parse_http_date(&modified).is_ok(), "{modified:?}");

        // Not modified: 304 without a body length, for GET and HEAD alike.
        for method in ["GET", "HEAD"] {
            for h in [("if-modified-since", modified.as_str()), ("if-none-match", etag1.as_str())] {
                let r = get_f(&e, method, &[h]).await;
                assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{method} {h:?}");
                // No body, and a length only if it is the 200's (RFC 9110 §8.6).
                assert!(r.body.is_empty(), "{method} {h:?}");
                assert!(["", "200000"].contains(&r.header("content-length")), "{method} {h:?}");
            }
        }
        let long_ago = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(get_f(&e, "GET", &[("if-modified-since", long_ago)]).await.status, StatusCode::OK);
        assert_eq!(get_f(&e, "GET", &[("if-unmodified-since", long_ago)]).await.code(), "precondition_failed");
        assert_eq!(get_f(&e, "GET", &[("if-unmodified-since", &modified)]).await.status, StatusCode::OK);

        // A resumed download: the range is honoured while If-Range names the version...
        let range = ("range", "bytes=100000-");
        let part = get_f(&e, "GET", &[range, ("if-range", &etag1)]).await;
        assert!(part.status == StatusCode::PARTIAL_CONTENT && part.body == one[100_000..]);
        // A date names a version only when the request pins one: two versions can share a second.
        let by_date = get_f(&e, "GET", &[range, ("if-range", &modified)]).await;
        assert_eq!(by_date.status, StatusCode::OK);
        let v1 = first.header("x-nuage-version").to_owned();
        let pinned = e
            .call("GET", &format!("/v1/buckets/box/objects/f?version={v1}"), &e.alice, &[range, ("if-range", &modified)], vec![])
            .await;
        assert_eq!(pinned.status, StatusCode::PARTIAL_CONTENT);
        let weak_match = get_f(&e, "GET", &[("if-match", &format!("W/{etag1}"))]).await;
        assert_eq!(weak_match.code(), "precondition_failed", "If-Match compares strongly");
        let weak = get_f(&e, "GET", &[range, ("if-range", &format!("W/{etag1}"))]).await;
        assert_eq!(weak.status, StatusCode::OK, "a weak validator never matches");
        // ...and after an overwrite, the whole new version comes instead of its tail.
        assert_eq!(put_f(&e, two.clone(), "v2").await.status, StatusCode::CREATED);
        let resumed = get_f(&e, "GET", &[range, ("if-range", &etag1)]).await;
        assert!(resumed.status == StatusCode::OK && resumed.body == two, "no splice of two versions");

        // The same Idempotency-Key with another body is another request.
        let reused = put_f(&e, one.clone(), "v2").await;
        assert_eq!((reused.status, reused.code().as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"));
        assert_eq!(put_f(&e, two, "v2").await.status, StatusCode::OK, "the same body is a replay");
        assert_eq!(e.versions("f").await, 2);
    }
}

async fn put_f(e: &Env, body: Vec<u8>, idempotency_key: &str) -> Answer {
    e.call("PUT", "/v1/buckets/box/objects/f", &e.alice, &[("idempotency-key", idempotency_key)], body).await
}

async fn get_f(e: &Env, method: &str, headers: &[(&str, &str)]) -> Answer {
    e.call(method, "/v1/buckets/box/objects/f", &e.alice, headers, vec![]).await
}

/// The codes of docs/api.md's error table (and of its edge section).
fn documented_codes() -> std::collections::BTreeSet<String> {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md")).unwrap();
    let mut codes = std::collections::BTreeSet::new();
    for line in docs.lines().filter(|l| l.starts_with("| 4") || l.starts_with("| 5")) {
        if let Some(code) = line.split('|').nth(2).and_then(|c| c.trim().strip_prefix('`')) {
            codes.insert(code.trim_end_matches('`').to_owned());
        }
    }
    codes
}

on_every_backend! {
    /// Every route of the OpenAPI document, sent what a prober sends (an undecodable path
    /// parameter, a bad query value, a body that is not JSON, a method it does not take):
    /// each refusal is JSON with a documented code, and an unknown query parameter is
    /// ignored, never refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    fn every_route_refuses_in_json_with_a_documented_code(e) {
        let documented = documented_codes();
        assert_eq!(e.alice("PUT", "/v1/buckets/box", vec![]).await.status, StatusCode::CREATED);
        let doc = e.call("GET", "/v1/openapi.json", "", &[], vec![]).await.json();
        let paths = doc["paths"].as_object().expect("paths").clone();
        assert!(paths.len() > 20, "{}", paths.len());
        let mut probes = 0;
        let check = |what: String, a: &Answer| {
            if a.status.is_client_error() || a.status.is_server_error() {
                assert!(
                    a.header("content-type").starts_with("application/json") || a.header("content-type").starts_with("text/html"),
                    "{what}: {} answered without JSON ({:?})", a.status, a.header("content-type")
                );
                // A HEAD answer has no body (RFC 9110), so no code to check.
                if a.header("content-type").starts_with("application/json") && !what.starts_with("HEAD ") {
                    let code = a.code();
                    assert!(documented.contains(&code), "{what}: {} `{code}` is not in docs/api.md", a.status);
                }
            }
        };
        for (template, ops) in &paths {
            let with = |param: &str| {
                let mut out = String::new();
                let mut rest = template.as_str();
                while let Some(open) = rest.find('{') {
                    out.push_str(&rest[..open]);
                    let close = rest[open..].find('}').unwrap() + open;
                    let name = &rest[open + 1..close];
                    out.push_str(if name == "bucket" { "box" } else { param });
                    rest = &rest[close + 1..];
                }
                out.push_str(rest);
                out
            };
            for (method, op) in ops.as_object().unwrap() {
                let method = method.to_uppercase();
                if !["GET", "PUT", "POST", "DELETE", "HEAD"].contains(&method.as_str()) {
                    continue;
                }
                // Bad UTF-8 once percent-decoded, in every path parameter.
                let uri = with("%FF%FE");
                let a = e.alice(&method, &uri, vec![]).await;
                check(format!("{method} {uri}"), &a);
                // A value no query parameter takes, and a parameter no route knows.
                let uri = format!("{}?version=abc&limit=-x&zzz_unknown=1", with("k"));
                check(format!("{method} {uri}"), &e.alice(&method, &uri, vec![]).await);
                let uri = format!("{}?zzz_unknown=1", with("k"));
                let a = e.alice(&method, &uri, vec![]).await;
                check(format!("{method} {uri}"), &a);
                assert_ne!(a.code(), "invalid_query", "{method} {uri}: an unknown parameter is ignored");
                // A body that is not JSON, to an operation that takes JSON.
                if op.get("requestBody").is_some() {
                    let a = e
                        .call(&method, &with("k"), &e.alice, &[("content-type", "application/json")], b"{not json".to_vec())
                        .await;
                    check(format!("{method} {template} with a bad JSON body"), &a);
                }
                probes += 3;
            }
            // A method no route takes.
            let a = e.alice("PATCH", &with("k"), vec![]).await;
            check(format!("PATCH {template}"), &a);
            assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "PATCH {template}");
            assert_eq!(a.code(), "method_not_allowed");
            assert!(!a.header("allow").is_empty(), "PATCH {template}: a 405 says what is allowed");
        }
        assert!(probes > 60, "{probes}");
        let a = e.alice("GET", "/v1/nothing-here", vec![]).await;
        assert_eq!((a.status, a.code().as_str()), (StatusCode::NOT_FOUND, "no_route"));
        let a = e.alice("GET", "/v1/buckets/box/objects?limit=many", vec![]).await;
        assert_eq!((a.status, a.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_query"));
        let a = e.alice("GET", "/v1/buckets/box/objects/%FF", vec![]).await;
        assert_eq!((a.status, a.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_path"));
        let a = e.call("POST", "/v1/shares", &e.alice, &[("content-type", "application/json")], b"[1,".to_vec()).await;
        assert_eq!((a.status, a.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
    }
}

on_every_backend! {
    /// Keys are NFC (one object whatever form the client spelt it in); a key a downloader
    /// could not write inside its folder, or that hides what it says, is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    fn keys_are_normalized_and_unsafe_ones_refused(e) {
        assert_eq!(e.alice("PUT", "/v1/buckets/box", vec![]).await.status, StatusCode::CREATED);
        let nfd = "/v1/buckets/box/objects/cafe%CC%81.txt"; // e + combining acute
        let nfc = "/v1/buckets/box/objects/caf%C3%A9.txt";
        assert_eq!(e.alice("PUT", nfd, b"one".to_vec()).await.status, StatusCode::CREATED);
        let put = e.alice("PUT", nfc, b"two".to_vec()).await;
        assert_eq!(put.json()["key"], "caf\u{e9}.txt");
        assert_eq!(e.versions("caf%C3%A9.txt").await, 2, "both forms are one key");
        assert_eq!(e.alice("GET", nfd, vec![]).await.body, b"two");
        let listed = e.alice("GET", "/v1/buckets/box/objects?prefix=cafe%CC%81", vec![]).await;
        assert_eq!(listed.json()["objects"].as_array().map(|o| o.len()), Some(1), "{:?}", listed.json());
        for bad in ["a%5Cb", "C%3A%2Fx", "a%2F..%20%2Fb", "invoice%E2%80%AEfdp.exe", "zero%E2%80%8Bwidth", "x%2F...%2Fy"] {
            let a = e.alice("PUT", &format!("/v1/buckets/box/objects/{bad}"), b"x".to_vec()).await;
            assert_eq!((a.status, a.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_key"), "{bad}");
        }
        let start = e
            .call("POST", "/v1/uploads", &e.alice, &[("content-type", "application/json")],
                br#"{"bucket":"box","key":"a\\b","chunks":[]}"#.to_vec())
            .await;
        assert_eq!(start.code(), "invalid_key");
        assert_eq!(e.alice("GET", "/v1/buckets/box/objects", vec![]).await.json()["objects"].as_array().unwrap().len(), 1);
    }
}

on_every_backend! {
    /// Keys stored before the key rules (in NFD, or breaking a rule added since) stay
    /// readable, shareable and deletable by their exact spelling, never writable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    fn keys_stored_before_the_rules_stay_reachable(e) {
        assert_eq!(e.alice("PUT", "/v1/buckets/box", vec![]).await.status, StatusCode::CREATED);
        let bucket = e.nuage.meta.bucket(e.alice_id, "box").await.unwrap();
        let hash = *blake3::hash(b"").as_bytes();
        let empty = nuage_core::Manifest { entries: vec![], size: 0, hash, parts: vec![] };
        for legacy in ["old\\name.txt", "cafe\u{301}.txt"] {
            let new = nuage_meta::NewVersion {
                size: 0,
                etag: hash,
                content_type: None,
                manifest: empty.encode(),
                chunks: vec![],
                lease_holder: None,
                ..Default::default()
            };
            e.nuage.meta.put_version(&bucket, legacy, &new, &Default::default(), None).await.unwrap();
        }
        for spelt in ["old%5Cname.txt", "cafe%CC%81.txt"] {
            let uri = format!("/v1/buckets/box/objects/{spelt}");
            assert_eq!(e.alice("GET", &uri, vec![]).await.status, StatusCode::OK, "{spelt}");
            assert_eq!(e.versions(spelt).await, 1, "{spelt}");
        }
        // Writing under the old spelling: refused, or made the NFC key.
        let a = e.alice("PUT", "/v1/buckets/box/objects/old%5Cname.txt", b"x".to_vec()).await;
        assert_eq!(a.code(), "invalid_key");
        let a = e.alice("PUT", "/v1/buckets/box/objects/cafe%CC%81.txt", b"new".to_vec()).await;
        assert_eq!(a.json()["key"], "caf\u{e9}.txt");
        // Now the NFC key exists, and is what the decomposed spelling reads.
        assert_eq!(e.alice("GET", "/v1/buckets/box/objects/cafe%CC%81.txt", vec![]).await.body, b"new");
        let share = e
            .call("POST", "/v1/shares", &e.alice, &[("content-type", "application/json")],
                br#"{"bucket":"box","key":"old\\name.txt"}"#.to_vec())
            .await;
        assert_eq!(share.status, StatusCode::CREATED, "{:?}", share.json());
        let gone = e.alice("DELETE", "/v1/buckets/box/objects/old%5Cname.txt", vec![]).await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT);
        let a = e.alice("GET", "/v1/buckets/box/objects/old%5Cname.txt", vec![]).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        let a = e.alice("GET", "/v1/buckets/box/objects/never%5Cstored", vec![]).await;
        assert_eq!((a.status, a.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_key"));
    }
}

/// A damage done to a manifest before a device commits it.
#[derive(Debug, Clone)]
enum Damage {
    /// Flips one bit of the encoding.
    Flip(usize, u8),
    /// Cuts the encoding.
    Cut(usize),
    /// Inserts bytes into the encoding.
    Insert(usize, Vec<u8>),
    /// Sets one entry's plaintext length (and the total, so that it still decodes).
    Length(usize, u32),
    /// Swaps two entries.
    Swap(usize, usize),
    /// Repeats one entry (and grows the total).
    Repeat(usize),
    /// Drops one entry (and shrinks the total).
    Drop(usize),
    /// Gives one entry another entry's key.
    Key(usize, usize),
    /// Points one entry at an address nobody declared.
    Stranger(usize, [u8; 32]),
}

fn damage() -> impl proptest::strategy::Strategy<Value = Damage> {
    use proptest::prelude::*;
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Damage::Flip(i, b)),
        any::<usize>().prop_map(Damage::Cut),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..80))
            .prop_map(|(i, b)| Damage::Insert(i, b)),
        (any::<usize>(), prop_oneof![Just(1u32), 1u32..300_000, Just(u32::MAX)])
            .prop_map(|(i, n)| Damage::Length(i, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Damage::Swap(i, j)),
        any::<usize>().prop_map(Damage::Repeat),
        any::<usize>().prop_map(Damage::Drop),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Damage::Key(i, j)),
        (any::<usize>(), any::<[u8; 32]>()).prop_map(|(i, a)| Damage::Stranger(i, a)),
    ]
}

fn damaged(m: &nuage_core::Manifest, d: &Damage) -> Vec<u8> {
    let mut m = m.clone();
    let n = m.entries.len();
    match d {
        Damage::Flip(i, bit) => {
            let mut raw = m.encode();
            let at = i % raw.len();
            raw[at] ^= 1 << bit;
            return raw;
        }
        Damage::Cut(i) => {
            let mut raw = m.encode();
            raw.truncate(i % raw.len());
            return raw;
        }
        Damage::Insert(i, bytes) => {
            let mut raw = m.encode();
            let at = i % (raw.len() + 1);
            raw.splice(at..at, bytes.iter().copied());
            return raw;
        }
        Damage::Length(i, len) => m.entries[i % n].plain_len = *len,
        Damage::Swap(i, j) => m.entries.swap(i % n, j % n),
        Damage::Repeat(i) => {
            let e = m.entries[i % n];
            m.entries.insert(i % n, e);
        }
        Damage::Drop(i) => {
            m.entries.remove(i % n);
        }
        Damage::Key(i, j) => m.entries[i % n].key = m.entries[j % n].key,
        Damage::Stranger(i, a) => m.entries[i % n].address = nuage_core::Address::from_bytes(*a),
    }
    m.size = m.entries.iter().map(|e| u64::from(e.plain_len)).sum();
    m.encode()
}

/// Manifests on commit: a device may send any bytes as its manifest. From a real one,
/// random damage is refused with a 4xx and a documented code, changing nothing, or (a
/// reordering, a repeat, a drop: what some other file would be) commits a version whose
/// every entry is what its chunk holds, so that a download streams exactly the size the
/// version says. Never a 5xx, never a version that claims bytes its chunks do not hold.
#[test]
fn any_manifest_a_device_commits_is_refused_cleanly_or_true_to_its_chunks() {
    use proptest::test_runner::{Config, TestRunner};
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let e = runtime.block_on(env(None, ""));
    let codes = documented_codes();
    let (sealed, original) = runtime.block_on(async {
        e.alice("PUT", "/v1/buckets/smart", vec![]).await;
        let body = data(400_000, 99);
        let sealed = e.seal_like_a_device(&body).await;
        assert!(sealed.manifest.entries.len() >= 4, "several chunks to damage");
        let first = e.smart_put("smart", "original", &sealed, &sealed.manifest.encode()).await;
        assert_eq!(first.status, StatusCode::CREATED);
        (sealed, body)
    });
    let cases = std::env::var("NUAGE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let n = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&damage(), |d| {
            let raw = damaged(&sealed.manifest, &d);
            let key = format!("k{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            runtime.block_on(async {
                let used = e.used().await;
                let answer = e.smart_put("smart", &key, &sealed, &raw).await;
                let status = answer.status;
                proptest::prop_assert!(!status.is_server_error(), "{d:?}: {status} {:?}", answer.json());
                if !status.is_success() {
                    proptest::prop_assert!(status.is_client_error());
                    let code = answer.code();
                    proptest::prop_assert!(codes.contains(&code), "{d:?}: undocumented {code}");
                    proptest::prop_assert_eq!(e.versions_in("smart", &key).await, 0);
                    proptest::prop_assert_eq!(e.used().await, used, "a refused commit charges nothing");
                    return Ok(());
                }
                // Committed: every entry holds what it says, in the order it says.
                let m = nuage_core::Manifest::decode(&raw).unwrap();
                let mut expected = Vec::new();
                for entry in &m.entries {
                    let i = sealed.manifest.entries.iter().position(|o| o.address == entry.address).unwrap();
                    let at: u64 = sealed.manifest.entries[..i].iter().map(|o| u64::from(o.plain_len)).sum();
                    proptest::prop_assert_eq!(entry.plain_len, sealed.manifest.entries[i].plain_len);
                    expected.extend_from_slice(&original[at as usize..][..entry.plain_len as usize]);
                }
                let got = e.alice("GET", &format!("/v1/buckets/smart/objects/{key}"), vec![]).await;
                proptest::prop_assert_eq!(got.status, StatusCode::OK);
                proptest::prop_assert_eq!(got.header("content-length"), m.size.to_string());
                proptest::prop_assert!(got.body == expected, "{:?}: the content is the entries' chunks", d);
                Ok(())
            })
        })
        .unwrap();
}
