//! `ingest`, `restore`, `snapshots`: the chunk path straight to the configured providers,
//! without a server (the benchmark of the data path, and a local backup tool).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nuage_blob::{ChunkStore, Provider, ProviderConfig, ProviderKind};
use nuage_core::ConvergenceSecret;
use nuage_core::pipeline::Pipeline;
use nuage_ingest::{IngestStats, Snapshot};
use nuage_server::ServerConfig;
use nuage_service::ServiceConfig;

use crate::session::Globals;
use crate::session::{rate, size};

/// The configuration, with `--data-dir` applied.
pub fn config(cli: &Globals) -> Result<ServerConfig> {
    let mut config = match &cli.config {
        Some(path) => ServerConfig::load(path)?,
        None => ServerConfig::default(),
    };
    config.apply_env()?;
    if let Some(d) = &cli.data_dir {
        config.service.data_dir = d.clone();
    }
    Ok(config)
}

/// The convergence secret of this data folder, created on first use (mode 0600).
fn secret(data_dir: &Path) -> Result<ConvergenceSecret> {
    let path = data_dir.join("secret");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes: [u8; 32] =
                bytes.try_into().map_err(|_| anyhow::anyhow!("{} is not 32 bytes long", path.display()))?;
            Ok(ConvergenceSecret::from_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            let bytes: [u8; 32] = rand::random();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&path).with_context(|| format!("creating {}", path.display()))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            Ok(ConvergenceSecret::from_bytes(bytes))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The providers `ingest` and `restore` write to and read from: by default a folder of their
/// own, `<data_dir>/ingest`, never the server's `<data_dir>/chunks`. A server's collector
/// deletes the chunk objects its index does not know, and an ingest's are such objects:
/// sharing a root with `nuage serve` would hand them to it. So providers named in the
/// configuration are refused when that configuration also names a server's database.
fn ingest_providers(config: &ServiceConfig) -> Result<Vec<ProviderConfig>> {
    if config.providers.is_empty() {
        let root = config.data_dir.join("ingest");
        return Ok(vec![ProviderConfig::new("local", ProviderKind::Fs { root })]);
    }
    let server_db = config.database_url.is_some() || config.data_dir.join("meta.db").exists();
    if server_db {
        bail!(
            "the configuration's providers belong to a nuage server (it names a database), whose \
             garbage collector deletes chunks that no version references, as ingested chunks are; \
             give ingest a configuration of its own, with other providers"
        );
    }
    Ok(config.providers.clone())
}

async fn open_store(config: &ServiceConfig) -> Result<ChunkStore> {
    let mut providers = Vec::new();
    for c in ingest_providers(config)? {
        let name = c.name.clone();
        providers.push(Provider::open(c).await.with_context(|| format!("opening provider {name}"))?);
    }
    Ok(ChunkStore::new(providers, config.buckets.placement())?)
}

/// The newest snapshot of `root` (an absolute path), if any.
fn parent_snapshot(dir: &Path, root: &str) -> Result<Option<(String, Snapshot)>> {
    for name in snapshot_names(dir)?.into_iter().rev() {
        let path = dir.join(&name);
        let snap =
            Snapshot::read_from(&path).with_context(|| format!("reading snapshot {}", path.display()))?;
        if snap.root == root {
            return Ok(Some((name, snap)));
        }
    }
    Ok(None)
}

/// Snapshot names, oldest first (they are creation times in ms).
fn snapshot_names(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(d) => d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => bail!("reading {}: {e}", dir.display()),
    };
    names.retain(|n| !n.ends_with(".tmp"));
    names.sort_by_key(|n| (n.len(), n.clone()));
    Ok(names)
}

pub async fn ingest(cli: &Globals, path: &Path, full: bool) -> Result<()> {
    let config = config(cli)?.service;
    let snapshots = config.data_dir.join("snapshots");
    let root = std::path::absolute(path)?.to_string_lossy().into_owned();
    let parent = if full { None } else { parent_snapshot(&snapshots, &root)? };
    if let Some((name, _)) = &parent
        && !cli.json
    {
        eprintln!("parent snapshot {name}: unchanged files are not read again (--full reads them)");
    }
    let pipeline = Pipeline {
        chunker: config.chunking.chunker()?,
        seal: config.chunking.seal(),
        secret: secret(&config.data_dir)?,
    };
    let store = open_store(&config).await?;
    let tty = std::io::stderr().is_terminal() && !cli.json;
    let started = std::time::Instant::now();
    let show = |s: &IngestStats| {
        if tty {
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            eprint!(
                "\r{} files, {} read ({}), {} chunks, {} new   ",
                s.files,
                size(s.bytes_read),
                rate(s.bytes_read, secs),
                s.chunks,
                size(s.bytes_written)
            );
        }
    };
    let done = nuage_ingest::ingest(path, parent.map(|(_, s)| s), &pipeline, &store, show).await?;
    if tty {
        eprintln!();
    }
    let name = format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis());
    done.snapshot.write_to(&snapshots.join(&name)).context("writing the snapshot")?;
    let s = done.stats;
    let secs = done.elapsed.as_secs_f64();
    if cli.json {
        let j = serde_json::json!({
            "snapshot": name, "files": s.files, "bytes_read": s.bytes_read, "chunks": s.chunks,
            "chunks_new": s.chunks_new, "bytes_written": s.bytes_written, "seconds": secs,
            "files_unchanged": s.files_unchanged, "bytes_unchanged": s.bytes_unchanged,
        });
        println!("{j}");
    } else {
        println!(
            "snapshot {name}: {} files ({} unchanged, not read), {} read in {secs:.1} s ({}); \
             {} chunks, {} new, {} written",
            s.files,
            s.files_unchanged,
            size(s.bytes_read),
            rate(s.bytes_read, secs),
            s.chunks,
            s.chunks_new,
            size(s.bytes_written)
        );
    }
    Ok(())
}

pub async fn restore(cli: &Globals, snapshot: &str, dest: &Path) -> Result<()> {
    let config = config(cli)?.service;
    let path = if Path::new(snapshot).exists() {
        PathBuf::from(snapshot)
    } else {
        config.data_dir.join("snapshots").join(snapshot)
    };
    let snap = Snapshot::read_from(&path).with_context(|| format!("reading snapshot {}", path.display()))?;
    let store = open_store(&config).await?;
    let bytes = nuage_ingest::restore(&snap, &store, dest).await?;
    if cli.json {
        println!("{}", serde_json::json!({"files": snap.files.len(), "bytes": bytes}));
    } else {
        println!("restored {} files, {}, into {}", snap.files.len(), size(bytes), dest.display());
    }
    Ok(())
}

pub fn snapshots(cli: &Globals) -> Result<()> {
    let names = snapshot_names(&config(cli)?.service.data_dir.join("snapshots"))?;
    if cli.json {
        println!("{}", serde_json::json!(names));
    } else {
        for n in names {
            println!("{n}");
        }
    }
    Ok(())
}
