//! Provider outages end to end: the real `nuage serve` over a local folder, a private
//! s3s-fs and a private Azurite (servers of this test's own, so that it can kill them),
//! while clients read and write through it.
//!
//! These run when the test servers are configured (`scripts/test-servers.sh`), and fail
//! when `NUAGE_TEST_REQUIRE` names `s3` and `azblob` but they are not.

mod common;
#[path = "../../nuage-blob/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use nuage_blob::{ProviderConfig, ProviderKind};
use tokio::sync::Mutex;

/// `[[providers]]` for a provider of the test support.
fn provider_toml(c: &ProviderConfig) -> String {
    let head = format!("[[providers]]\nname = {:?}\ntimeout_secs = {}\n", c.name, c.timeout_secs);
    head + &match &c.kind {
        ProviderKind::Fs { root } => format!("scheme = \"fs\"\nroot = {root:?}\n"),
        ProviderKind::S3 { bucket, endpoint, access_key_id, secret_access_key, .. } => format!(
            "scheme = \"s3\"\nbucket = {bucket:?}\nendpoint = {endpoint:?}\nregion = {:?}\n\
             access_key_id = {access_key_id:?}\nsecret_access_key = {:?}\n",
            c.region.as_deref().unwrap_or("us-east-1"),
            secret_access_key.0
        ),
        ProviderKind::Azblob { container, endpoint, account_name, account_key, .. } => format!(
            "scheme = \"azblob\"\ncontainer = {container:?}\nendpoint = {endpoint:?}\n\
             account_name = {account_name:?}\naccount_key = {:?}\n",
            account_key.0
        ),
        ProviderKind::Memory => unreachable!("a server's provider is never in memory"),
    }
}

/// A deployment over `providers` (a local folder `local` first), with `replicas` copies and
/// the background workers off; the server started, an account and a bucket made.
struct Site {
    d: Deployment,
    server: Server,
    http: reqwest::Client,
    token: String,
}

impl Site {
    fn new(replicas: u32, providers: &[&ProviderConfig]) -> Site {
        let d = Deployment::new("");
        let local = ProviderConfig::new("local", ProviderKind::Fs { root: d.path("local") });
        let mut extra = format!(
            "[buckets]\nreplicas = {replicas}\n[workers]\nscrub_every_secs = 0\nrepair_every_secs = 0\ngc_every_secs = 0\n"
        );
        for p in std::iter::once(&local).chain(providers.iter().copied()) {
            extra += &provider_toml(p);
        }
        let config = std::fs::read_to_string(d.path("nuage.toml")).unwrap() + &extra;
        std::fs::write(d.path("nuage.toml"), config).unwrap();
        d.ok(&["admin", "init"]); // before the first serve: admin never makes a database itself
        let created: serde_json::Value =
            serde_json::from_str(&d.ok(&["--json", "admin", "account", "create", "alice"])).unwrap();
        let token = created["token"].as_str().unwrap().to_owned();
        let server = d.serve();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        Site { d, server, http, token }
    }

    fn url(&self, key: &str) -> String {
        format!("{}/v1/buckets/data/objects/{key}", self.server.url)
    }

    async fn bucket(&self) {
        let r = self.http.put(format!("{}/v1/buckets/data", self.server.url)).bearer_auth(&self.token);
        assert_eq!(r.send().await.unwrap().status().as_u16(), 201);
    }

    /// `PUT`: the status and, on failure, the error code.
    async fn put(&self, key: &str, body: Vec<u8>) -> (u16, String) {
        let r = self.http.put(self.url(key)).bearer_auth(&self.token).body(body).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        let code = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
        (status, code.unwrap_or_default())
    }

    /// `GET`: the status and the hash of the body.
    async fn get(&self, key: &str) -> (u16, blake3::Hash) {
        match self.http.get(self.url(key)).bearer_auth(&self.token).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.bytes().await {
                    Ok(b) => (status, blake3::hash(&b)),
                    Err(_) => (599, blake3::hash(b"")), // cut mid-body
                }
            }
            Err(_) => (599, blake3::hash(b"")),
        }
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.d.ok(&all)).unwrap()
    }

    /// Stored placements per provider, from `nuage admin status`.
    fn stored(&self) -> BTreeMap<String, i64> {
        let status = self.json(&["admin", "status"]);
        status["placements"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["state"] == "stored")
            .map(|p| (p["provider"].as_str().unwrap().to_owned(), p["count"].as_i64().unwrap()))
            .collect()
    }
}

