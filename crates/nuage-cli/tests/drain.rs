//! Live migration end to end: the real `nuage serve` over two local folders and a third
//! provider, two copies of every chunk; while eight clients read and write, a fourth (a
//! folder) is added with `nuage admin provider add`, the third is drained with `nuage admin
//! provider drain` and then removed with `nuage admin provider remove`, and not one request
//! may fail. The third is a folder in `cargo test`, and a private S3 server (s3s-fs) when
//! the test servers are configured, with the clients running for `NUAGE_TEST_DRAIN_SECS`
//! (default 60) at least. Then what `add` and `remove` refuse, and that they change nothing
//! when they do.

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
    let ProviderKind::S3 { bucket, endpoint, access_key_id, secret_access_key, .. } = &s3.backend.config.kind
    else {
        unreachable!()
    };
    let region = s3.backend.config.region.as_deref().unwrap_or("us-east-1");
    let c = format!(
        "\n[[providers]]\nname = \"c\"\nscheme = \"s3\"\nbucket = {bucket:?}\nendpoint = {endpoint:?}\n\
         region = {region:?}\naccess_key_id = {access_key_id:?}\nsecret_access_key = {:?}\ntimeout_secs = 5",
        secret_access_key.0
    );
    // Slowly, so that most of the minute of traffic runs while chunks move.
    let workers = WORKERS.replace("migrate_bytes_per_sec = 8000000", "migrate_bytes_per_sec = 2000000");
    let d = Deployment::new("").with_folders(&(workers + &c), &["a", "b"]);
    let secs = env("NUAGE_TEST_DRAIN_SECS").map_or(60, |v| v.parse().unwrap());
    // s3s-fs keeps one file per object: the bucket's objects are files under its folder.
    let objects = s3.data_dir().join("private").join("ch");
    drain_under_load(d, Duration::from_secs(secs), move || walk(&objects)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_are_added_checked_and_removed_only_when_empty() {
    let d = Deployment::new("").with_folders(WORKERS, &["a", "b", "c"]);
    d.ok(&["admin", "init"]); // before the first serve: admin never makes a database itself
    let token = json(&d, &["admin", "account", "create", "alice"])["token"].as_str().unwrap().to_owned();
    let server = d.serve();
    let http = reqwest::Client::new();
    let r = http.put(format!("{}/v1/buckets/data", server.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let put = |i: u32| {
        let (http, token) = (http.clone(), token.clone());
        let url = format!("{}/v1/buckets/data/objects/k{i}", server.url);
        async move {
            let r = http.put(url).bearer_auth(token).body(data(300_000, i)).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 201);
        }
    };
    for i in 0..6 {
        put(i).await;
    }
    let fails = |args: &[&str], stdin: &str, expected: &str| {
        let out = d.run(args, stdin);
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success() && said.contains(expected), "{args:?}: {said}");
    };
    let names = || -> Vec<String> {
        let ls = json(&d, &["admin", "provider", "ls"]);
        ls.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect()
    };

    // Refused, with nothing recorded: a memory provider, a name of the configuration, an S3
    // server that does not answer, settings that do not parse.
    fails(&["admin", "provider", "add", "-"], "name = \"m\"\nscheme = \"memory\"\n", "memory provider");
    let a = format!("name = \"a\"\nscheme = \"fs\"\nroot = {:?}\n", d.path("elsewhere"));
    fails(&["admin", "provider", "add", "-"], &a, "in the configuration file already");
    let dead = format!(
        "name = \"s3\"\nscheme = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:{}\"\n\
         access_key_id = \"x\"\nsecret_access_key = \"y\"\ntimeout_secs = 1\n",
        free_port()
    );
    fails(&["admin", "provider", "add", "-"], &dead, "opening provider s3");
    fails(
        &["admin", "provider", "add", "-"],
        "name = \"x\"\nscheme = \"fs\"\nbucket = \"typo\"\n",
        "provider settings",
    );
    assert_eq!(names(), ["a", "b", "c"]);

    // Added: the running server opens it (its /healthz lists it) and places chunks there.
    add_folder(&d, "d");
    fails(&["admin", "provider", "add", d.path("d.toml").to_str().unwrap()], "", "exists already");
    poll("d in the server's providers", async || healthz(&server).await.contains(&"d".to_owned())).await;
    for i in 6..20 {
        put(i).await;
    }
    assert!(provider(&d, "d").1 > 0, "new chunks go to d too");

    // Removed only drained, and only empty.
    fails(&["admin", "provider", "remove", "c"], "", "drain it first");
    d.ok(&["admin", "provider", "drain", "c"]);
    poll("c drained", async || provider(&d, "c").0 == "drained").await;
    // A chunk object that no placement records (as an upload that never committed leaves).
    let a_file = first_file(&d.path("a").join("ch")).expect("a chunk file on a");
    let stray = d.path("c").join(a_file.strip_prefix(d.path("a")).unwrap());
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::copy(&a_file, &stray).unwrap();
    fails(&["admin", "provider", "remove", "c"], "", "still holds 1 chunk objects");
    assert_eq!(provider(&d, "c"), ("drained".to_owned(), 0), "a refused removal changes nothing");
    std::fs::remove_file(&stray).unwrap();
    d.ok(&["admin", "provider", "remove", "c"]);
    assert_eq!(names(), ["a", "b", "d"]);
    poll("c out of the server's providers", async || !healthz(&server).await.contains(&"c".to_owned())).await;
    fails(&["admin", "provider", "drain", "c"], "", "no provider c");
    for i in 20..26 {
        put(i).await;
    }

    // A restart: d comes from the database, c (still in the configuration) is left out, and
    // every object reads back.
    drop(server);
    let server = d.serve();
    assert_eq!(healthz(&server).await, ["a", "b", "d"]);
    reads_back(&http, &server, &token, 0..26).await;
    let scrub = json(&d, &["admin", "scrub"]);
    assert_eq!(scrub["found"], 0, "{scrub}");

    // A provider added at run time that does not open (its folder replaced by a file) keeps
    // no server from starting: it serves with the others, and every object still reads.
    add_folder(&d, "e");
    poll("e in the server's providers", async || healthz(&server).await.contains(&"e".to_owned())).await;
    // Each chunk's two copies go to two of the four providers by its own ranking: a chunk
    // misses e half the time, so objects are put until one reaches it (six were not always
    // enough; forty miss with a chance of 2^-40).
    let mut end = 26;
    while end < 26 + 40 && (end < 32 || provider(&d, "e").1 == 0) {
        let url = format!("{}/v1/buckets/data/objects/k{end}", server.url);
        let r = http.put(url).bearer_auth(&token).body(data(300_000, end)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 201);
        end += 1;
    }
    assert!(provider(&d, "e").1 > 0, "new chunks go to e too");
    drop(server);
    std::fs::rename(d.path("e"), d.path("e.away")).unwrap();
    std::fs::write(d.path("e"), b"not a folder").unwrap();
    let server = d.serve();
    assert_eq!(healthz(&server).await, ["a", "b", "d"]);
    reads_back(&http, &server, &token, 0..end).await;
}

/// Objects `k{i}` for `i` in `keys` read back as they were written.
async fn reads_back(http: &reqwest::Client, server: &Server, token: &str, keys: std::ops::Range<u32>) {
    for i in keys {
        let url = format!("{}/v1/buckets/data/objects/k{i}", server.url);
        let r = http.get(url).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.bytes().await.unwrap(), data(300_000, i), "k{i}");
    }
}

