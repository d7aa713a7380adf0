//! Several servers on one PostgreSQL: three `nuage serve` processes share one database and two
//! folders, run every worker (a slow scrub, repair, the collector with no grace period) every
//! second or two, while four clients write, overwrite and delete through all of them for a
//! minute (`NUAGE_TEST_SERVERS_SECS`). Halfway, the server in the middle of a scrub pass
//! (holding its claim) is killed with SIGKILL. Then:
//!
//! - each worker's passes were done by one process at a time: from the servers' logs (each
//!   claim and release, with its time), no claim starts while another process holds it,
//!   the killed one holding its claims until the kill;
//! - the claim of the killed server went to another server, and passes went on;
//! - nothing a version references was deleted: every key reads back as its last
//!   acknowledged write said;
//! - a server stopped with SIGTERM exits cleanly within the workers' deadline and holds no
//!   claim after.
//!
//! Needs `NUAGE_TEST_PG_URL`; fails when `NUAGE_TEST_REQUIRE` names postgres and it is not
//! set.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::*;

/// A server child whose log lines (`RUST_LOG` with the workers' claims) are kept.
struct Logged {
    server: Server,
    pid: u32,
    lines: Arc<Mutex<Vec<String>>>,
    /// The thread that reads its log: it ends when the process has exited.
    reader: std::thread::JoinHandle<()>,
}

impl Logged {
    /// Its whole log, once it has exited (every line read).
    fn log_after_exit(self) -> Arc<Mutex<Vec<String>>> {
        let Logged { server, lines, reader, .. } = self;
        drop(server); // killed, if it still runs
        reader.join().unwrap();
        lines
    }
}

fn serve_logged(d: &Deployment) -> Logged {
    let mut c = d.command();
    c.arg("serve").env("RUST_LOG", "info,nuage_service::workers=debug").stderr(Stdio::piped());
    let mut child = c.stdout(Stdio::piped()).spawn().expect("starting nuage");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let kept = lines.clone();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        match out.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("nuage serving on ") {
                    break url.to_owned();
                }
            }
            _ => panic!("nuage exited before listening: {:?}", child.wait()),
        }
    };
    std::thread::spawn(move || for _ in out {});
    let pid = child.id();
    Logged { server: Server { child, url }, pid, lines, reader }
}

/// `t` as the servers' logs write times: RFC 3339, UTC, microseconds (so that times compare
/// as text).
fn log_time(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let (days, secs) = ((d.as_secs() / 86_400) as i64, d.as_secs() % 86_400);
    let (year, month, day) = nuage_core::date::civil(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        d.subsec_micros()
    )
}

