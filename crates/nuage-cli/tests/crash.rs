//! Crash safety end to end: a child `nuage serve` (SQLite, two local folders, two copies of
//! every chunk, its garbage collector running every second with no grace period) is killed
//! with SIGKILL at random moments while four clients upload, overwrite and delete; after
//! every restart the state is checked against what the clients were told.
//!
//! `NUAGE_TEST_KILLS` sets the number of kills (default 100), `NUAGE_TEST_SEED` the seed;
//! with `NUAGE_TEST_PG_URL`, the same runs on PostgreSQL.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CLIENTS: usize = 4;
const KEYS_PER_CLIENT: usize = 5;
const KEEP_VERSIONS: usize = 2;

/// What one operation sends.
#[derive(Debug, Clone)]
enum Op {
    /// Content by seed and size (see [`body`]).
    Put {
        seed: u32,
        size: usize,
    },
    Delete,
}

/// Content made of pieces of a few seeds, so that versions and keys share chunks, and the
/// collector sees chunks go unreferenced and come back.
fn body(seed: u32, size: usize) -> Vec<u8> {
    let mut out = data(size.min(400_000), seed % 6);
    if size > out.len() {
        out.extend(data(size - out.len(), seed));
    }
    out
}

/// One operation as sent: its key, its idempotency key, what it did.
#[derive(Debug, Clone)]
struct Sent {
    key: String,
    idempotency_key: String,
    op: Op,
}

/// What a key went through, as the server acknowledged it: (version id, content hash or
/// `None` for a tombstone), oldest first.
type History = BTreeMap<String, Vec<(i64, Option<blake3::Hash>)>>;

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// Sends `s`; `Ok(version)` when the server answered with one, `Err` when the request
    /// failed (the server died, or refused for a reason the caller reports).
    async fn send(&self, s: &Sent) -> Result<(i64, bool), String> {
        let url = format!("{}/v1/buckets/kbox/objects/{}", self.base, s.key);
        let req = match &s.op {
            Op::Put { seed, size } => self.http.put(&url).body(body(*seed, *size)),
            Op::Delete => self.http.delete(&url),
        };
        let res = req
            .bearer_auth(&self.token)
            .header("idempotency-key", &s.idempotency_key)
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let status = res.status().as_u16();
        let version = res.headers().get("x-nuage-version").and_then(|v| v.to_str().ok()?.parse().ok());
        let text = res.text().await.map_err(|e| format!("transport: {e}"))?;
        match (status, version) {
            (200 | 201 | 204, Some(v)) => Ok((v, status == 200 || text.contains("\"replayed\":true"))),
            _ => Err(format!("{status}: {text}")),
        }
    }
}

/// One client's loop: operations on its own keys, one at a time, until a request fails.
/// Returns what was acknowledged and the operation in flight when the server died.
async fn run_client(
    client: &Client,
    id: usize,
    rng: &mut StdRng,
    live: &mut BTreeSet<String>,
) -> (Vec<(Sent, i64)>, Option<Sent>) {
    let mut acked = Vec::new();
    loop {
        let key = format!("c{id}/k{}", rng.random_range(0..KEYS_PER_CLIENT));
        let op = if live.contains(&key) && rng.random_bool(0.25) {
            Op::Delete
        } else {
            let size = if rng.random_bool(0.7) {
                rng.random_range(1..64_000)
            } else {
                rng.random_range(300_000..2_500_000)
            };
            Op::Put { seed: rng.random_range(0..1_000_000), size }
        };
        let sent = Sent { key, idempotency_key: format!("op-{:016x}", rng.random::<u64>()), op };
        match client.send(&sent).await {
            Ok((v, _)) => {
                match sent.op {
                    Op::Delete => live.remove(&sent.key),
                    Op::Put { .. } => live.insert(sent.key.clone()),
                };
                acked.push((sent, v));
            }
            Err(e) if e.starts_with("transport") => return (acked, Some(sent)),
            Err(e) => panic!("{sent:?} refused while the server was up: {e}"),
        }
    }
}

fn record(history: &mut History, s: &Sent, version: i64) {
    let content = match s.op {
        Op::Put { seed, size } => Some(blake3::hash(&body(seed, size))),
        Op::Delete => None,
    };
    let h = history.entry(s.key.clone()).or_default();
    if !h.iter().any(|(v, _)| *v == version) {
        h.push((version, content));
    }
}

