//! Cold misses through a cache: every key of a key file ("ADDRESS GRANT" per line) asked
//! once, CONCURRENCY at a time, from an edge (`/chunks/ADDRESS` with the grant) or from
//! nginx (`/ch/AB/ADDRESS`). Every body is checked against its address. Prints one table
//! row: requests/s, MB/s, p50 and p99 latency. Run by `bench/edge-vs-nginx.sh`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use nuage_core::Address;

#[derive(Debug, Parser)]
struct Args {
    /// Base URL of the cache.
    #[arg(long)]
    url: String,
    /// `edge` or `nginx`.
    #[arg(long)]
    target: String,
    /// The key file.
    #[arg(long)]
    keys: std::path::PathBuf,
    /// Label of the row.
    #[arg(long)]
    label: String,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.keys).with_context(|| format!("{}", args.keys.display()))?;
    let keys: Vec<(Address, String)> = text
        .lines()
        .map(|l| {
            let (a, g) = l.split_once(' ').context("ADDRESS GRANT")?;
            Ok((a.parse::<Address>()?, g.to_owned()))
        })
        .collect::<Result<_>>()?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let url = Arc::new(args.url.trim_end_matches('/').to_owned());
    let started = Instant::now();
    let results: Vec<Result<(Duration, usize)>> = futures::stream::iter(keys)
        .map(|(address, grant)| {
            let (http, url, target) = (http.clone(), url.clone(), args.target.clone());
            async move {
                let hex = address.to_hex();
                let request = if target == "edge" {
                    http.get(format!("{url}/chunks/{hex}")).header("x-nuage-grant", grant)
                } else {
                    http.get(format!("{url}/ch/{}/{hex}", &hex[..2]))
                };
                let t = Instant::now();
                let r = request.send().await?;
                if !r.status().is_success() {
                    bail!("{hex}: {}", r.status());
                }
                let body = r.bytes().await?;
                let took = t.elapsed();
                address.verify(&body)?;
                Ok((took, body.len()))
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let mut bytes = 0;
    for r in results {
        let (took, len) = r?;
        latencies.push(took);
        bytes += len;
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    println!(
        "| {} | {:.0} | {:.0} | {:.1} | {:.1} | {} |",
        args.label,
        latencies.len() as f64 / elapsed,
        bytes as f64 / elapsed / 1e6,
        pct(0.5),
        pct(0.99),
        latencies.len()
    );
    Ok(())
}
