//! Edge caches end to end: the real `nuage serve` and two `nuage edge` processes (regions
//! `eu` and `us`) on loopback, SQLite and a local folder behind them. What each test
//! counts, it reads from the edges' and the server's `/metrics`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use nuage_client::Client;
use nuage_client::api::Progress;
use nuage_core::Address;
use nuage_core::grant::{Grant, GrantSigner, Operation};

/// A server that lists two edges (not started yet), with an account logged in.
struct Setup {
    d: Deployment,
    server: Server,
    token: String,
    ports: [u16; 2],
}

fn setup() -> Setup {
    let ports = [free_port(), free_port()];
    let d = Deployment::new("");
    let server = d.serve_with(&[
        "--edge",
        &format!("http://127.0.0.1:{}=eu", ports[0]),
        "--edge",
        &format!("http://127.0.0.1:{}=us", ports[1]),
    ]);
    let token = d.alice(&server);
    Setup { d, server, token, ports }
}

impl Setup {
    /// Starts the edge of `region` (`eu` on the first port, `us` on the second).
    fn edge(&self, region: &str, extra: &[&str]) -> Server {
        let port = if region == "eu" { self.ports[0] } else { self.ports[1] };
        let listen = format!("127.0.0.1:{port}");
        let cache = self.d.path(&format!("edge-{region}"));
        let mut args = vec![
            "--origin",
            &self.server.url,
            "--listen",
            &listen,
            "--cache-dir",
            cache.to_str().unwrap(),
            "--region",
            region,
        ];
        args.extend_from_slice(extra);
        self.d.edge(&args)
    }

    /// Uploads `bytes` as `bucket/key`; returns the number of distinct chunks.
    fn put(&self, bucket: &str, key: &str, bytes: &[u8]) -> usize {
        let src = self.d.path(&format!("src-{key}"));
        std::fs::write(&src, bytes).unwrap();
        self.d.ok(&["put", src.to_str().unwrap(), &format!("{bucket}/{key}")]);
        self.client().block_manifest(bucket, key).0.len()
    }

    fn client(&self) -> Client {
        Client::new(&self.server.url, Some(self.token.clone())).unwrap()
    }

    /// `nuage get BUCKET/KEY` with `--region`, compared with `expected`.
    fn get(&self, region: &str, bucket: &str, key: &str, expected: &[u8]) {
        let dest = self.d.path(&format!("got-{region}-{key}"));
        let _ = std::fs::remove_file(&dest);
        self.d.ok(&["--region", region, "get", &format!("{bucket}/{key}"), dest.to_str().unwrap()]);
        assert!(std::fs::read(&dest).unwrap() == expected, "{bucket}/{key} via {region} differs");
    }
}

trait Blocking {
    /// The chunk grants of the current version of `bucket/key`, by address.
    fn block_manifest(&self, bucket: &str, key: &str) -> (Vec<(Address, String)>, i64);
}

impl Blocking for Client {
    fn block_manifest(&self, bucket: &str, key: &str) -> (Vec<(Address, String)>, i64) {
        // On a thread of its own: callable from inside a runtime too.
        let view = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(self.manifest(bucket, key, None)).unwrap()
                })
                .join()
                .unwrap()
        });
        let grants = view.grants.iter().map(|(a, g)| (a.parse().unwrap(), g.clone())).collect();
        (grants, view.version)
    }
}

fn sum(url: &str, names: &[&str]) -> u64 {
    names.iter().map(|n| metric(url, n)).sum()
}

const ORIGIN_FETCHES: &str = "nuage_edge_fetches_total{source=\"origin\"}";
const PROVIDER_FETCHES: &str = "nuage_edge_fetches_total{source=\"providers\"}";
const MEMORY_HITS: &str = "nuage_edge_hits_total{tier=\"memory\"}";
const DISK_HITS: &str = "nuage_edge_hits_total{tier=\"disk\"}";
const SERVER_SENT: &str = "nuage_object_bytes_sent_total";