#[test]
fn log_times_are_the_logs_format() {
    assert_eq!(
        log_time(SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_873_362_792_564)),
        "2025-12-04T18:36:02.792564Z"
    );
    assert_eq!(log_time(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    assert_eq!(
        log_time(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00.000000Z"
    );
}

/// A claim or a release in a log line: (time, worker, claimed, owner).
fn claim_event(line: &str) -> Option<(String, String, bool, String)> {
    let time = line.split_whitespace().next()?.to_owned();
    let rest = line.split("nuage_service::workers: ").nth(1)?;
    let (worker, what) = rest.split_once(": pass ")?;
    let (claimed, owner) = if let Some(o) = what.strip_prefix("claimed by ") {
        (true, o)
    } else {
        (false, what.strip_prefix("released by ")?)
    };
    Some((time, worker.to_owned(), claimed, owner.trim().to_owned()))
}

/// The pid in a claim's owner (`host:pid:nonce`).
fn owner_pid(owner: &str) -> Option<u32> {
    owner.split(':').nth(1)?.parse().ok()
}

#[test]
fn three_servers_share_the_workers_one_pass_at_a_time() {
    let required = env("NUAGE_TEST_REQUIRE").unwrap_or_default().contains("postgres");
    let Some(pg) = env("NUAGE_TEST_PG_URL") else {
        assert!(!required, "NUAGE_TEST_REQUIRE names postgres but NUAGE_TEST_PG_URL is not set");
        return;
    };
    let secs: u64 = env("NUAGE_TEST_SERVERS_SECS").map_or(60, |v| v.parse().unwrap());
    let url = fresh_pg_database(&pg);
    let d = Deployment::new(&format!("database_url = {url:?}\n")).with_two_folders(
        // A scrub pass lasts seconds (it reads every copy at 1 MB/s): the server killed is in
        // the middle of one.
        "[buckets]\nreplicas = 2\n[workers]\nscrub_every_secs = 1\nscrub_bytes_per_sec = 1000000\n\
         repair_every_secs = 2\ngc_every_secs = 1\ngc_grace_secs = 0",
    );
    d.ok(&["admin", "init"]);
    let created: serde_json::Value =
        serde_json::from_str(&d.ok(&["--json", "admin", "account", "create", "alice"])).unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let mut servers: Vec<Logged> = (0..3).map(|_| serve_logged(&d)).collect();
    let live: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new(servers.iter().map(|s| s.server.url.clone()).collect()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let base = live.lock().unwrap()[0].clone();
    let made = runtime
        .block_on(async { http.put(format!("{base}/v1/buckets/box")).bearer_auth(&token).send().await })
        .unwrap();
    assert!(made.status().is_success(), "{}", made.status());

    // The clients: each on keys of its own, every request to the next live server; a
    // request cut by a dying server is sent again, with its idempotency key, elsewhere.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4u32)
        .map(|c| {
            let (http, token, live, stop) = (http.clone(), token.clone(), live.clone(), stop.clone());
            runtime.spawn(async move {
                let mut last: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let key = format!("c{c}/k{}", n % 7);
                    // Overwrites and deletes leave chunks unreferenced: the collector's work.
                    let body = (!n.is_multiple_of(5))
                        .then(|| data(20_000 + (n as usize * 7919) % 300_000, c * 100_000 + n));
                    let idem = format!("op-{c}-{n}");
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        let server = {
                            let l = live.lock().unwrap();
                            l[(n as usize + tries) % l.len()].clone()
                        };
                        let url = format!("{server}/v1/buckets/box/objects/{key}");
                        let req = match &body {
                            Some(b) => http.put(&url).body(b.clone()),
                            None => http.delete(&url),
                        };
                        match req.bearer_auth(&token).header("idempotency-key", &idem).send().await {
                            Ok(r) if r.status().is_success() || (body.is_none() && r.status() == 404) => {
                                break;
                            }
                            Ok(r) => panic!("{key}: {} {}", r.status(), r.text().await.unwrap_or_default()),
                            Err(e) if tries < 10 => eprintln!("{key}: {e}; again elsewhere"),
                            Err(e) => panic!("{key}: {e}"),
                        }
                    }
                    last.insert(key, body);
                }
                last
            })
        })
        .collect();

    // Halfway: kill -9 the server that holds the scrub's claim.
    std::thread::sleep(Duration::from_secs(secs / 2));
    let meta = runtime.block_on(nuage_meta::Meta::open(&url)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let killed_worker = "scrub";
    let (killed_pid, killed_at, killed_lines) = loop {
        assert!(Instant::now() < deadline, "no server held the scrub's claim for 30 s");
        let holder = runtime.block_on(meta.claim_holder(killed_worker)).unwrap();
        let Some(pid) =
            holder.and_then(|(owner, _)| owner_pid(&owner)).filter(|p| servers.iter().any(|s| s.pid == *p))
        else {
            std::thread::sleep(Duration::from_millis(20)); // polling the claims
            continue;
        };
        let i = servers.iter().position(|s| s.pid == pid).unwrap();
        live.lock().unwrap().retain(|u| *u != servers[i].server.url);
        let at = SystemTime::now();
        let mut dead = servers.remove(i);
        dead.server.child.kill().unwrap(); // SIGKILL
        dead.server.child.wait().unwrap();
        println!("killed server {pid}, which held the scrub's claim");
        break (pid, log_time(at), dead.log_after_exit());
    };
    std::thread::sleep(Duration::from_secs(secs - secs / 2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last: Vec<BTreeMap<String, Option<Vec<u8>>>> =
        clients.into_iter().map(|c| runtime.block_on(c).unwrap()).collect();

    // Nothing a version references was deleted: every key reads back as last written.
    let reader = live.lock().unwrap()[0].clone();
    let mut read = 0;
    for (key, body) in last.iter().flatten() {
        let r = runtime
            .block_on(async {
                http.get(format!("{reader}/v1/buckets/box/objects/{key}")).bearer_auth(&token).send().await
            })
            .unwrap();
        match body {
            Some(b) => {
                assert!(r.status().is_success(), "{key}: {}", r.status());
                let got = runtime.block_on(r.bytes()).unwrap();
                assert!(got[..] == b[..], "{key}: {} bytes read, {} written", got.len(), b.len());
                read += 1;
            }
            None => assert_eq!(r.status(), 404, "{key} was deleted"),
        }
    }

    // A server stopped with SIGTERM stops its workers at the end of their batch, gives their
    // claims back and exits cleanly, within the deadline.
    let mut stopping = servers.pop().unwrap();
    let stopped_pid = stopping.pid;
    let began = Instant::now();
    let sent = Command::new("kill").arg("-TERM").arg(stopped_pid.to_string()).status().unwrap();
    assert!(sent.success());
    assert!(stopping.server.child.wait().unwrap().success(), "a clean exit on SIGTERM");
    assert!(began.elapsed() < Duration::from_secs(15), "stopped in {:?}", began.elapsed());
    for worker in ["scrub", "repair", "gc", "migrate"] {
        let holder = runtime.block_on(meta.claim_holder(worker)).unwrap();
        assert!(
            holder.as_ref().and_then(|(o, _)| owner_pid(o)) != Some(stopped_pid),
            "{worker} still claimed by the stopped server: {holder:?}"
        );
    }
    let stopped_lines = stopping.log_after_exit();
    // Passes went on to their end, the scrub's too (taken over from the server killed).
    for (worker, least) in [("scrub", 1), ("repair", 2), ("gc", 3)] {
        let done = runtime.block_on(meta.worker_state(worker)).unwrap().passes;
        assert!(done >= least, "{worker}: {done} passes done in {secs} s");
    }

    // One process at a time per worker, from every server's log (the killed one's too).
    let mut events: Vec<(String, String, bool, String)> = Vec::new();
    let mut logs: Vec<Arc<Mutex<Vec<String>>>> = servers.into_iter().map(Logged::log_after_exit).collect();
    logs.push(killed_lines);
    logs.push(stopped_lines);
    let all_lines: Vec<String> = logs.iter().flat_map(|l| l.lock().unwrap().clone()).collect();
    events.extend(all_lines.iter().filter_map(|l| claim_event(l)));
    // The killed server's claims end at its death.
    let killed = |owner: &str| owner_pid(owner) == Some(killed_pid);
    events.sort();
    let mut holders: BTreeMap<String, String> = BTreeMap::new();
    let mut claims: BTreeMap<String, BTreeMap<u32, usize>> = BTreeMap::new();
    let mut handed_over = false;
    for (time, worker, claimed, owner) in &events {
        if !claimed {
            if holders.get(worker) == Some(owner) {
                holders.remove(worker);
            }
            continue;
        }
        if let Some(h) = holders.get(worker)
            && !(killed(h) && *time > killed_at)
        {
            panic!("{time}: {owner} claimed {worker} while {h} held it");
        }
        if *worker == killed_worker && *time > killed_at && !killed(owner) {
            handed_over = true;
        }
        holders.insert(worker.clone(), owner.clone());
        *claims.entry(worker.clone()).or_default().entry(owner_pid(owner).unwrap()).or_default() += 1;
    }
    println!("{read} keys read back; claims by worker and server pid: {claims:?}");
    assert!(handed_over, "no other server claimed {killed_worker} after its holder was killed");
    for (worker, least) in [("scrub", 2), ("repair", 3), ("gc", 3)] {
        let n: usize = claims.get(worker).map_or(0, |p| p.values().sum());
        assert!(n >= least, "{worker}: claimed only {n} times in {secs} s");
    }
}
