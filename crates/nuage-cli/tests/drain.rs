//! Live migration end to end: the real `nuage serve` over two local folders and a third
//! provider, two copies of every chunk; the third is drained with `nuage admin provider
//! drain` while eight clients read and write, and not one request may fail. The third is a
//! folder in `cargo test`, and a private S3 server (s3s-fs) when the test servers are
//! configured, with the clients running for `NUAGE_TEST_DRAIN_SECS` (default 60) at least.

mod common;
#[path = "../../nuage-blob/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use nuage_blob::ProviderKind;
use tokio::sync::Mutex;

fn json(d: &Deployment, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&d.ok(&all)).unwrap()
}

/// The state of provider `name` and its placements, from `nuage admin provider ls`.
fn provider(d: &Deployment, name: &str) -> (String, i64) {
    let list = json(d, &["admin", "provider", "ls"]);
    let p = list.as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
    (p["state"].as_str().unwrap().to_owned(), p["placements"].as_i64().unwrap())
}

const WORKERS: &str = "[buckets]\nreplicas = 2\n[workers]\nscrub_every_secs = 0\nrepair_every_secs = 0\n\
                       gc_every_secs = 0\ngc_grace_secs = 0\nmigrate_bytes_per_sec = 8000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_drains_while_clients_read_and_write_and_no_request_fails() {
    // At 8 MB/s the drain lasts seconds, long enough for `admin status` to be seen moving.
    let d = Deployment::new("").with_folders(WORKERS, &["a", "b", "c"]);
    let c = d.path("c").join("ch");
    drain_under_load(d, Duration::ZERO, move || walk(&c)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_provider_drains_under_load_for_a_minute_and_no_request_fails() {
    let Some(s3) = support::private_s3("c") else { return };
    let ProviderKind::S3 { bucket, endpoint, region, access_key_id, secret_access_key, .. } =
        &s3.backend.config.kind
    else {
        unreachable!()
    };
    let c = format!(
        "\n[[providers]]\nname = \"c\"\nscheme = \"s3\"\nbucket = {bucket:?}\nendpoint = {endpoint:?}\n\
         region = {region:?}\naccess_key_id = {access_key_id:?}\nsecret_access_key = {:?}\ntimeout_secs = 5",
        secret_access_key.0
    );
    // Slowly, so that most of the minute of traffic runs while chunks move.
    let workers = WORKERS.replace("migrate_bytes_per_sec = 8000000", "migrate_bytes_per_sec = 1000000");
    let d = Deployment::new("").with_folders(&(workers + &c), &["a", "b"]);
    let secs = env("NUAGE_TEST_DRAIN_SECS").map_or(60, |v| v.parse().unwrap());
    // s3s-fs keeps one file per object: the bucket's objects are files under its folder.
    let objects = s3.data_dir().join("private").join("ch");
    drain_under_load(d, Duration::from_secs(secs), move || walk(&objects)).await;
}

/// Seeds `d` (providers a, b and c), drains c under load for `at_least` (or as long as the
/// drain takes), and checks the outcome; `left_on_c` counts the chunk objects on c.
async fn drain_under_load(d: Deployment, at_least: Duration, left_on_c: impl Fn() -> usize) {
    let created = json(&d, &["admin", "account", "create", "alice"]);
    let token = created["token"].as_str().unwrap().to_owned();
    let server = d.serve();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let url = |key: &str| format!("{}/v1/buckets/data/objects/{key}", server.url);
    let r = http.put(format!("{}/v1/buckets/data", server.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let mut known = BTreeMap::new();
    for i in 0..30u32 {
        let body = data(200_000 + 50_000 * i as usize, 700 + i);
        let r =
            http.put(url(&format!("seed/{i}"))).bearer_auth(&token).body(body.clone()).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 201);
        known.insert(format!("seed/{i}"), blake3::hash(&body));
    }
    let (_, on_c) = provider(&d, "c");
    assert!(on_c > 5, "c holds a share of the copies: {on_c}");

    let known = Arc::new(Mutex::new(known));
    let stop = Arc::new(AtomicBool::new(false));
    let draining = Arc::new(AtomicBool::new(false));
    let counters: Arc<[AtomicU64; 5]> = Arc::new(Default::default()); // reads, writes, failed, during drain
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut clients = Vec::new();
    for c in 0..8u32 {
        let (http, token, known, stop, draining, counters) =
            (http.clone(), token.clone(), known.clone(), stop.clone(), draining.clone(), counters.clone());
        let progress = progress.clone();
        let base = server.url.clone();
        clients.push(tokio::spawn(async move {
            let url = |key: &str| format!("{base}/v1/buckets/data/objects/{key}");
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let ok = if c < 4 {
                    let (key, hash) = {
                        let k = known.lock().await;
                        let (key, hash) = k.iter().nth((n as usize * 5 + c as usize) % k.len()).unwrap();
                        (key.clone(), *hash)
                    };
                    counters[0].fetch_add(1, Ordering::Relaxed);
                    match http.get(url(&key)).bearer_auth(&token).send().await {
                        Ok(r) if r.status().as_u16() == 200 => {
                            r.bytes().await.is_ok_and(|b| blake3::hash(&b) == hash)
                        }
                        _ => false,
                    }
                } else {
                    let key = format!("new/{c}/{n}");
                    let body = data(100_000 + (n as usize % 4) * 250_000, c * 1000 + n);
                    counters[1].fetch_add(1, Ordering::Relaxed);
                    let r = http.put(url(&key)).bearer_auth(&token).body(body.clone()).send().await;
                    let ok = r.is_ok_and(|r| r.status().as_u16() == 201);
                    if ok {
                        known.lock().await.insert(key, blake3::hash(&body));
                    }
                    ok
                };
                if !ok {
                    counters[2].fetch_add(1, Ordering::Relaxed);
                }
                if draining.load(Ordering::Relaxed) {
                    counters[if c < 4 { 3 } else { 4 }].fetch_add(1, Ordering::Relaxed);
                }
                progress.notify_waiters();
            }
        }));
    }
    until(&progress, || counters[1].load(Ordering::Relaxed) >= 8).await;
    let started = Instant::now();
    d.ok(&["admin", "provider", "drain", "c"]);
    draining.store(true, Ordering::Relaxed);
    // While it drains, `nuage admin status` shows the migrate worker's progress.
    let mut saw_progress = false;
    loop {
        let (state, _) = provider(&d, "c");
        if state == "drained" {
            break;
        }
        let status = json(&d, &["admin", "status"]);
        let migrate = status["workers"].as_array().unwrap().iter().find(|w| w["name"] == "migrate").cloned();
        saw_progress |=
            migrate.is_some_and(|w| w["current"]["progress"].is_number() || w["passes"].as_i64() > Some(0));
        assert!(started.elapsed() < Duration::from_secs(120), "the drain did not end: {status}");
        // The state is another process's (the server's, read through the CLI): polled, at a
        // pace that leaves the 2 cores to the server and the clients.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    // The load runs for `at_least` in all (the minute of traffic), a duration, not a
    // wait for something to happen.
    tokio::time::sleep(at_least.saturating_sub(took)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let [reads, writes, failed, reads_during, writes_during] =
        counters.each_ref().map(|c| c.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "no request failed ({reads} reads, {writes} writes)");
    assert!(reads_during > 0 && writes_during > 0, "traffic ran during the drain");
    assert!(saw_progress, "admin status showed the drain");

    // Nothing left on c: no placement, and (once the collector has taken the copies of
    // uploads that never committed, none here) no chunk file. Every chunk has its two
    // copies on a and b (repair finds nothing to add), and every copy verifies.
    assert_eq!(provider(&d, "c"), ("drained".to_owned(), 0));
    drop(server);
    let repair = json(&d, &["admin", "repair"]);
    assert_eq!(repair["found"], 0, "the drain itself kept two copies of every chunk: {repair}");
    json(&d, &["admin", "gc"]);
    let scrub = json(&d, &["admin", "scrub"]);
    assert_eq!(scrub["found"], 0, "{scrub}");
    let status = json(&d, &["admin", "status"]);
    let stored: i64 =
        status["placements"].as_array().unwrap().iter().map(|p| p["count"].as_i64().unwrap()).sum();
    assert_eq!(stored, 2 * scrub["chunks"].as_i64().unwrap(), "two copies of every chunk: {status}");
    assert_eq!(left_on_c(), 0, "no chunk object left on c");
    let server = d.serve();
    for (k, h) in known.lock().await.iter() {
        let r = http
            .get(format!("{}/v1/buckets/data/objects/{k}", server.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(blake3::hash(&r.bytes().await.unwrap()), *h, "{k}");
    }
    println!(
        "drain of c ({on_c} copies at the start) took {took:.1?}, clients ran {:.1?}: {reads} reads \
         ({reads_during} after the drain began), {writes} writes ({writes_during} after), 0 failed; repair then \
         wrote {} copies; {} chunks verified, 2 copies each, none on c",
        took.max(at_least),
        repair["found"],
        scrub["chunks"]
    );
}

/// Files under `dir` (0 if it does not exist).
fn walk(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() { walk(&e.path()) } else { 1 }
        })
        .sum()
}
