//! What every client command works with: the global options, the login `nuage login`
//! saved, the client they make of both, and how sizes, rates, dates and progress are shown.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use nuage_client::Client;
use nuage_client::api::Progress;
use serde::{Deserialize, Serialize};

/// The options every command takes (`--server`, `--json`, …).
#[derive(Debug, Args)]
pub struct Globals {
    /// Data folder of the server (and of `ingest`): database, local chunks.
    #[arg(long, env = "NUAGE_DATA_DIR", global = true)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Server configuration file (TOML); see docs/configuration.md.
    #[arg(long, env = "NUAGE_CONFIG", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Server URL for client commands (default: the one saved by `nuage login`).
    #[arg(long, env = "NUAGE_SERVER", global = true)]
    pub(crate) server: Option<String>,
    /// Token for client commands (default: the one saved by `nuage login`).
    #[arg(long, env = "NUAGE_TOKEN", global = true, hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// This device's region: downloads read through the server's edges of that region
    /// first (else the nearest by round-trip time).
    #[arg(long, env = "NUAGE_REGION", global = true)]
    pub(crate) region: Option<String>,
    /// How long client commands retry temporary failures (the server down or restarting, a
    /// connection cut, 502/503/504) before they give up, in seconds; 0 never retries.
    #[arg(long, env = "NUAGE_RETRY_WINDOW", global = true, default_value_t = 120, value_name = "SECS")]
    pub(crate) retry_window: u64,
    /// Print results as JSON (and no progress bars); errors too, on standard error.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// What `nuage login` saves: `$NUAGE_CLIENT_CONFIG`, else `$XDG_CONFIG_HOME/nuage/client.toml`,
/// else `~/.config/nuage/client.toml` (mode 0600).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Saved {
    pub(crate) server: Option<String>,
    pub(crate) token: Option<String>,
}

pub(crate) fn saved_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("NUAGE_CLIENT_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    Ok(user_dir("XDG_CONFIG_HOME", ".config")?.join("client.toml"))
}

/// nuage's folder under `$XDG_VAR`, else under `~/HOME_SUB`.
pub(crate) fn user_dir(xdg_var: &str, home_sub: &str) -> Result<PathBuf> {
    let base = match std::env::var_os(xdg_var).filter(|p| !p.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(home_sub),
    };
    Ok(base.join("nuage"))
}

pub(crate) fn load_saved() -> Result<Saved> {
    let path = saved_path()?;
    match std::fs::read_to_string(&path) {
        Ok(t) => toml::from_str(&t).with_context(|| format!("parsing {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub(crate) fn store_saved(saved: &Saved) -> Result<PathBuf> {
    use std::io::Write;
    let path = saved_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("toml.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(toml::to_string(saved)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A client from `--server`/`--token` (or their variables), else from the saved login.
pub(crate) fn client(cli: &Globals) -> Result<Client> {
    let saved = load_saved()?;
    let server =
        cli.server.clone().or(saved.server).context("no server: run `nuage login --server URL` first")?;
    let token = cli.token.clone().or(saved.token).context("not logged in: run `nuage login` first")?;
    Ok(Client::new(&server, Some(token))?
        .with_region(cli.region.clone())
        .with_retry_window(Duration::from_secs(cli.retry_window)))
}

/// `BUCKET[/KEY]`.
pub(crate) fn split_target(target: &str) -> Result<(&str, &str)> {
    let target = target.strip_prefix("nuage://").unwrap_or(target);
    let (bucket, key) = target.split_once('/').unwrap_or((target, ""));
    if bucket.is_empty() {
        bail!("{target:?}: expected BUCKET/KEY");
    }
    Ok((bucket, key))
}

pub(crate) fn bar(cli: &Globals, total: u64) -> ProgressBar {
    if cli.json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A progress callback that adds each file's bytes to a shared bar.
pub(crate) fn file_progress(bar: &ProgressBar) -> Progress {
    let bar = bar.clone();
    let last = Arc::new(std::sync::atomic::AtomicU64::new(0));
    Arc::new(move |done| {
        let before = last.swap(done, std::sync::atomic::Ordering::Relaxed);
        bar.inc(done.saturating_sub(before));
        true
    })
}

/// Unix milliseconds as `YYYY-MM-DD hh:mm:ss UTC`.
pub(crate) fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (year, month, day) = nuage_core::date::civil(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// One line of an access-key listing (`nuage access-key ls`, `nuage admin key ls`): id,
/// name, scope and access, state.
pub(crate) fn access_key_line(
    id: &str,
    name: &str,
    bucket: Option<&str>,
    read_only: bool,
    revoked_at: Option<i64>,
) -> String {
    let scope = bucket.map_or("every bucket".to_owned(), |b| format!("bucket {b}"));
    let access = if read_only { "read-only" } else { "read-write" };
    let state = revoked_at.map_or("active".to_owned(), |at| format!("revoked {}", utc(at)));
    format!("{id}\t{name}\t{scope}, {access}\t{state}")
}

/// Bytes in the one unit system of the CLI (IEC: KiB, MiB, GiB, as the progress bars and
/// the configuration sizes), e.g. `340 B`, `1.5 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ if value < 10.0 => format!("{value:.2} {}", UNITS[unit]),
        _ if value < 100.0 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.0} {}", UNITS[unit]),
    }
}

/// A transfer rate, bytes over seconds, e.g. `85.3 MiB/s`.
pub(crate) fn rate(bytes: u64, secs: f64) -> String {
    format!("{}/s", size((bytes as f64 / secs.max(1e-3)) as u64))
}
