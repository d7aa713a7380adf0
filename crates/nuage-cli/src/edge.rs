//! `nuage edge`: runs an edge cache in front of a link server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use nuage_edge::{Edge, EdgeConfig, Size};

use crate::session::Globals;

#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// The link server whose chunks it serves, e.g. http://127.0.0.1:8420.
    #[arg(long, env = "NUAGE_ORIGIN")]
    origin: Option<String>,
    /// Address to listen on (default 127.0.0.1:8421).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Disk tier folder (default ./nuage-edge-cache).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Disk tier size, e.g. 10GiB (default 10GiB).
    #[arg(long)]
    cache_size: Option<Size>,
    /// Memory tier size, e.g. 256MiB (default 256MiB).
    #[arg(long)]
    memory: Option<Size>,
    /// Region name, shown at /healthz.
    #[arg(long)]
    region: Option<String>,
}

/// The settings: the `--config` file (TOML, docs/configuration.md) under the flags.
fn config(cli: &Globals, args: &EdgeArgs) -> Result<EdgeConfig> {
    let mut c = match &cli.config {
        Some(path) => EdgeConfig::load(path)?,
        None => EdgeConfig::default(),
    };
    if let Some(o) = &args.origin {
        c.origin = o.clone();
    }
    if let Some(l) = args.listen {
        c.listen = l;
    }
    if let Some(d) = &args.cache_dir {
        c.cache_dir = d.clone();
    }
    if let Some(s) = args.cache_size {
        c.cache_size = s;
    }
    if let Some(m) = args.memory {
        c.memory = m;
    }
    if let Some(r) = &args.region {
        c.region = Some(r.clone());
    }
    Ok(c)
}

pub async fn edge(cli: &Globals, args: &EdgeArgs) -> Result<()> {
    let config = config(cli, args)?;
    let listen = config.listen;
    let edge = Edge::open(config.clone()).await?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    println!("nuage edge serving on http://{addr}");
    println!("  origin:    {}", config.origin);
    println!(
        "  cache:     {} ({} bytes on disk, {} in memory)",
        config.cache_dir.display(),
        config.cache_size.0,
        config.memory.0
    );
    if config.providers.is_empty() {
        println!("  misses:    fetched from the origin");
    } else {
        let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        println!("  misses:    fetched from the providers {}, else the origin", names.join(", "));
    }
    println!("Clients use it once the server lists it: nuage serve --edge http://{addr}");
    nuage_edge::serve_on(edge, listener).await
}
