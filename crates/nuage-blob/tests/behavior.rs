//! The provider behavior suite: the same tests against every provider (memory and fs always;
//! S3 and Azure Blob when `scripts/test-servers.sh env` names their servers).

mod support;

use std::collections::HashSet;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use nuage_blob::{ChunkStore, Error, Placement, ProblemKind, Provider, PutOutcome, StoredChunk};
use nuage_core::chunk::{self, Compression, SealOptions};
use nuage_core::{Address, ConvergenceSecret, SealedChunk};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use support::Backend;

fn sealed(len: usize, seed: u64) -> SealedChunk {
    let mut plain = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut plain);
    chunk::seal(
        &ConvergenceSecret::from_bytes([7; 32]),
        &plain,
        &SealOptions { compression: Compression::None },
    )
}

async fn open(b: &Backend) -> Provider {
    Provider::open(b.config.clone()).await.unwrap_or_else(|e| {
        panic!("provider {} ({}) failed to open: {e}", b.config.name, b.config.kind.scheme())
    })
}

async fn listed(p: &Provider) -> HashSet<Address> {
    p.list().await.unwrap().try_collect().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunks_of_0_1_and_4mib_round_trip() {
    for b in support::all("sizes") {
        let p = open(&b).await;
        let store = ChunkStore::new(vec![p.clone()], Placement::replicas(1)).unwrap();
        let mut addresses = HashSet::new();
        for (i, len) in [0usize, 1, 4 << 20].into_iter().enumerate() {
            let s = sealed(len, i as u64);
            let (key, plain_len, address) = (s.key, s.plain_len, s.address);
            let report = store.put(&StoredChunk::from(s)).await.unwrap();
            assert_eq!(report.stored_on, [p.name()]);
            let read = store.get(&address, &[]).await.unwrap();
            let plain = chunk::open(&read.bytes, &key, plain_len).unwrap();
            assert_eq!(plain.len(), len, "{}", p.name());
            assert!(p.exists(&address).await.unwrap());
            addresses.insert(address);
        }
        assert_eq!(listed(&p).await, addresses, "{}", p.name());
        for a in &addresses {
            store.delete(a).await.unwrap();
        }
        assert!(listed(&p).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_small_chunks() {
    for b in support::all("many") {
        let p = open(&b).await;
        let started = std::time::Instant::now();
        let chunks: Vec<StoredChunk> = (0..10_000).map(|i| StoredChunk::from(sealed(40, 1000 + i))).collect();
        let written: Vec<PutOutcome> = futures::stream::iter(&chunks)
            .map(|c| {
                let p = &p;
                async move { p.put(&c.address(), c.bytes().clone()).await }
            })
            .buffer_unordered(32)
            .try_collect()
            .await
            .unwrap();
        assert!(written.iter().all(|o| *o == PutOutcome::Written));
        let expected: HashSet<Address> = chunks.iter().map(StoredChunk::address).collect();
        eprintln!("{}: 10,000 puts in {:?}", p.name(), started.elapsed());
        assert_eq!(listed(&p).await, expected, "{}", p.name());
        eprintln!("{}: + list in {:?}", p.name(), started.elapsed());
        let ok = futures::stream::iter(&chunks)
            .map(|c| {
                let p = &p;
                async move { p.get_raw(&c.address()).await.map(|b| b.as_deref() == Some(&c.bytes()[..])) }
            })
            .buffer_unordered(32)
            .try_fold(0, |n, same| async move { Ok(n + usize::from(same)) })
            .await
            .unwrap();
        assert_eq!(ok, 10_000, "{}", p.name());
        eprintln!("{}: + 10,000 gets in {:?}", p.name(), started.elapsed());
        futures::stream::iter(&chunks)
            .map(|c| {
                let p = &p;
                async move { p.delete(&c.address()).await }
            })
            // Azurite stalls past the 30 s operation limit on 32 concurrent deletes.
            .buffer_unordered(4)
            .try_collect::<Vec<()>>()
            .await
            .unwrap();
        assert!(listed(&p).await.is_empty());
        eprintln!("{}: + 10,000 deletes in {:?}", p.name(), started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reput_of_an_existing_address_writes_nothing() {
    for b in support::all("reput") {
        let p = open(&b).await;
        let c = StoredChunk::from(sealed(1000, 1));
        assert_eq!(p.put(&c.address(), c.bytes().clone()).await.unwrap(), PutOutcome::Written);
        assert_eq!(p.put(&c.address(), c.bytes().clone()).await.unwrap(), PutOutcome::AlreadyPresent);
        let store = ChunkStore::new(vec![p.clone()], Placement::replicas(1)).unwrap();
        let report = store.put(&c).await.unwrap();
        assert_eq!((report.written, report.bytes_written), (0, 0));
        assert_eq!(p.get_raw(&c.address()).await.unwrap().unwrap(), c.bytes());
        p.delete(&c.address()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn absent_chunk_is_not_found_and_wrong_bytes_are_refused() {
    for b in support::all("absent") {
        let p = open(&b).await;
        let store = ChunkStore::new(vec![p.clone()], Placement::replicas(1)).unwrap();
        let a = Address::of(b"never stored");
        assert!(matches!(store.get(&a, &[]).await, Err(Error::NotFound { .. })));
        assert!(!p.exists(&a).await.unwrap());
        p.delete(&a).await.unwrap();
        assert!(matches!(
            StoredChunk::verify(a, Bytes::from_static(b"other bytes")),
            Err(Error::AddressMismatch { .. })
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupted_copy_is_reported_and_the_read_falls_back() {
    for b in support::all("corrupt") {
        let bad = open(&b).await;
        let good_backend = support::fs("good");
        let good = open(&good_backend).await;
        let store = ChunkStore::new(vec![bad.clone(), good.clone()], Placement::replicas(2)).unwrap();
        let mut events = store.subscribe();
        let c = StoredChunk::from(sealed(5000, 9));
        let report = store.put(&c).await.unwrap();
        assert_eq!(report.stored_on.len(), 2);
        let mut damaged = c.bytes().to_vec();
        damaged[100] ^= 0x01;
        bad.operator().write(&c.address().object_key(), damaged).await.unwrap();

        let read = store.get(&c.address(), &[bad.name()]).await.unwrap();
        assert_eq!(read.bytes, c.bytes());
        assert_eq!(read.provider, "good");
        assert_eq!(read.problems.len(), 1);
        assert_eq!(
            (read.problems[0].provider.as_str(), &read.problems[0].kind),
            (bad.name(), &ProblemKind::Corrupt)
        );
        let event = events.try_recv().unwrap();
        assert_eq!((event.address, event.kind), (c.address(), ProblemKind::Corrupt));

        // Corrupt on every copy: an error, never the bad bytes.
        good.operator().write(&c.address().object_key(), c.bytes().slice(1..)).await.unwrap();
        match store.get(&c.address(), &[]).await {
            Err(Error::Unavailable { problems, .. }) => assert_eq!(problems.len(), 2),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        store.delete(&c.address()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_bucket_is_a_clear_error() {
    let mut checked = 0;
    for b in support::all("nobucket") {
        let mut config = b.config.clone();
        match &mut config.kind {
            nuage_blob::ProviderKind::S3 { bucket, .. } => *bucket = "no-such-bucket".into(),
            nuage_blob::ProviderKind::Azblob { container, .. } => *container = "no-such-container".into(),
            _ => continue,
        }
        match Provider::open(config).await {
            Err(e @ Error::ContainerMissing { .. }) => {
                assert!(e.to_string().contains("no-such-"), "{e}");
                checked += 1;
            }
            other => panic!("expected ContainerMissing, got {other:?}"),
        }
    }
    let asked = std::env::var("NUAGE_TEST_S3_ENDPOINT").is_ok() as usize
        + std::env::var("NUAGE_TEST_AZBLOB_ENDPOINT").is_ok() as usize;
    assert_eq!(checked, asked);
}

/// One provider of two or three is a private server that the test kills.
async fn outage(mut server: support::PrivateServer) {
    let victim = open(&server.backend).await;
    let mem_backend = support::memory("mem");
    let fs_backend = support::fs("disk");
    let (mem, disk) = (open(&mem_backend).await, open(&fs_backend).await);
    let pair = ChunkStore::new(vec![victim.clone(), mem.clone()], Placement::replicas(2)).unwrap();
    let chunks: Vec<StoredChunk> = (0..20).map(|i| StoredChunk::from(sealed(3000, 500 + i))).collect();
    for c in &chunks {
        assert_eq!(pair.put(c).await.unwrap().stored_on.len(), 2);
    }

    server.kill();

    // Reads: every chunk still comes back, the dead provider is reported, then skipped.
    for c in &chunks {
        let read = pair.get(&c.address(), &[victim.name()]).await.unwrap();
        assert_eq!(read.bytes, c.bytes());
        assert_eq!(read.provider, "mem");
    }
    assert!(victim.is_down(), "a provider that keeps failing must be marked down");
    let read = pair.get(&chunks[0].address(), &[victim.name()]).await.unwrap();
    assert!(read.problems.is_empty(), "a provider marked down is tried last: {:?}", read.problems);

    // Writes: quorum 2 of 2 fails fast and clearly; quorum 1 succeeds; with a third
    // provider, replicas = 2 lands on the two live ones.
    let fresh = StoredChunk::from(sealed(3000, 9999));
    match pair.put(&fresh).await {
        Err(e @ Error::QuorumNotMet { needed: 2, .. }) => {
            assert!(e.to_string().contains("write quorum is 2"), "{e}")
        }
        other => panic!("expected QuorumNotMet, got {other:?}"),
    }
    let lenient =
        ChunkStore::new(vec![victim.clone(), mem.clone()], Placement::replicas(2).with_quorum(1)).unwrap();
    assert_eq!(lenient.put(&fresh).await.unwrap().stored_on, ["mem"]);
    let three =
        ChunkStore::new(vec![victim.clone(), mem.clone(), disk.clone()], Placement::replicas(2)).unwrap();
    let another = StoredChunk::from(sealed(3000, 10_000));
    let mut stored = three.put(&another).await.unwrap().stored_on;
    stored.sort();
    assert_eq!(stored, ["disk", "mem"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_server_killed_reads_fall_back_and_writes_follow_the_quorum() {
    match support::private_s3("victim") {
        Some(server) => outage(server).await,
        None => eprintln!("S3 not configured for this run (scripts/test-servers.sh env)"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azurite_killed_reads_fall_back_and_writes_follow_the_quorum() {
    match support::private_azblob("victim") {
        Some(server) => outage(server).await,
        None => eprintln!("Azure Blob not configured for this run (scripts/test-servers.sh env)"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placement_spreads_by_weight_and_is_stable() {
    let backends: Vec<Backend> = ["a", "b", "c"].iter().map(|n| support::memory(n)).collect();
    let mut providers = Vec::new();
    for b in &backends {
        providers.push(open(b).await);
    }
    let store = ChunkStore::new(providers.clone(), Placement::replicas(1)).unwrap();
    let mut first = std::collections::HashMap::<String, usize>::new();
    for i in 0..3000u32 {
        let a = Address::of(&i.to_le_bytes());
        let rank = store.ranking(&a);
        assert_eq!(
            rank.iter().map(|p| p.name()).collect::<Vec<_>>(),
            store.ranking(&a).iter().map(|p| p.name()).collect::<Vec<_>>()
        );
        *first.entry(rank[0].name().to_owned()).or_default() += 1;
    }
    for n in ["a", "b", "c"] {
        assert!((800..1200).contains(&first[n]), "{first:?}");
    }
    assert!(ChunkStore::new(providers.clone(), Placement::replicas(4)).is_err());
    assert!(ChunkStore::new(providers.clone(), Placement::replicas(2).with_quorum(3)).is_err());
    assert!(
        ChunkStore::new(vec![providers[0].clone(), providers[0].clone()], Placement::replicas(1)).is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn providers_join_and_leave_a_store_and_stored_chunks_are_found_where_they_are() {
    let backends: Vec<Backend> = ["a", "b", "c"].iter().map(|n| support::memory(n)).collect();
    let mut providers = Vec::new();
    for b in &backends {
        providers.push(open(b).await);
    }
    let store = ChunkStore::new(providers[..2].to_vec(), Placement::replicas(2)).unwrap();
    let chunks: Vec<StoredChunk> = (0..40).map(|i| StoredChunk::from(sealed(2000, 700 + i))).collect();
    for c in &chunks {
        store.put(c).await.unwrap();
    }
    // c joins: a clone of the store sees it, and it ranks first for some of the chunks
    // stored already.
    let view = store.clone();
    store.add_provider(providers[2].clone()).unwrap();
    assert!(store.add_provider(providers[2].clone()).is_err(), "one provider per name");
    assert_eq!(view.providers().iter().map(|p| p.name()).collect::<Vec<_>>(), ["a", "b", "c"]);
    let moved: Vec<&StoredChunk> =
        chunks.iter().filter(|c| store.ranking(&c.address())[..2].iter().any(|p| p.name() == "c")).collect();
    assert!(!moved.is_empty(), "c ranks in the first two for some chunks");
    // Stored again with where they are: found on a and b, nothing written to c.
    let there = ["a".to_owned(), "b".to_owned()];
    for c in &moved {
        let report = store.put_preferring(c, Placement::replicas(2), &there).await.unwrap();
        assert_eq!((report.written, report.stored_on.len()), (0, 2), "{report:?}");
        assert!(!providers[2].exists(&c.address()).await.unwrap());
    }
    // Without: the ranking puts a copy on c.
    let report = store.put(moved[0]).await.unwrap();
    assert!(report.stored_on.contains(&"c".to_owned()) && report.written == 1, "{report:?}");
    // c leaves: reads and writes go on without it.
    assert_eq!(store.remove_provider("c").map(|p| p.name().to_owned()), Some("c".into()));
    assert!(store.remove_provider("c").is_none());
    assert_eq!(store.providers().len(), 2);
    for c in &chunks {
        assert_eq!(store.get(&c.address(), &[]).await.unwrap().bytes, c.bytes());
    }
    assert!(store.put(&StoredChunk::from(sealed(2000, 999))).await.unwrap().stored_on.len() == 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_provider_syncs_and_a_sync_with_nothing_new_does_nothing() {
    for b in support::all("sync") {
        let p = open(&b).await;
        let store = ChunkStore::new(vec![p.clone()], Placement::replicas(1)).unwrap();
        store.sync().await.unwrap();
        let before = p.syncs();
        store.put(&StoredChunk::from(sealed(100, 40))).await.unwrap();
        store.sync().await.unwrap();
        store.sync().await.unwrap();
        let made = p.syncs() - before;
        // A local folder makes one filesystem sync for the put; object stores need none.
        let expected = u64::from(matches!(b.config.kind, nuage_blob::ProviderKind::Fs { .. }));
        assert_eq!(made, expected, "{}", p.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_syncs_on_a_folder_share_filesystem_syncs() {
    let b = support::fs("shared-sync");
    let p = open(&b).await;
    let store = ChunkStore::new(vec![p.clone()], Placement::replicas(1)).unwrap();
    // 32 writers, each putting a chunk and then syncing, as 32 concurrent uploads would.
    let tasks: Vec<_> = (0..32u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store.put(&StoredChunk::from(sealed(64 << 10, 100 + i))).await.unwrap();
                store.sync().await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let syncs = p.syncs();
    eprintln!("32 puts, each followed by a sync: {syncs} filesystem syncs");
    // At least one; fewer than one per writer, because waiters behind a running sync are
    // covered by the next one together.
    assert!((1..32).contains(&syncs), "{syncs} syncs for 32 writers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_chunk_file_left_by_a_crash_is_rewritten() {
    let b = support::fs("torn");
    let p = open(&b).await;
    let c = StoredChunk::from(sealed(10_000, 41));
    // What a power loss can leave under a chunk's name when its sync never ran: a prefix.
    let nuage_blob::ProviderKind::Fs { root } = &b.config.kind else { unreachable!() };
    let path = root.join(c.address().object_key());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &c.bytes()[..4096]).unwrap();
    assert_eq!(p.put(&c.address(), c.bytes().clone()).await.unwrap(), PutOutcome::Written);
    assert_eq!(std::fs::read(&path).unwrap(), c.bytes().as_ref());
    let store = ChunkStore::new(vec![p.clone()], Placement::replicas(1)).unwrap();
    assert_eq!(store.get(&c.address(), &[]).await.unwrap().bytes, c.bytes());
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_presigned_put_stores_the_chunk_without_credentials() {
    let http = reqwest::Client::new();
    for b in support::all("presign") {
        let p = open(&b).await;
        let s = sealed(300_000, 77);
        let presigned = p.presign_put(&s.address, std::time::Duration::from_secs(300)).await.unwrap();
        let scheme = b.config.kind.scheme();
        let Some(request) = presigned else {
            assert!(matches!(scheme, "fs" | "memory"), "{scheme} should presign");
            continue;
        };
        assert!(matches!(scheme, "s3" | "azblob"));
        // Only this address: the same URL for another object does not exist.
        let other = sealed(1000, 78);
        assert!(!request.url.contains(&other.address.to_hex()));
        let mut r = http.request(request.method.parse().unwrap(), &request.url);
        for (k, v) in &request.headers {
            r = r.header(k, v);
        }
        let answer = r.body(s.bytes.clone()).send().await.unwrap();
        assert!(
            answer.status().is_success(),
            "{scheme}: {} {}",
            answer.status(),
            answer.text().await.unwrap()
        );
        assert_eq!(p.get_raw(&s.address).await.unwrap().as_deref(), Some(&s.bytes[..]), "{scheme}");
        // A tampered signature is refused by the provider, and stores nothing.
        let forged = request.url.replace("sig=", "sig=A").replace("X-Amz-Signature=", "X-Amz-Signature=0");
        let mut r = http.request(request.method.parse().unwrap(), &forged);
        for (k, v) in &request.headers {
            r = r.header(k, v);
        }
        let other_bytes = other.bytes.clone();
        assert!(!r.body(other_bytes).send().await.unwrap().status().is_success(), "{scheme}: a forged URL");
        assert_eq!(p.get_raw(&s.address).await.unwrap().as_deref(), Some(&s.bytes[..]));
        p.delete(&s.address).await.unwrap();
    }
}

/// A provider that cannot be reached: the error names the provider and what was asked of
/// it, and is no longer temporary once the retry layer has tried and given up.
#[tokio::test]
async fn an_unreachable_provider_is_named_with_its_operation_and_not_temporary() {
    // Port 1 on loopback: nothing listens there, so each attempt is refused at once.
    let config = nuage_blob::ProviderConfig::new(
        "gone",
        nuage_blob::ProviderKind::S3 {
            bucket: "b".into(),
            endpoint: "http://127.0.0.1:1".into(),
            access_key_id: "k".into(),
            secret_access_key: nuage_blob::Secret("s".into()),
            root: None,
        },
    )
    .with_timeout(5);
    let e = Provider::open(config).await.expect_err("nothing listens on port 1");
    assert_eq!(e.provider(), Some("gone"), "{e}");
    assert_eq!(e.operation(), Some(nuage_blob::Operation::Check), "{e}");
    assert!(e.to_string().starts_with("provider gone: check: "), "{e}");
    assert!(!e.is_temporary(), "the retry layer gave up, so asking again at once will not help: {e:?}");
}