/// The names of the providers `server` uses, from its `/healthz`.
async fn healthz(server: &Server) -> Vec<String> {
    let body: serde_json::Value =
        reqwest::get(format!("{}/healthz", server.url)).await.unwrap().json().await.unwrap();
    body["providers"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect()
}

/// The first file under `dir`, depth first in name order.
fn first_file(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.map(|e| e.unwrap().path()).collect();
    entries.sort();
    entries.into_iter().find_map(|e| if e.is_dir() { first_file(&e) } else { Some(e) })
}

/// Seeds `d` (providers a, b and c), drains c under load for `at_least` (or as long as the
/// drain takes), and checks the outcome; `left_on_c` counts the chunk objects on c.
async fn drain_under_load(d: Deployment, at_least: Duration, left_on_c: impl Fn() -> usize) {
    d.ok(&["admin", "init"]); // before the first serve: admin never makes a database itself
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
    // A folder added while the server runs takes new chunks within seconds.
    add_folder(&d, "d");
    poll("a chunk placed on d", async || provider(&d, "d").1 > 0).await;
    let refused = d.run(&["admin", "provider", "remove", "c"], "");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("drain it first"), "an active provider stays: {said}");
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
        assert!(started.elapsed() < Duration::from_secs(180), "the drain did not end: {status}");
        // The state is another process's (the server's, read through the CLI): polled, at a
        // pace that leaves the 2 cores to the server and the clients.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    // Drained, and empty: taken out while the clients go on, once the uploads that began
    // before the drain ended (and might have written to c) are over.
    let drained = Instant::now();
    poll("c removed", async || {
        let out = d.run(&["admin", "provider", "remove", "c"], "");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() || said.contains("may still commit chunks there"), "{said}");
        out.status.success()
    })
    .await;
    let removed_after = drained.elapsed();
    let ls = json(&d, &["admin", "provider", "ls"]);
    assert!(ls.as_array().unwrap().iter().all(|p| p["name"] != "c"), "{ls}");
    // The load runs for `at_least` in all (the minute of traffic), a duration, not a
    // wait for something to happen.
    tokio::time::sleep(at_least.saturating_sub(started.elapsed())).await;
    let ran = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let [reads, writes, failed, reads_during, writes_during] =
        counters.each_ref().map(|c| c.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "no request failed ({reads} reads, {writes} writes)");
    assert!(reads_during > 0 && writes_during > 0, "traffic ran during the drain");
    assert!(saw_progress, "admin status showed the drain");

    // Nothing left on c: no placement (the removal checked it), no chunk file. Every chunk
    // has its two copies on a, b and d (repair finds nothing to add), and every copy
    // verifies. The configuration still names c: the workers run without it.
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
    // A restart opens d from the database and leaves c out.
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
        "drain of c ({on_c} copies at the start) took {took:.1?}, c removed {removed_after:.1?} after, clients \
         ran {ran:.1?} from the drain's start: {reads} reads ({reads_during} after the drain began), {writes} writes \
         ({writes_during} after), 0 failed; repair then wrote {} copies; {} chunks verified, 2 copies each, none on c",
        repair["found"], scrub["chunks"]
    );
}

