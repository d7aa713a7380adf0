//! Small-object load on a running `nuage serve`: CONCURRENCY clients each PUT then GET their
//! share of COUNT objects of SIZE bytes (distinct keys, random content), and the rates and
//! latency percentiles of each phase are printed as one table row. Run by
//! `bench/serve.sh`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use futures::future::join_all;
use rand::RngCore;

#[derive(Debug, Parser)]
struct Args {
    /// Server URL.
    #[arg(long)]
    server: String,
    /// Token.
    #[arg(long)]
    token: String,
    /// Bucket (must exist).
    #[arg(long)]
    bucket: String,
    /// Label of the row (e.g. the database).
    #[arg(long)]
    label: String,
    /// Objects in all.
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Object size in bytes.
    #[arg(long, default_value_t = 4096)]
    size: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

async fn phase(args: &Arc<Args>, http: &reqwest::Client, put: bool) -> Result<(f64, Vec<Duration>)> {
    let started = Instant::now();
    let per = args.count / args.concurrency;
    let tasks = (0..args.concurrency).map(|c| {
        let (args, http) = (args.clone(), http.clone());
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            let mut body = vec![0u8; args.size];
            for i in 0..per {
                let url = format!("{}/v1/buckets/{}/objects/bench/{c}/{i}", args.server, args.bucket);
                let t = Instant::now();
                let r = if put {
                    rand::rng().fill_bytes(&mut body);
                    http.put(&url).bearer_auth(&args.token).body(body.clone()).send().await?
                } else {
                    http.get(&url).bearer_auth(&args.token).send().await?
                };
                let status = r.status();
                let bytes = r.bytes().await?;
                if !status.is_success() || (!put && bytes.len() != args.size) {
                    bail!("{} {url}: {status}", if put { "PUT" } else { "GET" });
                }
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        })
    });
    let mut all = Vec::new();
    for r in join_all(tasks).await {
        all.extend(r??);
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    Ok((all.len() as f64 / secs, all))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let (put_rate, put_lat) = phase(&args, &http, true).await?;
    let (get_rate, get_lat) = phase(&args, &http, false).await?;
    println!(
        "| {} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} |",
        args.label,
        put_rate,
        percentile(&put_lat, 0.5),
        percentile(&put_lat, 0.99),
        get_rate,
        percentile(&get_lat, 0.5),
        percentile(&get_lat, 0.99),
    );
    Ok(())
}