/// Polls `/metrics` until `name` reaches `value` (a disk write finishes after the answer).
fn wait_for(url: &str, name: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(url, name) < value {
        assert!(Instant::now() < deadline, "{name} at {url} stayed below {value}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM and waits for the edge to finish its disk writes and exit.
fn stop(mut edge: Server) {
    let status = std::process::Command::new("kill").arg("-TERM").arg(edge.child.id().to_string()).status();
    assert!(status.unwrap().success());
    assert!(edge.child.wait().unwrap().success(), "the edge exits cleanly on SIGTERM");
}

#[test]
fn downloads_go_through_the_edge_of_the_region_and_come_back_from_its_cache() {
    let s = setup();
    let eu = s.edge("eu", &[]);
    let us = s.edge("us", &[]);
    s.d.ok(&["bucket", "create", "docs"]);
    let big = data(6_000_000, 7);
    let chunks = s.put("docs", "big.bin", &big) as u64;
    assert!(chunks >= 3, "{chunks} chunks");

    // First download, region eu: every chunk is a miss at the eu edge, fetched once.
    s.get("eu", "docs", "big.bin", &big);
    assert_eq!(metric(&eu.url, ORIGIN_FETCHES), chunks);
    assert_eq!(metric(&us.url, ORIGIN_FETCHES), 0, "the other region's edge is not used");

    // Again: all from the edge's memory; the edge fetched nothing, the server sent no chunk.
    let sent = metric(&s.server.url, SERVER_SENT);
    s.get("eu", "docs", "big.bin", &big);
    assert_eq!(metric(&eu.url, ORIGIN_FETCHES), chunks);
    assert_eq!(metric(&eu.url, MEMORY_HITS), chunks);
    assert_eq!(metric(&s.server.url, SERVER_SENT), sent, "no chunk came from the server");

    // Region us reads through the us edge.
    s.get("us", "docs", "big.bin", &big);
    assert_eq!(metric(&us.url, ORIGIN_FETCHES), chunks);

    // Restart the eu edge: its disk tier serves every chunk, with no fetch.
    wait_for(&eu.url, "nuage_edge_cache_entries{tier=\"disk\"}", chunks);
    stop(eu);
    let sent = metric(&s.server.url, SERVER_SENT);
    let eu = s.edge("eu", &[]);
    assert_eq!(metric(&eu.url, "nuage_edge_cache_entries{tier=\"disk\"}"), chunks);
    s.get("eu", "docs", "big.bin", &big);
    assert_eq!(metric(&eu.url, DISK_HITS), chunks);
    assert_eq!(metric(&eu.url, ORIGIN_FETCHES), 0);
    assert_eq!(metric(&s.server.url, SERVER_SENT), sent);
    println!("{chunks} chunks: served again from memory, then from disk after a restart, 0 fetches");

    // Share links read through the edges too: a normal bucket's (all hits now)...
    let url =
        s.d.ok(&["share", "docs/big.bin"]).lines().find(|l| l.contains("/s/")).unwrap().trim().to_owned();
    let (hits, fetches) = (metric(&eu.url, MEMORY_HITS), metric(&eu.url, ORIGIN_FETCHES));
    let dest = s.d.path("shared-big.bin");
    s.d.ok(&["--region", "eu", "get", &url, dest.to_str().unwrap()]);
    assert!(std::fs::read(&dest).unwrap() == big);
    assert_eq!(metric(&eu.url, MEMORY_HITS) - hits, chunks);
    assert_eq!(metric(&eu.url, ORIGIN_FETCHES), fetches);
    // ...and an end-to-end bucket's.
    s.d.ok(&["key", "init"]);
    s.d.ok(&["bucket", "create", "vault", "--e2e"]);
    let secret = data(2_500_000, 8);
    let e2e_chunks = s.put("vault", "secret.bin", &secret) as u64;
    let url =
        s.d.ok(&["share", "vault/secret.bin"]).lines().find(|l| l.contains("/s/")).unwrap().trim().to_owned();
    let before = metric(&eu.url, ORIGIN_FETCHES) + metric(&eu.url, MEMORY_HITS);
    let dest = s.d.path("shared.bin");
    s.d.ok(&["--region", "eu", "get", &url, dest.to_str().unwrap()]);
    assert!(std::fs::read(&dest).unwrap() == secret);
    assert_eq!(metric(&eu.url, ORIGIN_FETCHES) + metric(&eu.url, MEMORY_HITS) - before, e2e_chunks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_survives_its_edge_dying_midway() {
    let s = setup();
    let eu = s.edge("eu", &[]);
    let us = s.edge("us", &[]);
    s.d.ok(&["bucket", "create", "docs"]);
    let big = data(24_000_000, 9);
    s.put("docs", "big.bin", &big);
    let client = s.client().with_region(Some("eu".into()));
    // Kill -9 the eu edge as soon as the first bytes are written.
    let pid = eu.child.id().to_string();
    let killed = Arc::new(AtomicBool::new(false));
    let k = killed.clone();
    let progress: Progress = Arc::new(move |done| {
        if done > 0 && !k.swap(true, Ordering::SeqCst) {
            assert!(std::process::Command::new("kill").arg("-KILL").arg(&pid).status().unwrap().success());
        }
        true
    });
    let dest = s.d.path("got.bin");
    let started = Instant::now();
    client.get_through_manifest("docs", "big.bin", None, None, &dest, progress).await.unwrap();
    assert!(killed.load(Ordering::SeqCst), "the edge was killed during the download");
    assert!(std::fs::read(&dest).unwrap() == big, "the download is identical");
    let from_us = metric(&us.url, "nuage_edge_sent_bytes_total");
    assert!(from_us > 0, "the rest came through the us edge");
    println!("eu edge killed mid-download; {from_us} bytes came through us; {:?} in all", started.elapsed());
    drop(eu);
}

/// The head of one HTTP request (request line and headers), or `None` at end of stream.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn respond(stream: &mut tokio::net::TcpStream, status: u16, body: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_that_stops_answering_costs_one_timeout() {
    let s = setup();
    // On the eu port: an "edge" whose health probe is fine and which never answers a chunk.
    let stalled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", s.ports[0])).await.unwrap();
    let counter = stalled.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                while let Some(head) = read_head(&mut stream).await {
                    if head.starts_with("GET /healthz") {
                        respond(&mut stream, 200, b"{}").await;
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    // Hold the connection, never answer.
                    std::future::pending::<()>().await;
                }
            });
        }
    });
    let us = s.edge("us", &[]);
    s.d.ok(&["bucket", "create", "docs"]);
    let big = data(20_000_000, 10);
    let chunks = s.put("docs", "big.bin", &big);
    let timeout = Duration::from_secs(2);
    let client = s.client().with_region(Some("eu".into())).with_edge_read_timeout(timeout);
    let dest = s.d.path("got.bin");
    let started = Instant::now();
    client
        .get_through_manifest("docs", "big.bin", None, None, &dest, nuage_client::api::no_progress())
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(std::fs::read(&dest).unwrap() == big);
    let asked = stalled.load(Ordering::SeqCst);
    assert!(asked >= 1, "the stalled edge was tried first (its region)");
    assert!(
        asked <= nuage_client::share::FETCHES_IN_FLIGHT,
        "{asked} chunk requests went to the stalled edge: only those in flight when it stalled"
    );
    assert_eq!(metric(&us.url, ORIGIN_FETCHES) as usize, chunks, "every chunk came through the us edge");
    assert!(took < 2 * timeout + Duration::from_secs(2), "{took:?}: more than one timeout ({timeout:?})");
    println!(
        "stalled eu edge: {asked} requests waited {timeout:?} once; {chunks} chunks through us; {took:?} in all"
    );
}

