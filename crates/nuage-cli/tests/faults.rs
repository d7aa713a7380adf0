//! Faults as a user meets them: the real `nuage serve` killed or restarted under a download
//! and a folder upload, a full provider, a copy missing on one provider. SQLite and local
//! folders (the faults are the server's and the providers', not the database's).

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use nuage_client::{Client, ClientError};

/// Polls `ready` every few milliseconds until it holds, for at most `within`.
fn wait_until(within: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn serve_on(d: &Deployment, addr: &str) -> Server {
    d.serve_with(&["--listen", addr])
}

/// A runtime, a client of `server`, and the bucket `films` with `long.mkv` (24 MB made
/// from `seed`, returned) and `short.txt`.
fn films(server: &Server, token: &str, seed: u32) -> (tokio::runtime::Runtime, Client, Vec<u8>) {
    let content = data(24_000_000, seed);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = Client::new(&server.url, Some(token.to_owned())).unwrap();
    runtime.block_on(async {
        client.create_bucket("films", &Default::default()).await.unwrap();
        client.put_bytes("films", "long.mkv", content.clone(), "video/x-matroska").await.unwrap();
        client.put_bytes("films", "short.txt", b"short".to_vec(), "text/plain").await.unwrap();
    });
    (runtime, client, content)
}

/// A progress callback that holds a download at its first bytes: the first receiver hears
/// when they arrived, and a send on the second lets the download go on.
fn held_at_first_bytes() -> (nuage_client::api::Progress, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (arrived, hold) = (mpsc::channel::<()>(), mpsc::channel::<()>());
    let (arrived_tx, hold_rx) = (std::sync::Mutex::new(Some(arrived.0)), std::sync::Mutex::new(hold.1));
    let progress = Arc::new(move |done: u64| {
        if done > 0
            && let Some(tx) = arrived_tx.lock().unwrap().take()
        {
            tx.send(()).unwrap();
            hold_rx.lock().unwrap().recv().unwrap();
        }
        true
    });
    (progress, arrived.1, hold.0)
}

/// A download whose server is killed and started again mid-stream goes on by itself from
/// where it stopped; one whose server stays down past the retry window stops with
/// `ClientError::Cut`, keeps what arrived, and the next call resumes it.
#[test]
fn a_download_cut_mid_stream_resumes_by_itself() {
    let d = Deployment::new("");
    let addr = format!("127.0.0.1:{}", free_port());
    let server = serve_on(&d, &addr);
    let token = d.alice(&server);
    let (runtime, _, content) = films(&server, &token, 77);

    // The progress callback holds the download at its first bytes while the server is
    // killed and started again on the same port.
    let mut server = Some(server);
    for (restart, window) in [(true, Duration::from_secs(60)), (false, Duration::from_millis(1500))] {
        let dest = d.path(if restart { "long-1.mkv" } else { "long-2.mkv" });
        let (progress, arrived, hold) = held_at_first_bytes();
        let client =
            Client::new(&format!("http://{addr}"), Some(token.clone())).unwrap().with_retry_window(window);
        let same = client.clone();
        let download = {
            let dest = dest.clone();
            runtime.spawn(async move { client.get_to_file("films", "long.mkv", None, &dest, progress).await })
        };
        arrived.recv_timeout(Duration::from_secs(30)).expect("the download started");
        drop(server.take()); // SIGKILL, and waited for
        if restart {
            server = Some(serve_on(&d, &addr));
        }
        hold.send(()).unwrap();
        let got = runtime.block_on(download).unwrap();
        if restart {
            let got = got.expect("the download went on after the restart");
            assert!(got.resumed_from > 0, "it resumed rather than started over: {got:?}");
            assert!(std::fs::read(&dest).unwrap() == content, "and the file is whole");
        } else {
            let e = got.expect_err("the server stayed down");
            assert!(matches!(e, ClientError::Cut { .. }), "{e:?}");
            let said = e.to_string();
            assert!(
                said.contains("run the same command again") && said.contains("cannot be reached"),
                "{said}"
            );
            let part = d.path("long-2.mkv.nuage-part");
            assert!(part.exists() && !dest.exists(), "what arrived is kept, under the part's name only");
            // The window is the client's: spent, the next download gives up at once rather
            // than wait it out again (a folder of files stops once, not once per file).
            let started = Instant::now();
            let next = runtime.block_on(same.get_to_file(
                "films",
                "short.txt",
                None,
                &d.path("short.txt"),
                nuage_client::api::no_progress(),
            ));
            assert!(matches!(next, Err(ClientError::GaveUp { .. })), "{next:?}");
            assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
            server = Some(serve_on(&d, &addr));
            let client = Client::new(&format!("http://{addr}"), Some(token.clone())).unwrap();
            let again = runtime
                .block_on(client.get_to_file(
                    "films",
                    "long.mkv",
                    None,
                    &dest,
                    nuage_client::api::no_progress(),
                ))
                .unwrap();
            assert!(again.resumed_from > 0, "{again:?}");
            assert!(std::fs::read(&dest).unwrap() == content);
        }
    }
}

/// A server that stops answering without closing its connections (stopped, hung behind a
/// proxy) is a timeout, retried like any temporary failure, not a transfer that hangs for
/// ever: past the window the download stops with what arrived kept, and resumes once the
/// server runs again.
#[test]
fn a_server_that_stops_answering_times_out_into_the_retry_window() {
    let d = Deployment::new("");
    let server = d.serve();
    let token = d.alice(&server);
    let (runtime, client, content) = films(&server, &token, 78);
    let client = client
        .with_read_timeout(Duration::from_millis(500))
        .unwrap()
        .with_retry_window(Duration::from_millis(1500));
    let (progress, arrived, hold) = held_at_first_bytes();
    let dest = d.path("long.mkv");
    let download = {
        let (client, dest) = (client.clone(), dest.clone());
        runtime.spawn(async move { client.get_to_file("films", "long.mkv", None, &dest, progress).await })
    };
    arrived.recv_timeout(Duration::from_secs(30)).expect("the download started");
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    hold.send(()).unwrap();
    let started = Instant::now();
    let got = runtime.block_on(download).unwrap();
    assert!(matches!(got, Err(ClientError::Cut { .. })), "{got:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let client = Client::new(&server.url, Some(token)).unwrap();
    let again = runtime
        .block_on(client.get_to_file("films", "long.mkv", None, &dest, nuage_client::api::no_progress()))
        .unwrap();
    assert!(again.resumed_from > 0, "{again:?}");
    assert!(std::fs::read(&dest).unwrap() == content);
}

/// A folder upload whose server dies midway waits the retry window, says so once, stops
/// with one message and exit code 7; run again once the server is back, it sends only the
/// rest.
#[test]
fn a_folder_put_against_a_dead_server_stops_once_with_one_message() {
    let d = Deployment::new("");
    let addr = format!("127.0.0.1:{}", free_port());
    let server = serve_on(&d, &addr);
    d.alice(&server);
    d.ok(&["bucket", "create", "docs"]);
    let src = d.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..3000 {
        std::fs::write(src.join(format!("f{i:04}.txt")), data(600, i)).unwrap();
    }
    let mut put = d.command();
    put.env("NUAGE_RETRY_WINDOW", "3")
        .args(["put", src.to_str().unwrap(), "docs/src"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = put.spawn().unwrap();
    wait_until(Duration::from_secs(60), "files committed", || {
        metric(&server.url, "nuage_versions_committed_total") >= 20
    });
    drop(server);
    let killed = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = killed.elapsed();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{said}");
    assert_eq!(said.matches("retrying for up to 3.0 s").count(), 1, "the outage is said once: {said}");
    assert!(said.contains("gave up after") && said.contains("stopped after"), "{said}");
    assert!(said.lines().count() <= 4, "a few lines, not one per file: {said}");
    assert!(!said.contains('\x1b'), "no colour codes when standard error is no terminal: {said:?}");
    assert!(took < Duration::from_secs(30), "it stopped after the window, not per file: {took:?}");

    let server = serve_on(&d, &addr);
    let again: serde_json::Value =
        serde_json::from_str(&d.ok(&["--json", "put", src.to_str().unwrap(), "docs/src"])).unwrap();
    let unchanged = again["unchanged"].as_u64().unwrap();
    assert!(unchanged >= 20, "what went up before is not sent again: {again}");
    let listed: serde_json::Value = serde_json::from_str(&d.ok(&["--json", "ls", "-r", "docs/src"])).unwrap();
    assert_eq!(listed["objects"].as_array().unwrap().len(), 3000);
    drop(server);
}

/// The server in a mount namespace of its own whose only provider is a small tmpfs: a write
/// that does not fit is refused with `507 insufficient_storage` (not "retry later"), and
/// what the failed upload had stored is given back at once, so that a smaller upload fits
/// right after (smart and simple).
#[test]
fn a_full_provider_answers_insufficient_storage_and_keeps_nothing() {
    // A mount namespace of its own needs user namespaces (util-linux `unshare`): some
    // machines forbid them to unprivileged users. `.ci/run` requires them.
    let namespaces = Command::new("unshare").args(["-Urm", "true"]).status().is_ok_and(|s| s.success());
    if !namespaces {
        let required = env("NUAGE_TEST_REQUIRE").is_some_and(|r| r.contains("namespaces"));
        assert!(!required, "NUAGE_TEST_REQUIRE names namespaces but `unshare -Urm` does not work here");
        eprintln!("skipped: `unshare -Urm` does not work here (user namespaces off)");
        return;
    }
    let d = Deployment::new("[chunking]\nmin_size = 65536\navg_size = 131072\nmax_size = 524288\n")
        .with_folders("", &["small"]);
    std::fs::create_dir_all(d.path("small")).unwrap();
    let mut serve = Command::new("unshare");
    serve
        .args(["-Urm", "--", "sh", "-c", "mount -t tmpfs -o size=6m tmpfs \"$0\" && exec \"$@\""])
        .arg(d.path("small"))
        .arg(NUAGE)
        .arg("--config")
        .arg(d.path("nuage.toml"))
        .arg("serve")
        .env_remove("NUAGE_DATA_DIR")
        .env_remove("NUAGE_DATABASE_URL")
        .env_remove("NUAGE_LISTEN");
    let server = spawn_until(serve, "nuage serving on ");
    d.alice(&server);
    d.ok(&["bucket", "create", "box"]);
    for (mode, fits) in [(None, 3_000_000), (Some("--simple"), 2_000_000)] {
        let big = d.path("big.bin");
        std::fs::write(&big, data(10_000_000, fits as u32)).unwrap();
        let mut args = vec!["put"];
        args.extend(mode);
        args.extend([big.to_str().unwrap(), "box/big.bin"]);
        let out = d.run_env(&args, "", &[("NUAGE_RETRY_WINDOW", "5")]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{mode:?}: {said}");
        assert!(said.contains("insufficient_storage") && said.contains("full"), "{mode:?}: {said}");
        let small = d.path("small.bin");
        std::fs::write(&small, data(fits, 5 + fits as u32)).unwrap();
        let target = format!("box/fits-{fits}.bin");
        let mut args = vec!["put"];
        args.extend(mode);
        args.extend([small.to_str().unwrap(), &target]);
        let out = d.run(&args, "");
        assert!(
            out.status.success(),
            "{mode:?}: the failed upload gave its room back: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(server);
}

/// A copy missing on one provider: reads fall back to the other copy, and the server logs
/// it, counts it at /metrics and records the placement `missing`, which the next repair
/// pass (here `nuage admin repair`) rewrites.
#[test]
fn a_read_that_falls_back_marks_the_placement_for_repair() {
    let d = Deployment::new("[chunking]\nmin_size = 65536\navg_size = 131072\nmax_size = 524288\n")
        .with_two_folders("[buckets]\nreplicas = 2\nwrite_quorum = 2\n");
    let server = d.serve();
    d.alice(&server);
    d.ok(&["bucket", "create", "box"]);
    let file = d.path("x.bin");
    let content = data(4_000_000, 3);
    std::fs::write(&file, &content).unwrap();
    d.ok(&["put", file.to_str().unwrap(), "box/x.bin"]);
    // Every chunk file of provider `a` goes.
    let mut removed = 0;
    let mut stack = vec![d.path("a")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                std::fs::remove_file(&path).unwrap();
                removed += 1;
            }
        }
    }
    assert!(removed > 10, "{removed} chunk files");
    let back = d.path("x-back.bin");
    d.ok(&["get", "box/x.bin", back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == content, "the read fell back to b");
    assert!(metric(&server.url, "nuage_read_copies_missing_total") > 0);
    let missing_on_a = || {
        let status: serde_json::Value = serde_json::from_str(&d.ok(&["--json", "admin", "status"])).unwrap();
        status["placements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["provider"] == "a" && p["state"] == "missing")
            .and_then(|p| p["count"].as_i64())
            .unwrap_or(0)
    };
    wait_until(Duration::from_secs(10), "placements on a recorded missing", || missing_on_a() > 0);
    drop(server);
    let repaired = d.ok(&["--json", "admin", "repair"]);
    let repaired: serde_json::Value = serde_json::from_str(&repaired).unwrap();
    assert!(repaired["found"].as_u64().unwrap() > 0, "{repaired}");
    assert_eq!(missing_on_a(), 0);
    let status: serde_json::Value = serde_json::from_str(&d.ok(&["--json", "admin", "status"])).unwrap();
    let by_hand =
        status["workers"].as_array().unwrap().iter().find(|w| w["name"] == "repair (by hand)").cloned();
    assert!(by_hand.is_some_and(|w| w["passes"] == 1), "the pass by hand is recorded: {status}");
}
