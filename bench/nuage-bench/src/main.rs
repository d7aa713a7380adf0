//! Throughput of each stage of nuage's chunk path on random data in memory, one core and two.
//! Run by `bench/chunk-path.sh`, which prints it next to this machine's limits.

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use nuage_core::chunk::{self, Compression, SealOptions};
use nuage_core::pipeline::Pipeline;
use nuage_core::{Chunker, ChunkerConfig, ConvergenceSecret};
use rand::{RngCore, SeedableRng, rngs::StdRng};

/// Measures nuage's chunk path stage by stage.
#[derive(Debug, Parser)]
struct Args {
    /// MiB of random input.
    #[arg(long, default_value_t = 512)]
    mib: usize,
    /// Repetitions of each measurement; the best is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn best(runs: usize, bytes: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            bytes as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut data = vec![0u8; args.mib << 20];
    StdRng::seed_from_u64(42).fill_bytes(&mut data);
    let n = data.len();
    let secret = ConvergenceSecret::from_bytes([1; 32]);
    let raw = SealOptions { compression: Compression::None };
    let config = ChunkerConfig::default();

    let mut rows: Vec<(&str, f64)> = Vec::new();
    rows.push((
        "FastCDC chunking (1 core)",
        best(args.runs, n, || {
            let (mut c, mut buf) = (Chunker::new(&data[..], config).unwrap(), Vec::new());
            while c.next_chunk(&mut buf).unwrap() {}
        }),
    ));
    rows.push((
        "BLAKE3 hash (1 core)",
        best(args.runs, n, || {
            std::hint::black_box(blake3::hash(&data));
        }),
    ));
    rows.push((
        "MD5 (an S3 ETag; 1 core)",
        best(args.runs, n, || {
            use md5::Digest;
            std::hint::black_box(md5::Md5::digest(&data));
        }),
    ));
    rows.push((
        "seal: key + AES-256-GCM + address, 1 MiB chunks (1 core)",
        best(args.runs, n, || {
            for block in data.chunks(1 << 20) {
                std::hint::black_box(chunk::seal(&secret, block, &raw));
            }
        }),
    ));
    let zstd = SealOptions { compression: Compression::Zstd(1) };
    rows.push((
        "seal with zstd 1 (the default), random 1 MiB chunks (1 core)",
        best(args.runs, n, || {
            for block in data.chunks(1 << 20) {
                std::hint::black_box(chunk::seal(&secret, block, &zstd));
            }
        }),
    ));
    let pipeline = Pipeline { chunker: config, seal: raw, secret: secret.clone() };
    rows.push((
        "chunk + seal + address + file hash (2 threads)",
        best(args.runs, n, || {
            pipeline
                .run_parallel(&data[..], |c| -> Result<(), ()> {
                    std::hint::black_box(c);
                    Ok(())
                })
                .unwrap();
        }),
    ));
    for (name, gbps) in rows {
        println!("| {name} | {gbps:.2} GB/s |");
    }
    Ok(())
}