#[test]
fn a_corrupted_cache_file_is_never_served() {
    let s = setup();
    // No memory tier: every hit is a disk read.
    let eu = s.edge("eu", &["--memory", "0"]);
    s.d.ok(&["bucket", "create", "docs"]);
    let big = data(4_000_000, 11);
    let chunks = s.put("docs", "big.bin", &big) as u64;
    s.get("eu", "docs", "big.bin", &big);
    wait_for(&eu.url, "nuage_edge_cache_entries{tier=\"disk\"}", chunks);
    // Flip one byte in the middle of every cached file.
    let mut flipped = 0;
    for dir in std::fs::read_dir(s.d.path("edge-eu/chunks")).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            let mut raw = std::fs::read(&path).unwrap();
            let mid = raw.len() / 2;
            raw[mid] ^= 0x40;
            std::fs::write(&path, raw).unwrap();
            flipped += 1;
        }
    }
    assert_eq!(flipped, chunks);
    s.get("eu", "docs", "big.bin", &big);
    assert_eq!(metric(&eu.url, "nuage_edge_verification_failures_total{source=\"disk\"}"), chunks);
    assert_eq!(metric(&eu.url, ORIGIN_FETCHES), 2 * chunks, "each bad entry was fetched again");
    assert_eq!(metric(&eu.url, DISK_HITS), 0, "no bad entry was served");
    // The fresh copies replace them on disk and are served from there.
    wait_for(&eu.url, "nuage_edge_cache_entries{tier=\"disk\"}", chunks);
    s.get("eu", "docs", "big.bin", &big);
    assert_eq!(metric(&eu.url, DISK_HITS), chunks);
}