/// Adds a folder provider `name` (in a folder of that name) with `nuage admin provider add`.
fn add_folder(d: &Deployment, name: &str) {
    let settings = d.path(&format!("{name}.toml"));
    std::fs::write(&settings, format!("name = {name:?}\nscheme = \"fs\"\nroot = {:?}\n", d.path(name)))
        .unwrap();
    d.ok(&["admin", "provider", "add", settings.to_str().unwrap()]);
}

/// Waits until `done()` holds, for what another process (the server) does: checked every
/// 200 ms, a pace that leaves the 2 cores to the server and its clients; fails after two
/// minutes.
async fn poll(what: &str, done: impl AsyncFn() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(120), "never seen: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

/// `nuage admin pace` changes a worker's pace for the running server (which reads it every
/// two seconds, and shows it at `/metrics`), `default` brings the configured one back, and
/// bad input is refused with nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paces_set_at_run_time_reach_the_running_server() {
    let d = Deployment::new("").with_folders(WORKERS, &["a", "b"]);
    d.ok(&["admin", "init"]);
    let server = d.serve();
    let pace = || metric(&server.url, "nuage_worker_pace{worker=\"migrate\"}");
    // Polls the server's counter until it shows `want`; the server looks every two seconds.
    let shows = |want: u64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while pace() != want {
            assert!(Instant::now() < deadline, "the server's migrate pace is {}, not {want}", pace());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(pace(), 8_000_000, "the configured pace");
    let set = json(&d, &["admin", "pace", "migrate", "3Mi"]);
    assert_eq!(set, serde_json::json!([{"worker": "migrate", "rate": 3 << 20, "set_at_run_time": true}]));
    shows(3 << 20);
    // The background tasks say how they are doing: the registry's follower (whose first
    // unit of work has ended, since a later one read the new pace) pauses two seconds
    // between its looks, and has not failed.
    let task = |name: &str| format!("{{task=\"provider states\"{name}}}");
    assert_eq!(metric(&server.url, &format!("nuage_background_state{}", task(",state=\"throttled\""))), 1);
    assert_eq!(metric(&server.url, &format!("nuage_background_errors_total{}", task(""))), 0);
    d.ok(&["admin", "pace", "migrate", "0"]);
    shows(0);
    let status = json(&d, &["admin", "pace"]);
    assert_eq!(status.as_array().unwrap().len(), 4, "{status}");
    assert!(d.ok(&["admin", "pace", "migrate"]).contains("unpaced (set with `nuage admin pace`)"));
    for (args, says) in [
        (&["admin", "pace", "nope", "1"][..], "WORKER is scrub, repair, gc or migrate"),
        (&["admin", "pace", "scrub", "12X"][..], "optional suffix"),
        (&["admin", "pace", "scrub", "M"][..], "does not start with a number"),
        (&["admin", "pace", "scrub", "99999999999Gi"][..], "too large"),
    ] {
        let out = d.run(args, "");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && said.contains(says), "{args:?}: {said}");
    }
    let scrub = &json(&d, &["admin", "pace", "scrub"])[0];
    assert_eq!(scrub["set_at_run_time"], false, "a refused pace changes nothing: {scrub}");
    d.ok(&["admin", "pace", "migrate", "default"]);
    shows(8_000_000);
}
