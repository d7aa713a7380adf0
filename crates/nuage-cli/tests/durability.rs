//! Durability end to end: the real `nuage serve` on SQLite with two local folders as
//! providers, its scrub and repair driven by `nuage admin`, and damage done by hand to the
//! providers' files.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;

/// A deployment with two folder providers, `a` and `b`, and two copies of every chunk; the
/// background repair off, the background scrub every `scrub_every_secs` (0: off).
fn two_folders(scrub_every_secs: u64) -> Deployment {
    Deployment::new("").with_two_folders(&format!(
        "[buckets]\nreplicas = 2\n[workers]\nscrub_every_secs = {scrub_every_secs}\nrepair_every_secs = 0"
    ))
}

/// The chunk files of a folder provider: (address, path).
fn chunk_files(root: &std::path::Path) -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    for fan in std::fs::read_dir(root.join("ch")).unwrap() {
        for f in std::fs::read_dir(fan.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let name = f.file_name().to_string_lossy().into_owned();
            if name.len() == 64 {
                out.push((name, f.path()));
            }
        }
    }
    out.sort();
    out
}

fn json(d: &Deployment, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&d.ok(&all)).unwrap()
}

fn listed(report: &serde_json::Value) -> BTreeSet<String> {
    report["listed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

#[test]
fn bit_rot_is_never_served_found_by_scrub_and_fixed_by_repair() {
    let d = two_folders(0);
    let server = d.serve();
    d.alice(&server);
    d.ok(&["bucket", "create", "docs"]);
    let src = d.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..60 {
        std::fs::write(src.join(format!("f{i:02}")), data(100_000, 100 + i)).unwrap();
    }
    d.ok(&["put", src.to_str().unwrap(), "docs/set"]);
    let on_a = chunk_files(&d.path("a"));
    assert_eq!(on_a.len(), 60, "one chunk per file, on both providers");
    assert_eq!(chunk_files(&d.path("b")).len(), 60);

    // Rot: one flipped byte in 50 of the 60 files of provider a.
    let mut rotten = BTreeSet::new();
    for (address, path) in on_a.iter().take(50) {
        let mut raw = std::fs::read(path).unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 0x01;
        std::fs::write(path, raw).unwrap();
        rotten.insert(format!("{address}@a"));
    }

    // Every read is still right: the bad copies are detected and the good ones read.
    let out = d.path("out");
    d.ok(&["get", "docs/set", out.to_str().unwrap()]);
    assert_eq!(tree(&out), tree(&src), "no read returned bad bytes");

    // Scrub finds exactly those 50.
    let scrub = json(&d, &["admin", "scrub"]);
    assert_eq!(scrub["chunks"], 60);
    assert_eq!(scrub["found"], 50);
    assert_eq!(listed(&scrub), rotten, "scrub names the 50 rotten copies, and only them");
    let status = json(&d, &["admin", "status"]);
    let count = |provider: &str, state: &str| {
        status["placements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["provider"] == provider && p["state"] == state)
            .map_or(0, |p| p["count"].as_i64().unwrap())
    };
    assert_eq!((count("a", "corrupt"), count("a", "stored"), count("b", "stored")), (50, 10, 60));

    // Repair rewrites those 50 from b; a second scrub finds nothing.
    let repair = json(&d, &["admin", "repair"]);
    assert_eq!(repair["found"], 50);
    assert_eq!(listed(&repair), rotten);
    let again = json(&d, &["admin", "scrub"]);
    assert_eq!(again["found"], 0);
    for (address, path) in chunk_files(&d.path("a")) {
        assert_eq!(nuage_core::Address::of(&std::fs::read(path).unwrap()).to_hex(), address);
    }
    println!(
        "50 rotten copies of 60: reads right, scrub found {}, repair wrote {}, then 0",
        scrub["found"], repair["found"]
    );
}

#[test]
fn a_lost_copy_is_found_by_the_background_scrub_and_restored() {
    let d = two_folders(0);
    let server = d.serve();
    d.alice(&server);
    d.ok(&["bucket", "create", "docs"]);
    let file = d.path("one.bin");
    std::fs::write(&file, data(300_000, 7)).unwrap();
    d.ok(&["put", file.to_str().unwrap(), "docs/one.bin"]);
    // A copy vanishes from b; the server restarts with its background scrub on: it never
    // ran, so a pass starts at once.
    let (address, path) = chunk_files(&d.path("b")).remove(0);
    std::fs::remove_file(path).unwrap();
    drop(server);
    let config = std::fs::read_to_string(d.path("nuage.toml")).unwrap();
    std::fs::write(d.path("nuage.toml"), config.replace("scrub_every_secs = 0", "scrub_every_secs = 3600"))
        .unwrap();
    let _server = d.serve();
    let deadline = Instant::now() + Duration::from_secs(30);
    let scrub = loop {
        let status = json(&d, &["admin", "status"]);
        let scrub = status["workers"].as_array().unwrap().iter().find(|w| w["name"] == "scrub").cloned();
        if let Some(w) = scrub.filter(|w| w["passes"].as_i64() >= Some(1)) {
            break w;
        }
        assert!(Instant::now() < deadline, "the background scrub never finished a pass: {status}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(scrub["last_pass_found"], 1, "the background pass found the lost copy: {scrub}");
    let repair = json(&d, &["admin", "repair"]);
    assert_eq!(listed(&repair), BTreeSet::from([format!("{address}@b")]));
    let on_b: Vec<String> = chunk_files(&d.path("b")).into_iter().map(|(a, _)| a).collect();
    assert_eq!(on_b, vec![address], "the copy is back on b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_recorded_bad_but_intact_is_never_rewritten() {
    let d = two_folders(0);
    let server = d.serve();
    d.alice(&server);
    d.ok(&["bucket", "create", "docs"]);
    let file = d.path("one.bin");
    std::fs::write(&file, data(200_000, 8)).unwrap();
    d.ok(&["put", file.to_str().unwrap(), "docs/one.bin"]);
    let (address, path) = chunk_files(&d.path("a")).remove(0);
    let before = std::fs::metadata(&path).unwrap();
    // As a scrub would record it while provider a was away: missing, though the file is there.
    let meta = nuage_meta::Meta::open(&format!("sqlite:{}", d.path("data/meta.db").display())).await.unwrap();
    let raw: [u8; 32] = hex::decode(&address).unwrap().try_into().unwrap();
    assert!(
        meta.change_placement(
            &raw,
            "a",
            nuage_meta::PlacementState::Stored,
            nuage_meta::PlacementState::Missing,
            false
        )
        .await
        .unwrap()
    );
    meta.close().await;
    let repair = json(&d, &["admin", "repair"]);
    assert_eq!(repair["found"], 0, "no copy written: {repair}");
    let after = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec()),
        "the file was left as it was"
    );
    let status = json(&d, &["admin", "status"]);
    let a_stored = status["placements"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["provider"] == "a" && p["state"] == "stored");
    assert!(a_stored, "recorded stored again: {status}");
}

#[test]
fn ingested_chunks_never_reach_the_collector() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..5 {
        std::fs::write(src.path().join(format!("f{i}")), data(50_000, 300 + i)).unwrap();
    }
    let src = src.path().to_str().unwrap();

    // By default, ingest keeps a folder of its own beside the server's.
    let d = Deployment::new("");
    d.ok(&["ingest", src]);
    assert_eq!(chunk_files(&d.path("data/ingest")).len(), 5);
    assert!(!d.path("data/chunks").exists(), "nothing in the server's folder");

    // Providers named in a configuration that a server uses (it has a database) are refused.
    let d = two_folders(0);
    d.ok(&["ingest", src]); // no server has used it yet
    let strays = chunk_files(&d.path("a"));
    assert_eq!(strays.len(), 5);
    let server = d.serve();
    d.alice(&server);
    let refused = d.run(&["ingest", src], "");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("belong to a nuage server"));

    // And the collector deletes no object it has not seen for the grace period (a day by
    // default), whatever the index says: two passes find the strays and delete none.
    for _ in 0..2 {
        let gc = json(&d, &["admin", "gc"]);
        assert_eq!(gc["found"].as_u64(), Some(0), "{gc}");
    }
    assert_eq!(chunk_files(&d.path("a")), strays);
}
