//! One S3 load driver for every server `bench/s3.sh` compares (nuage, Garage, s3s-fs), so
//! that the figures differ by the server only: path-style requests signed with SigV4 in
//! headers (`UNSIGNED-PAYLOAD`), over one connection pool with CONCURRENCY requests in
//! flight. Each run prints one table row:
//!
//! - `small`: COUNT objects of SIZE bytes PUT (distinct keys, random content), then GET;
//!   requests per second and p50/p99 latency of each phase.
//! - `big`: one object of MIB MiB sent as a multipart upload (PART_MIB parts, CONCURRENCY at
//!   once) and fetched back in ranges of PART_MIB; MB/s each way.
//! - `list`: COUNT empty objects PUT (not timed), then every key listed with ListObjectsV2
//!   pages of 1,000; keys per second.
//! - `mb`: creates the bucket.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use rand::RngCore;
use reqwest::Method;
use sha2::{Digest, Sha256};

#[derive(Debug, Parser)]
struct Args {
    /// Endpoint, e.g. http://127.0.0.1:8430.
    #[arg(long)]
    endpoint: String,
    /// Access key id.
    #[arg(long)]
    key: String,
    /// Secret key.
    #[arg(long)]
    secret: String,
    /// Region the server signs for.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Bucket (must exist).
    #[arg(long)]
    bucket: String,
    /// Label of the row.
    #[arg(long)]
    label: String,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[command(subcommand)]
    load: Load,
}

#[derive(Debug, Subcommand)]
enum Load {
    /// Small objects: PUT then GET.
    Small {
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        #[arg(long, default_value_t = 4096)]
        size: usize,
    },
    /// One big object: a multipart PUT, then ranged GETs.
    Big {
        #[arg(long, default_value_t = 1024)]
        mib: usize,
        #[arg(long, default_value_t = 8)]
        part_mib: usize,
    },
    /// Creates the bucket (prints nothing).
    Mb,
    /// A listing of COUNT keys.
    List {
        #[arg(long, default_value_t = 100_000)]
        count: usize,
    },
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC-SHA256 (RFC 2104): the key fits in one 64-byte block here.
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// `YYYYMMDDTHHMMSSZ` of now.
fn amz_date() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64;
    let (y, m, d) = nuage_core::date::civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// Percent-encoding as SigV4 wants it (unreserved characters kept; `/` kept in paths).
fn encode(s: &str, path: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (path && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct S3 {
    http: reqwest::Client,
    endpoint: String,
    host: String,
    key: String,
    secret: String,
    region: String,
    bucket: String,
}

impl S3 {
    /// A signed request for `key` of the bucket (or the bucket itself, for an empty key),
    /// with these query parameters.
    fn request(&self, method: Method, key: &str, query: &[(&str, String)]) -> reqwest::RequestBuilder {
        let path =
            if key.is_empty() { format!("/{}", self.bucket) } else { format!("/{}/{key}", self.bucket) };
        let path = encode(&path, true);
        let mut q: Vec<(String, String)> =
            query.iter().map(|(k, v)| (encode(k, false), encode(v, false))).collect();
        q.sort();
        let query = q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let date = amz_date();
        let day = &date[..8];
        let canonical = format!(
            "{method}\n{path}\n{query}\nhost:{}\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:{date}\n\n\
             host;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD",
            self.host
        );
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut k = hmac(format!("AWS4{}", self.secret).as_bytes(), day.as_bytes());
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            k = hmac(&k, part.as_bytes());
        }
        let signature = hex::encode(hmac(&k, to_sign.as_bytes()));
        let url = if query.is_empty() {
            format!("{}{path}", self.endpoint)
        } else {
            format!("{}{path}?{query}", self.endpoint)
        };
        self.http
            .request(method, url)
            .header("x-amz-date", date)
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
                     Signature={signature}",
                    self.key
                ),
            )
    }