/// The test servers, or `None` (after checking that `NUAGE_TEST_REQUIRE` does not ask
/// for them).
fn private_servers() -> Option<(support::PrivateServer, support::PrivateServer)> {
    let s3 = support::private_s3("s3");
    let azure = support::private_azblob("azure");
    match (s3, azure) {
        (Some(s), Some(a)) => Some((s, a)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_dies_under_load_reads_never_fail_writes_go_on_and_repair_restores_two_copies() {
    let Some((s3, mut azure)) = private_servers() else { return };
    let site = Arc::new(Site::new(2, &[&s3.backend.config, &azure.backend.config]));
    site.bucket().await;
    // Files of one to three chunks, on two of the three providers each.
    let files: BTreeMap<String, Vec<u8>> =
        (0..24u32).map(|i| (format!("seed/{i}"), data(100_000 + 60_000 * i as usize, 900 + i))).collect();
    let mut known: BTreeMap<String, blake3::Hash> = BTreeMap::new();
    for (k, v) in &files {
        assert_eq!(site.put(k, v.clone()).await.0, 201);
        known.insert(k.clone(), blake3::hash(v));
    }
    let before = site.stored();
    assert!(before.get("azure").copied().unwrap_or(0) > 0, "some copies are on Azure: {before:?}");

    // 8 clients: 4 read known files and check them, 4 write new ones; Azurite is killed
    // while they run.
    let known = Arc::new(Mutex::new(known));
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, failed_reads, writes, failed_writes) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut clients = Vec::new();
    for c in 0..8u32 {
        let (site, known, stop, progress) = (site.clone(), known.clone(), stop.clone(), progress.clone());
        let (reads, failed_reads, writes, failed_writes) =
            (reads.clone(), failed_reads.clone(), writes.clone(), failed_writes.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if c < 4 {
                    let (key, hash) = {
                        let k = known.lock().await;
                        let (key, hash) = k.iter().nth((n as usize * 7 + c as usize) % k.len()).unwrap();
                        (key.clone(), *hash)
                    };
                    let (status, got) = site.get(&key).await;
                    reads.fetch_add(1, Ordering::Relaxed);
                    if status != 200 || got != hash {
                        eprintln!("read {key}: {status}");
                        failed_reads.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    let key = format!("new/{c}/{n}");
                    let body = data(50_000 + (n as usize % 5) * 200_000, c * 10_000 + n);
                    let (status, code) = site.put(&key, body.clone()).await;
                    writes.fetch_add(1, Ordering::Relaxed);
                    if status == 201 {
                        known.lock().await.insert(key, blake3::hash(&body));
                    } else {
                        eprintln!("write {key}: {status} {code}");
                        failed_writes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                progress.notify_waiters();
            }
        }));
    }
    // Some traffic before, then the outage, then as much traffic again during it.
    until(&progress, || writes.load(Ordering::Relaxed) >= 8).await;
    azure.kill();
    let (r0, w0) = (reads.load(Ordering::Relaxed), writes.load(Ordering::Relaxed));
    until(&progress, || {
        writes.load(Ordering::Relaxed) >= w0 + 24 && reads.load(Ordering::Relaxed) >= r0 + 100
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (r, fr, w, fw) = (
        reads.load(Ordering::Relaxed),
        failed_reads.load(Ordering::Relaxed),
        writes.load(Ordering::Relaxed),
        failed_writes.load(Ordering::Relaxed),
    );
    let (r_out, w_out) = (r - r0, w - w0);
    assert_eq!(fr, 0, "no read failed ({r} reads, {r_out} during the outage)");
    assert_eq!(fw, 0, "no write failed ({w} writes, {w_out} during the outage)");

    // Azurite comes back, empty (the harder case: a restart that kept its data would leave
    // nothing to repair). Scrub finds every copy it held missing; repair puts them back.
    azure.restart_empty();
    let scrub = site.json(&["admin", "scrub"]);
    let lost = scrub["found"].as_u64().unwrap();
    let on_azure = site.stored().get("azure").copied().unwrap_or(0) as u64 + lost;
    assert!(lost > 0 && lost == on_azure, "scrub found the {lost} copies Azure lost: {scrub}");
    let repair = site.json(&["admin", "repair"]);
    assert_eq!(repair["found"].as_u64(), Some(lost), "{repair}");
    let again = site.json(&["admin", "scrub"]);
    assert_eq!(again["found"], 0, "{again}");
    let stored: i64 = site.stored().values().sum();
    let chunks = again["chunks"].as_i64().unwrap();
    assert_eq!(stored, 2 * chunks, "every chunk has two good copies again");
    // And everything reads back.
    for (k, h) in known.lock().await.iter() {
        assert_eq!(site.get(k).await, (200, *h), "{k}");
    }
    println!(
        "outage: {r} reads ({r_out} with Azure down), {fr} failed; {w} writes ({w_out} with Azure down), {fw} \
         failed; Azure came back empty: scrub found {lost} lost copies, repair wrote {}, then every one of \
         {chunks} chunks had 2 copies",
        repair["found"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_providers_and_quorum_two_writes_fail_fast_and_leave_nothing() {
    let Some((_s3, mut azure)) = private_servers() else { return };
    let site = Site::new(2, &[&azure.backend.config]);
    site.bucket().await;
    let kept = data(300_000, 1);
    assert_eq!(site.put("kept", kept.clone()).await.0, 201);
    azure.kill();
    // The first write finds Azure gone (its time limit, 5 s, at most); the ones after it
    // are refused at once, while Azure counts as down.
    let mut took = Vec::new();
    for i in 0..4 {
        let started = Instant::now();
        let (status, code) = site.put(&format!("lost/{i}"), data(200_000, 10 + i)).await;
        took.push(started.elapsed());
        assert_eq!((status, code.as_str()), (503, "storage_unavailable"), "write {i}");
    }
    assert!(took[0] < Duration::from_secs(20), "the first refusal took {:?}", took[0]);
    for t in &took[1..] {
        assert!(*t < Duration::from_secs(2), "a refusal while Azure is down took {t:?}");
    }
    // Nothing half-written is visible, and what was stored before still reads.
    for i in 0..4 {
        assert_eq!(site.get(&format!("lost/{i}")).await.0, 404);
        let v = site.http.get(format!("{}/v1/buckets/data/versions/lost/{i}", site.server.url));
        let listed: serde_json::Value =
            v.bearer_auth(&site.token).send().await.unwrap().json().await.unwrap();
        assert_eq!(listed["versions"].as_array().map_or(0, Vec::len), 0, "no version of lost/{i}");
    }
    assert_eq!(site.get("kept").await, (200, blake3::hash(&kept)));
    println!("quorum 2 of 2 with Azure down: refused in {took:?}; nothing visible; the old file reads");
}