/// Checks every key against `history`: the versions the server keeps are exactly the last
/// [`KEEP_VERSIONS`] acknowledged, each reads back byte-identical, and the head is the last.
async fn check(client: &Client, history: &History) -> usize {
    let mut read = 0;
    for (key, h) in history {
        let url = format!("{}/v1/buckets/kbox/versions/{key}", client.base);
        let listed: serde_json::Value =
            client.http.get(&url).bearer_auth(&client.token).send().await.unwrap().json().await.unwrap();
        let kept: BTreeSet<i64> =
            listed["versions"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
        let expected: BTreeSet<i64> = h.iter().rev().take(KEEP_VERSIONS).map(|(v, _)| *v).collect();
        assert_eq!(kept, expected, "{key}: the versions kept are the last acknowledged ones, no other");
        for (v, content) in h.iter().rev().take(KEEP_VERSIONS) {
            let Some(hash) = content else { continue };
            let url = format!("{}/v1/buckets/kbox/objects/{key}?version={v}", client.base);
            let res = client.http.get(&url).bearer_auth(&client.token).send().await.unwrap();
            assert_eq!(res.status().as_u16(), 200, "{key} version {v}");
            assert_eq!(
                blake3::hash(&res.bytes().await.unwrap()),
                *hash,
                "{key} version {v} reads back identical"
            );
            read += 1;
        }
        let head = client
            .http
            .get(format!("{}/v1/buckets/kbox/objects/{key}", client.base))
            .bearer_auth(&client.token)
            .send()
            .await
            .unwrap();
        let head_status = head.status().as_u16();
        match h.last().unwrap().1 {
            Some(hash) => {
                assert_eq!(head_status, 200, "{key}: live");
                assert_eq!(
                    blake3::hash(&head.bytes().await.unwrap()),
                    hash,
                    "{key}: the head is the last write"
                );
            }
            None => assert_eq!(head_status, 404, "{key}: deleted last"),
        }
    }
    read
}

/// Chunk files of a folder provider, and temporary files left by interrupted writes.
fn files(root: &std::path::Path) -> (BTreeSet<String>, usize) {
    let (mut chunks, mut temporary) = (BTreeSet::new(), 0);
    let Ok(fans) = std::fs::read_dir(root.join("ch")) else { return (chunks, 0) };
    for fan in fans {
        for f in std::fs::read_dir(fan.unwrap().path()).unwrap() {
            let name = f.unwrap().file_name().to_string_lossy().into_owned();
            if name.len() == 64 {
                chunks.insert(name);
            } else {
                temporary += 1;
            }
        }
    }
    (chunks, temporary)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn kill_9_at_random_moments_loses_nothing_acknowledged_and_leaves_no_garbage() {
    let kills = env("NUAGE_TEST_KILLS").map_or(100, |v| v.parse().unwrap());
    runtime().block_on(crash_run(None, kills));
}

/// The same on PostgreSQL (its leases and deletions exclude each other by an advisory lock,
/// not by SQLite's one writer), with fewer kills (`NUAGE_TEST_PG_KILLS`, default 30).
#[test]
fn kill_9_on_postgres() {
    let required = env("NUAGE_TEST_REQUIRE").unwrap_or_default().contains("postgres");
    let Some(pg) = env("NUAGE_TEST_PG_URL") else {
        assert!(!required, "NUAGE_TEST_REQUIRE names postgres but NUAGE_TEST_PG_URL is not set");
        return;
    };
    let kills = env("NUAGE_TEST_PG_KILLS").map_or(30, |v| v.parse().unwrap());
    let url = fresh_pg_database(&pg);
    runtime().block_on(crash_run(Some(url), kills));
}

async fn crash_run(database_url: Option<String>, kills: usize) {
    let seed: u64 = env("NUAGE_TEST_SEED").map_or_else(rand::random, |v| v.parse().unwrap());
    let backend = if database_url.is_some() { "PostgreSQL" } else { "SQLite" };
    println!("{backend}: seed {seed} (NUAGE_TEST_SEED), {kills} kills");
    let mut rng = StdRng::seed_from_u64(seed);
    let database = database_url.as_ref().map(|u| format!("database_url = {u:?}\n")).unwrap_or_default();
    let d = Deployment::new(&database).with_two_folders(
        "[buckets]\nreplicas = 2\n[workers]\nscrub_every_secs = 0\nrepair_every_secs = 0\n\
         gc_every_secs = 1\ngc_grace_secs = 0",
    );
    d.ok(&["admin", "init"]); // before the first serve: admin never makes a database itself
    let created: serde_json::Value =
        serde_json::from_str(&d.ok(&["--json", "admin", "account", "create", "alice"])).unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();

    let mut history = History::new();
    let mut live: Vec<BTreeSet<String>> = vec![BTreeSet::new(); CLIENTS];
    let mut rngs: Vec<StdRng> = (0..CLIENTS).map(|_| StdRng::seed_from_u64(rng.random())).collect();
    let (mut acked_total, mut in_flight, mut committed_before_kill, mut read) = (0, 0, 0, 0);
    for round in 0..=kills {
        let server = d.serve();
        let client = Client { http: http.clone(), base: server.url.clone(), token: token.clone() };
        if round == 0 {
            let r = client
                .http
                .put(format!("{}/v1/buckets/kbox", client.base))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(format!("{{\"keep_versions\": {KEEP_VERSIONS}}}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
        }
        read += check(&client, &history).await;
        if round == kills {
            drop(server);
            break;
        }
        // The clients run until the server dies under them.
        let mut server = server;
        let kill_after = Duration::from_millis(rng.random_range(30..600));
        let runs =
            futures::future::join_all(rngs.iter_mut().zip(live.iter_mut()).enumerate().map(|(i, (r, l))| {
                let client = &client;
                async move { run_client(client, i, r, l).await }
            }));
        let killer = async {
            // The kill lands at a random moment of the traffic, by design: nothing waits on it.
            tokio::time::sleep(kill_after).await;
            server.child.kill().unwrap(); // SIGKILL
            server.child.wait().unwrap();
        };
        let (outcomes, ()) = tokio::join!(runs, killer);
        drop(server);
        // Restarted: every operation in flight is sent again with its idempotency key, and
        // completes once, whether or not it had committed before the kill.
        let server = d.serve();
        let client = Client { http: http.clone(), base: server.url.clone(), token: token.clone() };
        for (i, (acked, pending)) in outcomes.into_iter().enumerate() {
            acked_total += acked.len();
            for (s, v) in &acked {
                record(&mut history, s, *v);
            }
            if let Some(s) = pending {
                in_flight += 1;
                let (v, replayed) = client.send(&s).await.unwrap_or_else(|e| panic!("retry of {s:?}: {e}"));
                committed_before_kill += usize::from(replayed);
                match s.op {
                    Op::Delete => live[i].remove(&s.key),
                    Op::Put { .. } => live[i].insert(s.key.clone()),
                };
                record(&mut history, &s, v);
            }
        }
        drop(server);
        if round % 10 == 9 {
            // Every copy of every chunk of the index is on its provider and intact.
            let scrub: serde_json::Value =
                serde_json::from_str(&d.ok(&["--json", "admin", "scrub"])).unwrap();
            if scrub["found"] != 0 {
                let url = database_url
                    .clone()
                    .unwrap_or_else(|| format!("sqlite:{}", d.path("data/meta.db").display()));
                panic!("round {round}: {scrub}\n{}", diagnose(&url, &scrub).await);
            }
        }
    }

    // The collector, with no upload in progress and no grace: nothing but referenced chunks
    // is left on either provider, and every referenced chunk is on both.
    let gc: serde_json::Value = serde_json::from_str(&d.ok(&["--json", "admin", "gc"])).unwrap();
    let url = database_url.unwrap_or_else(|| format!("sqlite:{}", d.path("data/meta.db").display()));
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let referenced: BTreeSet<String> =
        sqlx::query_scalar::<_, Vec<u8>>("SELECT address FROM chunks WHERE refcount > 0")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(hex::encode)
            .collect();
    let unreferenced: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM chunks WHERE refcount = 0").fetch_one(&pool).await.unwrap();
    pool.close().await;
    assert_eq!(unreferenced, 0, "the index keeps no unreferenced chunk; gc: {gc}");
    let mut temporary = 0;
    for provider in ["a", "b"] {
        let (on_disk, tmp) = files(&d.path(provider));
        temporary += tmp;
        assert_eq!(on_disk, referenced, "provider {provider} holds exactly the referenced chunks");
    }
    let scrub: serde_json::Value = serde_json::from_str(&d.ok(&["--json", "admin", "scrub"])).unwrap();
    assert_eq!(scrub["found"], 0, "{scrub}");
    println!(
        "{backend}: {kills} kills; {acked_total} operations acknowledged, {in_flight} in flight at a kill and sent again \
         ({committed_before_kill} had committed before the kill, replayed once); {read} version reads identical; \
         final gc deleted {} chunks; {} chunks referenced, on both providers; {temporary} temporary files of \
         interrupted writes left (removed after an hour)",
        gc["found"],
        referenced.len()
    );
}

/// What the database says of the chunks a scrub found bad: for a failure's message.
async fn diagnose(url: &str, scrub: &serde_json::Value) -> String {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let mut out = String::new();
    for l in scrub["listed"].as_array().unwrap() {
        let hex_address = l.as_str().unwrap().split('@').next().unwrap();
        let a = hex::decode(hex_address).unwrap();
        let row = sqlx::query(
            "SELECT refcount, COALESCE(unreferenced_since, -1), created_at FROM chunks WHERE address = $1",
        )
        .bind(a.clone())
        .fetch_optional(&pool)
        .await
        .unwrap();
        let deleting: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chunk_deletions WHERE address = $1")
            .bind(a.clone())
            .fetch_one(&pool)
            .await
            .unwrap();
        let leases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chunk_leases WHERE address = $1")
            .bind(a)
            .fetch_one(&pool)
            .await
            .unwrap();
        let row = row.map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1), r.get::<i64, _>(2)));
        out += &format!(
            "{l}: (refcount, unreferenced_since, created_at) {row:?}, deleting {deleting}, leases {leases}\n"
        );
    }
    let workers: Vec<(String, Option<String>)> = sqlx::query("SELECT name, owner FROM workers")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    out += &format!("workers: {workers:?}");
    pool.close().await;
    out
}
