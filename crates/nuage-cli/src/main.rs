//! The `nuage` command: parses arguments, calls the libraries, prints results.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use nuage_blob::{ChunkStore, Placement, Provider, ProviderConfig, ProviderKind};
use nuage_client::{IngestStats, Snapshot};
use nuage_core::chunk::{Compression, SealOptions};
use nuage_core::pipeline::Pipeline;
use nuage_core::{ChunkerConfig, ConvergenceSecret};
use serde::Deserialize;

/// nuage: a storage cloud that keeps links, with the bytes encrypted on providers you rent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Data folder: the convergence secret, snapshots and (by default) the chunks.
    #[arg(long, env = "NUAGE_DATA_DIR", default_value = "./nuage-data", global = true)]
    data_dir: PathBuf,
    /// Configuration file (providers, placement, chunking); see docs/configuration.md.
    #[arg(long, env = "NUAGE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Chunk, encrypt and store a file or folder; records a snapshot.
    Ingest {
        /// File or folder.
        path: PathBuf,
    },
    /// Write the files of a snapshot back under DEST, verifying every chunk.
    Restore {
        /// Snapshot name (as printed by `ingest` and `snapshots`) or path.
        snapshot: String,
        /// Destination folder.
        dest: PathBuf,
    },
    /// List the snapshots.
    Snapshots,
}

/// The TOML configuration file. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Providers; default: one local folder, `<data dir>/chunks`.
    #[serde(default)]
    providers: Vec<ProviderConfig>,
    #[serde(default)]
    placement: PlacementConfig,
    #[serde(default)]
    chunking: ChunkingConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacementConfig {
    /// Copies of each chunk, on distinct providers (default 1).
    #[serde(default = "one")]
    replicas: usize,
    /// Copies that must be stored for a write to succeed (default: all replicas).
    write_quorum: Option<usize>,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig { replicas: 1, write_quorum: None }
    }
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkingConfig {
    min_size: usize,
    avg_size: usize,
    max_size: usize,
    /// zstd level, or 0 for no compression (default 1).
    zstd_level: i32,
}

impl Default for ChunkingConfig {
    fn default() -> Self {
        let c = ChunkerConfig::default();
        ChunkingConfig { min_size: c.min_size, avg_size: c.avg_size, max_size: c.max_size, zstd_level: 1 }
    }
}

fn load_config(cli: &Cli) -> Result<Config> {
    let Some(path) = &cli.config else { return Ok(Config::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
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

async fn open_store(cli: &Cli, config: &Config) -> Result<ChunkStore> {
    let configs = if config.providers.is_empty() {
        vec![ProviderConfig::new("local", ProviderKind::Fs { root: cli.data_dir.join("chunks") })]
    } else {
        config.providers.clone()
    };
    let mut providers = Vec::new();
    for c in configs {
        let name = c.name.clone();
        providers.push(Provider::open(c).await.with_context(|| format!("opening provider {name}"))?);
    }
    let p = &config.placement;
    let placement = Placement::replicas(p.replicas).with_quorum(p.write_quorum.unwrap_or(p.replicas));
    Ok(ChunkStore::new(providers, placement)?)
}

fn pipeline(cli: &Cli, config: &Config) -> Result<Pipeline> {
    let c = &config.chunking;
    let chunker = ChunkerConfig { min_size: c.min_size, avg_size: c.avg_size, max_size: c.max_size };
    chunker.validate()?;
    let compression = if c.zstd_level == 0 { Compression::None } else { Compression::Zstd(c.zstd_level) };
    Ok(Pipeline { chunker, seal: SealOptions { compression }, secret: secret(&cli.data_dir)? })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nuage: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = load_config(&cli)?;
    let snapshots = cli.data_dir.join("snapshots");
    match &cli.command {
        Command::Ingest { path } => {
            let pipeline = pipeline(&cli, &config)?;
            let store = open_store(&cli, &config).await?;
            let tty = std::io::stderr().is_terminal() && !cli.json;
            let started = std::time::Instant::now();
            let show = |s: &IngestStats| {
                if tty {
                    let secs = started.elapsed().as_secs_f64().max(1e-9);
                    eprint!(
                        "\r{} files, {:.1} MB read ({:.0} MB/s), {} chunks, {:.1} MB new   ",
                        s.files,
                        mb(s.bytes_read),
                        mb(s.bytes_read) / secs,
                        s.chunks,
                        mb(s.bytes_written)
                    );
                }
            };
            let done = nuage_client::ingest(path, &pipeline, &store, show).await?;
            if tty {
                eprintln!();
            }
            let name = format!(
                "{}",
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis()
            );
            done.snapshot.write_to(&snapshots.join(&name)).context("writing the snapshot")?;
            let s = done.stats;
            let secs = done.elapsed.as_secs_f64();
            if cli.json {
                let j = serde_json::json!({
                    "snapshot": name, "files": s.files, "bytes_read": s.bytes_read, "chunks": s.chunks,
                    "chunks_new": s.chunks_new, "bytes_written": s.bytes_written, "seconds": secs,
                });
                println!("{j}");
            } else {
                println!(
                    "snapshot {name}: {} files, {:.1} MB in {:.1} s ({:.0} MB/s); {} chunks, {} new, {:.1} MB written",
                    s.files,
                    mb(s.bytes_read),
                    secs,
                    mb(s.bytes_read) / secs.max(1e-9),
                    s.chunks,
                    s.chunks_new,
                    mb(s.bytes_written)
                );
            }
        }
        Command::Restore { snapshot, dest } => {
            let path =
                if Path::new(snapshot).exists() { PathBuf::from(snapshot) } else { snapshots.join(snapshot) };
            let snap =
                Snapshot::read_from(&path).with_context(|| format!("reading snapshot {}", path.display()))?;
            let store = open_store(&cli, &config).await?;
            let bytes = nuage_client::restore(&snap, &store, dest).await?;
            if cli.json {
                println!("{}", serde_json::json!({"files": snap.files.len(), "bytes": bytes}));
            } else {
                println!("restored {} files, {:.1} MB, into {}", snap.files.len(), mb(bytes), dest.display());
            }
        }
        Command::Snapshots => {
            let mut names: Vec<String> = match std::fs::read_dir(&snapshots) {
                Ok(dir) => {
                    dir.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => bail!("reading {}: {e}", snapshots.display()),
            };
            names.retain(|n| !n.ends_with(".tmp"));
            names.sort();
            if cli.json {
                println!("{}", serde_json::json!(names));
            } else {
                for n in names {
                    println!("{n}");
                }
            }
        }
    }
    Ok(())
}