async fn status_and_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (status, body["error"]["code"].as_str().unwrap_or("").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_checks_every_grant_and_learns_rotated_keys() {
    let s = setup();
    // From a TOML file: keys refreshed every second.
    let toml = format!(
        "origin = {:?}\nlisten = \"127.0.0.1:{}\"\ncache_dir = {:?}\nkeys_refresh_secs = 1\n",
        s.server.url,
        s.ports[0],
        s.d.path("edge-eu"),
    );
    std::fs::write(s.d.path("edge.toml"), toml).unwrap();
    let eu = s.d.edge(&["--config", s.d.path("edge.toml").to_str().unwrap()]);
    s.d.ok(&["bucket", "create", "docs"]);
    let big = data(3_000_000, 12);
    s.put("docs", "big.bin", &big);
    let (grants, _) = s.client().block_manifest("docs", "big.bin");
    let (a, grant_a) = grants[0].clone();
    let (b, _) = grants[1].clone();
    let http = reqwest::Client::new();
    let chunk = |addr: &Address| format!("{}/chunks/{}", eu.url, addr.to_hex());

    let ok = http.get(chunk(&a)).header("x-nuage-grant", &grant_a).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["cache-control"], "private, max-age=31536000, immutable");
    let body = ok.bytes().await.unwrap();
    a.verify(&body).unwrap();
    let part = http
        .get(format!("{}?grant={grant_a}", chunk(&a)))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 10-19/{}", body.len()));
    assert_eq!(part.bytes().await.unwrap(), body.slice(10..20));
    let head = http.head(chunk(&a)).header("x-nuage-grant", &grant_a).send().await.unwrap();
    assert_eq!(head.headers()["content-length"], body.len().to_string());

    // Grants made with the server's own key, read from its database.
    let meta =
        nuage_meta::Meta::open(&format!("sqlite:{}", s.d.path("data/meta.db").display())).await.unwrap();
    let key = meta.grant_keys().await.unwrap().into_iter().find(|k| k.retired_at.is_none()).unwrap();
    let signer = GrantSigner::from_seed(key.id as u32, &key.seed);
    let now = nuage_meta::now_ms();
    let grant =
        |op, address, expires_at| Grant { op, key_id: 0, address, scope: 0, max_size: 1 << 23, expires_at };
    let forger = GrantSigner::from_seed(key.id as u32, &rand::random());
    for (what, text, address, code) in [
        ("for another address", grant_a.clone(), b, "grant_wrong_address"),
        ("expired", signer.sign(&grant(Operation::GetChunk, a, now - 1)), a, "grant_expired"),
        ("forged", forger.sign(&grant(Operation::GetChunk, a, now + 60_000)), a, "grant_forged"),
        ("for a put", signer.sign(&grant(Operation::PutChunk, a, now + 60_000)), a, "grant_wrong_operation"),
        ("garbage", "g1.AAAA".to_owned(), a, "grant_forged"),
    ] {
        let r = http.get(chunk(&address)).header("x-nuage-grant", text).send().await.unwrap();
        assert_eq!(status_and_code(r).await, (403, code.to_owned()), "a grant {what}");
    }
    let r = http.get(chunk(&a)).send().await.unwrap();
    assert_eq!(status_and_code(r).await, (403, "grant_missing".to_owned()));
    assert_eq!(metric(&eu.url, "nuage_edge_grants_refused_total"), 6);

    // Rotation: a new key in the database, the server restarted on the same port; the edge
    // learns the key on its own and accepts grants signed with it.
    let seed: [u8; 32] = rand::random();
    let public = GrantSigner::from_seed(0, &seed).public_key();
    let new_key = meta.rotate_grant_key(seed, public).await.unwrap();
    meta.close().await;
    let listen = s.server.url.trim_start_matches("http://").to_owned();
    let Setup { d, server, ports, .. } = s;
    drop(server);
    let _server =
        d.serve_with(&["--listen", &listen, "--edge", &format!("http://127.0.0.1:{}=eu", ports[0])]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health: serde_json::Value =
            http.get(format!("{}/healthz", eu.url)).send().await.unwrap().json().await.unwrap();
        if health["grant_keys"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the edge never loaded the new key: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rotated =
        GrantSigner::from_seed(new_key.id as u32, &seed).sign(&grant(Operation::GetChunk, b, now + 60_000));
    let r = http.get(chunk(&b)).header("x-nuage-grant", rotated).send().await.unwrap();
    assert_eq!(r.status(), 200);
    b.verify(&r.bytes().await.unwrap()).unwrap();
    // The old key's grants still verify (in flight at the rotation).
    let r = http.get(chunk(&a)).header("x-nuage-grant", &grant_a).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// The thousand requests below come from one address, over as many connections: more than
/// an edge lets one client hold by default.
const ONE_CLIENT_MANY_CONNECTIONS: &str = "[http]\nconnections_per_client = 2000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_make_one_provider_fetch() {
    let s = setup();
    // This edge reads the server's chunk folder directly, read-only.
    let toml = format!(
        "origin = {:?}\nlisten = \"127.0.0.1:{}\"\ncache_dir = {:?}\n{ONE_CLIENT_MANY_CONNECTIONS}\n[[providers]]\nname = \"local\"\nscheme = \"fs\"\nroot = {:?}\n",
        s.server.url,
        s.ports[0],
        s.d.path("edge-eu"),
        s.d.path("data/chunks"),
    );
    std::fs::write(s.d.path("edge.toml"), toml).unwrap();
    let eu = s.d.edge(&["--config", s.d.path("edge.toml").to_str().unwrap()]);
    s.d.ok(&["bucket", "create", "docs"]);
    let one = data(200_000, 13);
    s.put("docs", "one.bin", &one);
    let (grants, _) = s.client().block_manifest("docs", "one.bin");
    assert_eq!(grants.len(), 1);
    let (address, grant) = grants[0].clone();
    let url = format!("{}/chunks/{}", eu.url, address.to_hex());
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let requests = (0..1000).map(|_| {
        let (http, url, grant) = (http.clone(), url.clone(), grant.clone());
        tokio::spawn(async move {
            let r = http.get(url).header("x-nuage-grant", grant).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        })
    });
    let bodies = futures::future::join_all(requests).await;
    for b in &bodies {
        address.verify(b.as_ref().unwrap()).unwrap();
    }
    assert_eq!(metric(&eu.url, PROVIDER_FETCHES), 1, "one fetch from the providers");
    assert_eq!(metric(&eu.url, ORIGIN_FETCHES), 0);
    let (misses, waits) =
        (metric(&eu.url, "nuage_edge_misses_total"), metric(&eu.url, "nuage_edge_coalesced_waits_total"));
    assert_eq!(waits, misses - 1, "every other miss waited on the one fetch");
    assert_eq!(sum(&eu.url, &[MEMORY_HITS, "nuage_edge_misses_total"]), 1000);
    println!(
        "1000 concurrent requests: {misses} misses ({waits} waited on the one fetch), {} memory hits",
        1000 - misses
    );
    // A share link's grants never read the providers: only the origin can tell whether the
    // link was revoked.
    let other = data(150_000, 15);
    s.put("docs", "other.bin", &other);
    let link =
        s.d.ok(&["share", "docs/other.bin"]).lines().find(|l| l.contains("/s/")).unwrap().trim().to_owned();
    let dest = s.d.path("other.bin");
    s.d.ok(&["--region", "eu", "get", &link, dest.to_str().unwrap()]);
    assert!(std::fs::read(&dest).unwrap() == other);
    assert_eq!(metric(&eu.url, PROVIDER_FETCHES), 1, "no provider read for a share's chunk");
    assert_eq!(metric(&eu.url, ORIGIN_FETCHES), 1, "the share's chunk came from the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_waiting_misses_share_one_origin_fetch() {
    let s = setup();
    // The edge's origin is a stub in front of the server: it passes the grant keys on, and
    // holds the one chunk fetch until every request has reached the edge.
    let release = Arc::new(tokio::sync::Notify::new());
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stub = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stub_url = format!("http://{}", stub.local_addr().unwrap());
    let (server, r, f) = (s.server.url.clone(), release.clone(), fetches.clone());
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            let (mut stream, _) = stub.accept().await.unwrap();
            let (server, release, fetches, http) = (server.clone(), r.clone(), f.clone(), http.clone());
            tokio::spawn(async move {
                let Some(head) = read_head(&mut stream).await else { return };
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let mut request = http.get(format!("{server}{path}"));
                if path.starts_with("/v1/chunks/") {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    let grant = head
                        .lines()
                        .find_map(|l| l.strip_prefix("x-nuage-grant: "))
                        .unwrap_or("")
                        .trim()
                        .to_owned();
                    request = request.header("x-nuage-grant", grant);
                }
                let answer = request.send().await.unwrap();
                let status = answer.status().as_u16();
                respond(&mut stream, status, &answer.bytes().await.unwrap()).await;
            });
        }
    });
    let listen = format!("127.0.0.1:{}", s.ports[0]);
    let cache = s.d.path("edge-eu");
    std::fs::write(s.d.path("edge-stub.toml"), ONE_CLIENT_MANY_CONNECTIONS).unwrap();
    let config = s.d.path("edge-stub.toml");
    let eu = s.d.edge(&[
        "--config",
        config.to_str().unwrap(),
        "--origin",
        &stub_url,
        "--listen",
        &listen,
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    s.d.ok(&["bucket", "create", "docs"]);
    let one = data(300_000, 14);
    s.put("docs", "one.bin", &one);
    let (grants, _) = s.client().block_manifest("docs", "one.bin");
    let (address, grant) = grants[0].clone();
    let url = format!("{}/chunks/{}", eu.url, address.to_hex());
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let requests: Vec<_> = (0..1000)
        .map(|_| {
            let (http, url, grant) = (http.clone(), url.clone(), grant.clone());
            tokio::spawn(async move {
                let r = http.get(url).header("x-nuage-grant", grant).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap()
            })
        })
        .collect();
    // Every request is a miss waiting on the fetch the stub holds.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&eu.url, "nuage_edge_misses_total") < 1000 {
        assert!(Instant::now() < deadline, "the 1000 requests never all reached the edge");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    release.notify_one();
    for r in futures::future::join_all(requests).await {
        address.verify(&r.unwrap()).unwrap();
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "one fetch from the origin for 1000 waiting misses");
    assert_eq!(metric(&eu.url, "nuage_edge_coalesced_waits_total"), 999);
    assert_eq!(metric(&eu.url, ORIGIN_FETCHES), 1);
    println!("1000 requests waiting on one cold chunk: 1 origin fetch, 999 coalesced waits");
}