    async fn send(&self, r: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response> {
        let r = r.send().await.with_context(|| what.to_owned())?;
        if !r.status().is_success() {
            let status = r.status();
            bail!("{what}: {status}: {}", r.text().await.unwrap_or_default());
        }
        Ok(r)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Runs `count` requests, `concurrency` at a time, and gives the rate and the latencies.
async fn phase<F, Fut>(count: usize, concurrency: usize, one: F) -> Result<(f64, Vec<Duration>)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let started = Instant::now();
    let mut lat = Vec::with_capacity(count);
    let mut runs = futures::stream::iter(0..count)
        .map(|i| {
            let f = one(i);
            async move {
                let t = Instant::now();
                f.await.map(|()| t.elapsed())
            }
        })
        .buffer_unordered(concurrency);
    while let Some(r) = runs.next().await {
        lat.push(r?);
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    Ok((count as f64 / secs, lat))
}

/// The text of the first `<name>` element of an XML answer.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

/// XML's five entities replaced by their characters.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let host = args.endpoint.split("://").nth(1).unwrap_or(&args.endpoint).trim_end_matches('/').to_owned();
    let s3 = Arc::new(S3 {
        http: reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?,
        endpoint: args.endpoint.trim_end_matches('/').to_owned(),
        host,
        key: args.key.clone(),
        secret: args.secret.clone(),
        region: args.region.clone(),
        bucket: args.bucket.clone(),
    });
    let n = args.concurrency;
    match args.load {
        Load::Small { count, size } => {
            let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
                (0..n)
                    .map(|_| {
                        let mut b = vec![0u8; size];
                        rand::rng().fill_bytes(&mut b);
                        bytes::Bytes::from(b)
                    })
                    .collect(),
            );
            let put = phase(count, n, |i| {
                let (s3, bodies) = (s3.clone(), bodies.clone());
                async move {
                    // Distinct content per key: the first 8 bytes carry the key's number.
                    let mut body = bodies[i % bodies.len()].to_vec();
                    body[..8.min(size)].copy_from_slice(&(i as u64).to_le_bytes()[..8.min(size)]);
                    let r = s3.request(Method::PUT, &format!("small/{size}/{i}"), &[]).body(body);
                    s3.send(r, "PUT").await.map(|_| ())
                }
            })
            .await?;
            let get = phase(count, n, |i| {
                let s3 = s3.clone();
                async move {
                    let r =
                        s3.send(s3.request(Method::GET, &format!("small/{size}/{i}"), &[]), "GET").await?;
                    let got = r.bytes().await?.len();
                    if got != size {
                        bail!("GET small/{size}/{i}: {got} bytes, not {size}");
                    }
                    Ok(())
                }
            })
            .await?;
            println!(
                "| {} | {} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} |",
                args.label,
                if size >= 1024 { format!("{} KiB", size / 1024) } else { format!("{size} B") },
                put.0,
                percentile(&put.1, 0.5),
                percentile(&put.1, 0.99),
                get.0,
                percentile(&get.1, 0.5),
                percentile(&get.1, 0.99),
            );
        }
        Load::Big { mib, part_mib } => {
            let part = part_mib << 20;
            let parts = mib.div_ceil(part_mib);
            let mut one = vec![0u8; part];
            rand::rng().fill_bytes(&mut one);
            let one = bytes::Bytes::from(one);
            let started = Instant::now();
            let created =
                s3.send(s3.request(Method::POST, "big.bin", &[("uploads", String::new())]), "create").await?;
            let xml = created.text().await?;
            let id = element(&xml, "UploadId").context("no UploadId")?.to_owned();
            let etags = Arc::new(std::sync::Mutex::new(vec![String::new(); parts]));
            let total = mib << 20;
            phase(parts, n, |i| {
                let (s3, id, etags, one) = (s3.clone(), id.clone(), etags.clone(), one.clone());
                async move {
                    let len = part.min(total - i * part);
                    // Each part its own content: its number in the first bytes.
                    let mut body = one[..len].to_vec();
                    body[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    let q = [("partNumber", (i + 1).to_string()), ("uploadId", id)];
                    let r = s3.send(s3.request(Method::PUT, "big.bin", &q).body(body), "UploadPart").await?;
                    let tag = r.headers().get("etag").and_then(|v| v.to_str().ok()).context("no ETag")?;
                    etags.lock().expect("not poisoned")[i] = tag.to_owned();
                    Ok(())
                }
            })
            .await?;
            let list: String = etags
                .lock()
                .expect("not poisoned")
                .iter()
                .enumerate()
                .map(|(i, t)| format!("<Part><PartNumber>{}</PartNumber><ETag>{t}</ETag></Part>", i + 1))
                .collect();
            let body = format!("<CompleteMultipartUpload>{list}</CompleteMultipartUpload>");
            let r = s3.request(Method::POST, "big.bin", &[("uploadId", id)]).body(body);
            let answer = s3.send(r, "complete").await?.text().await?;
            if answer.contains("<Error>") {
                bail!("complete: {answer}");
            }
            let up = started.elapsed().as_secs_f64();
            let got = Arc::new(AtomicUsize::new(0));
            let started = Instant::now();
            phase(parts, n, |i| {
                let (s3, got) = (s3.clone(), got.clone());
                async move {
                    let end = (part * (i + 1)).min(total) - 1;
                    let r = s3
                        .request(Method::GET, "big.bin", &[])
                        .header("range", format!("bytes={}-{end}", i * part));
                    let mut body = s3.send(r, "GET").await?.bytes_stream();
                    while let Some(b) = body.next().await {
                        got.fetch_add(b?.len(), Ordering::Relaxed);
                    }
                    Ok(())
                }
            })
            .await?;
            let down = started.elapsed().as_secs_f64();
            if got.load(Ordering::Relaxed) != total {
                bail!("GET: {} bytes, not {total}", got.load(Ordering::Relaxed));
            }
            let mb = total as f64 / 1e6;
            println!(
                "| {} | {mib} MiB in {part_mib} MiB parts | {:.0} | {:.0} |",
                args.label,
                mb / up,
                mb / down
            );
        }
        Load::Mb => {
            s3.send(s3.request(Method::PUT, "", &[]), "CreateBucket").await?;
        }
        Load::List { count } => {
            phase(count, n, |i| {
                let s3 = s3.clone();
                async move {
                    let r = s3.request(Method::PUT, &format!("list/{i:07}"), &[]).body(Vec::new());
                    s3.send(r, "PUT").await.map(|_| ())
                }
            })
            .await?;
            let started = Instant::now();
            let mut listed = 0usize;
            let mut token: Option<String> = None;
            loop {
                let mut q = vec![("list-type", "2".to_owned()), ("prefix", "list/".to_owned())];
                if let Some(t) = &token {
                    q.push(("continuation-token", t.clone()));
                }
                let xml = s3.send(s3.request(Method::GET, "", &q), "ListObjectsV2").await?.text().await?;
                listed += xml.matches("<Key>").count();
                match element(&xml, "NextContinuationToken") {
                    Some(t) if element(&xml, "IsTruncated") == Some("true") => token = Some(unescape(t)),
                    _ => break,
                }
            }
            let secs = started.elapsed().as_secs_f64();
            if listed != count {
                bail!("listed {listed} keys, not {count}");
            }
            println!("| {} | {count} keys | {:.2} s | {:.0} keys/s |", args.label, secs, count as f64 / secs);
        }
    }
    Ok(())
}
