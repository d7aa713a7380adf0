//! `nuage serve` and `nuage admin …`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use nuage_meta::{Meta, ProviderState, WorkerState};
use nuage_server::{Nuage, ServerConfig, auth, workers};
use nuage_service::ServiceConfig;
use nuage_service::providers::Registry;

use crate::local::config;
use crate::session::Globals;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides the file and NUAGE_LISTEN).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address of the S3 endpoint, or `off` (overrides the file's `[s3] listen` and
    /// NUAGE_S3_LISTEN; default with no configuration file: 127.0.0.1:8430).
    #[arg(long, value_name = "ADDR|off")]
    s3_listen: Option<S3Listen>,
    /// `sqlite:PATH` or `postgres://…` (overrides the file and NUAGE_DATABASE_URL).
    #[arg(long)]
    database_url: Option<String>,
    /// An edge cache clients may read through: URL or URL=REGION (repeatable; adds to the
    /// file's `[[edges]]`).
    #[arg(long = "edge", value_name = "URL[=REGION]")]
    edges: Vec<nuage_server::EdgeLink>,
}

/// `--s3-listen`: an address, or `off`.
#[derive(Debug, Clone)]
struct S3Listen(Option<SocketAddr>);

impl std::str::FromStr for S3Listen {
    type Err = anyhow::Error;
    fn from_str(v: &str) -> Result<Self> {
        nuage_server::parse_s3_listen(v).map(S3Listen)
    }
}

#[derive(Debug, Subcommand)]
pub enum Admin {
    /// Create the server's database where `nuage serve` would open it (configuration,
    /// `--data-dir`, `NUAGE_DATA_DIR`; default ./nuage-data/meta.db) and apply the schema.
    /// The other admin commands open an existing database only.
    Init,
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCmd),
    /// The background workers (passes, progress and ETA, what they found) and the
    /// placements by provider and state, from the database.
    Status,
    /// Read every placement back now (one whole pass), verify it, record what is bad.
    Scrub,
    /// Bring every chunk back to its policy now (one whole pass), from good copies.
    Repair,
    /// Collect garbage now (one whole pass): delete from every provider the chunks no
    /// version has referenced for `[workers] gc_grace_secs`, and the chunk objects of
    /// uploads that never committed, except those an upload in progress leases.
    Gc,
    /// Apply the buckets' lifecycle rules now (one whole pass; `nuage serve` does it every
    /// `[workers] lifecycle_every_secs`): expire, remove and abort what they say.
    Lifecycle,
    /// The providers: list them, drain one (move all its chunks to the others while the
    /// server serves), or call a drain off.
    #[command(subcommand)]
    Provider(ProviderCmd),
    /// S3 access keys of an account: make one (its secret shown once), list them, revoke
    /// one. A key may be limited to one bucket and to reads.
    #[command(subcommand)]
    Key(KeyCmd),
    /// The workers' paces: without WORKER, each one in effect; with WORKER and RATE, set it
    /// for every server of the deployment, whose running passes follow within about three
    /// seconds. RATE is bytes per second (deletions per second for gc), with an optional
    /// suffix k, M, G (10^3…) or Ki, Mi, Gi (2^10…), `0` for unpaced, or `default` for the
    /// configured `[workers] *_per_sec` again.
    Pace {
        /// scrub, repair, gc or migrate.
        worker: Option<String>,
        /// The new pace.
        rate: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProviderCmd {
    /// Every provider of the registry, its state and its placements.
    Ls,
    /// Start moving every chunk off NAME: the running server stops placing new chunks
    /// there within two seconds, its migrate worker copies each chunk to another provider,
    /// verifies the copy, then deletes the old one; progress in `nuage admin status`. The
    /// state becomes `drained` when nothing is left.
    Drain {
        /// Provider name.
        name: String,
    },
    /// Make NAME take new chunks again (calls a drain off; what moved stays moved).
    Activate {
        /// Provider name.
        name: String,
    },
    /// Add a provider while servers run: FILE holds its settings, the keys of a
    /// `[[providers]]` table of the configuration (`-` reads them from standard input). The
    /// provider is checked (reachable, its bucket or container there, an object written, read
    /// back and deleted) before it is recorded; every server opens it within two seconds and
    /// places new chunks there. Its settings, credentials included, are kept in the database.
    Add {
        /// The settings file.
        file: std::path::PathBuf,
    },
    /// Take a provider out for good, once drained and empty: no placement left, no chunk
    /// object found on it. Servers stop using it within two seconds; a configuration file
    /// that still names it is warned about and the provider is not opened.
    Remove {
        /// Provider name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Make an access key for ACCOUNT and print its id and secret (the secret is shown once).
    Create {
        /// Account name.
        account: String,
        /// A label for the key.
        #[arg(long, default_value = "s3")]
        name: String,
        /// Only this bucket of the account.
        #[arg(long)]
        bucket: Option<String>,
        /// Reads only.
        #[arg(long)]
        read_only: bool,
    },
    /// The access keys of ACCOUNT, newest first (never their secrets).
    Ls {
        /// Account name.
        account: String,
    },
    /// Revoke access key ID of ACCOUNT.
    Revoke {
        /// Account name.
        account: String,
        /// The access key id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Create an account and print a token for it (shown once).
    Create {
        /// Account name.
        name: String,
        /// Byte quota over all kept versions (default: none).
        #[arg(long)]
        quota: Option<u64>,
        /// Read a password for `nuage login` from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the accounts with their usage.
    Ls,
    /// Set an account's password, read from standard input.
    Passwd {
        /// Account name.
        name: String,
    },
    /// Set an account's quota in bytes, or remove it with `none`.
    Quota {
        /// Account name.
        name: String,
        /// Bytes, or `none`.
        quota: String,
    },
    /// Print a new token for an account (shown once).
    Token {
        /// Account name.
        name: String,
        /// A label for the token.
        #[arg(long, default_value = "admin")]
        label: String,
    },
}

fn with_args(cli: &Globals, args: Option<&ServeArgs>) -> Result<ServerConfig> {
    let mut c = config(cli)?;
    if let Some(a) = args {
        if let Some(l) = a.listen {
            c.listen = l;
        }
        if let Some(S3Listen(l)) = a.s3_listen {
            c.s3.listen = l;
        }
        if let Some(u) = &a.database_url {
            c.service.database_url = Some(u.clone());
        }
        c.service.edges.extend(a.edges.iter().cloned());
    }
    Ok(c)
}

/// The database URL without its password, for messages.
/// The file of a `sqlite:` database URL (none for another database, or one in memory).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

pub async fn serve(cli: &Globals, args: &ServeArgs) -> Result<()> {
    let ServerConfig { listen, http, s3, service } = with_args(cli, Some(args))?;
    let url = service.database_url();
    let nuage = Arc::new(Nuage::open(service).await?);
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let s3_listener =
        match s3.listen {
            Some(at) => Some(tokio::net::TcpListener::bind(at).await.with_context(|| {
                format!("listening on {at} for S3 (`[s3] listen`, --s3-listen ADDR|off)")
            })?),
            None => None,
        };
    let providers: Vec<String> = nuage
        .store
        .providers()
        .iter()
        .map(|p| format!("{} ({})", p.name(), p.config().kind.scheme()))
        .collect();
    println!("nuage serving on http://{addr}");
    if let Some(l) = &s3_listener {
        println!("  S3:        http://{}", l.local_addr()?);
    }
    println!("  database:  {}", redacted(&url));
    println!("  providers: {}", providers.join(", "));
    for e in &nuage.config.edges {
        println!(
            "  edge:      {}{}",
            e.url,
            e.region.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        );
    }
    if nuage.meta.accounts().await?.is_empty() {
        let mut cmd = String::from("nuage");
        if let Some(c) = &cli.config {
            cmd.push_str(&format!(" --config {}", c.display()));
        } else if let Some(d) = &cli.data_dir {
            cmd.push_str(&format!(" --data-dir {}", d.display()));
        }
        println!("No account yet. Create the first one (it prints a token) with:");
        println!("  {cmd} admin account create NAME --password-stdin");
        println!("then log in from any machine with:");
        println!("  nuage login --server http://{addr} --account NAME");
    }
    let watched = nuage.clone();
    crate::memory::give_back_now_and_then(move || watched.writing());
    nuage_server::serve_fronts(nuage, listener, s3_listener.map(|l| (l, &s3)), http).await
}

fn read_password() -> Result<String> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).context("reading the password from standard input")?;
    let p = s.trim_end_matches(['\n', '\r']).to_owned();
    if p.is_empty() {
        bail!("the password is empty");
    }
    Ok(p)
}

async fn new_token(meta: &Meta, config: &ServiceConfig, account_id: i64, label: &str) -> Result<String> {
    Ok(auth::issue_token(meta, config.token_ttl_days, account_id, label).await?.0)
}

pub async fn admin(cli: &Globals, cmd: &Admin) -> Result<()> {
    let config = with_args(cli, None)?.service;
    let url = config.database_url();
    if let Some(path) = sqlite_file(&url) {
        if matches!(cmd, Admin::Init) {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
        } else if !path.exists() {
            bail!(
                "no database at {}: `nuage admin` works on the database of a server, found as `nuage \
                 serve` finds it (--config or NUAGE_CONFIG, --data-dir or NUAGE_DATA_DIR, else \
                 ./nuage-data); run it where the server runs, or point it there. `nuage admin init` \
                 creates a new one",
                path.display()
            );
        }
    }
    let cmd = match cmd {
        Admin::Init => {
            let meta = Meta::open(&url).await.with_context(|| format!("opening {}", redacted(&url)))?;
            meta.close().await;
            if cli.json {
                println!("{}", serde_json::json!({"database": redacted(&url)}));
            } else {
                println!("database ready: {}", redacted(&url));
            }
            return Ok(());
        }
        Admin::Account(cmd) => cmd,
        Admin::Scrub => return pass(cli, config, workers::Kind::Scrub).await,
        Admin::Repair => return pass(cli, config, workers::Kind::Repair).await,
        Admin::Gc => return pass(cli, config, workers::Kind::Gc).await,
        Admin::Lifecycle => {
            let nuage = Arc::new(Nuage::open(config).await?);
            let r = nuage
                .apply_lifecycle(nuage_meta::now_ms(), &nuage_service::background::StopSignal::never())
                .await;
            nuage.meta.close().await;
            let r = r.map_err(|e| anyhow::anyhow!("{e}"))?;
            if cli.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "lifecycle: {} buckets with rules: {} expired, {} delete markers and {} noncurrent versions \
                     removed, {} uploads aborted; {} buckets failed",
                    r.buckets,
                    r.expired,
                    r.markers_removed,
                    r.noncurrent_removed,
                    r.uploads_aborted,
                    r.failed
                );
            }
            return Ok(());
        }
        Admin::Provider(cmd) => {
            let meta = Meta::open(&url).await.with_context(|| format!("opening {}", redacted(&url)))?;
            let done = provider(cli, &config, &meta, cmd).await;
            meta.close().await;
            return done;
        }
        Admin::Key(cmd) => {
            let meta = Meta::open(&url).await.with_context(|| format!("opening {}", redacted(&url)))?;
            let done = access_key(cli, &config, &meta, cmd).await;
            meta.close().await;
            return done;
        }
        Admin::Pace { worker, rate } => {
            let meta = Meta::open(&url).await.with_context(|| format!("opening {}", redacted(&url)))?;
            let done = pace(cli, &config, &meta, worker.as_deref(), rate.as_deref()).await;
            meta.close().await;
            return done;
        }
        Admin::Status => {
            let meta = Meta::open(&url).await.with_context(|| format!("opening {}", redacted(&url)))?;
            status(cli, &config, &meta).await?;
            meta.close().await;
            return Ok(());
        }
    };
    let meta = Meta::open(&url).await.with_context(|| format!("opening {}", redacted(&url)))?;
    match cmd {
        AccountCmd::Create { name, quota, password_stdin } => {
            nuage_server::check_bucket(name).map_err(|_| {
                anyhow::anyhow!("an account name follows the bucket name rules: 3 to 63 of a-z 0-9 - .")
            })?;
            let hash = if *password_stdin { Some(auth::hash_password(&read_password()?)?) } else { None };
            let account = meta.create_account(name, hash.as_deref(), *quota, rand::random()).await?;
            let token = new_token(&meta, &config, account.id, "admin").await?;
            if cli.json {
                println!("{}", serde_json::json!({"account": account.name, "token": token}));
            } else {
                println!("created account {}", account.name);
                println!("token (shown once): {token}");
            }
        }
        AccountCmd::Ls => {
            let accounts = meta.accounts().await?;
            if cli.json {
                let list: Vec<_> = accounts
                    .iter()
                    .map(|a| serde_json::json!({"name": a.name, "used_bytes": a.used_bytes, "quota_bytes": a.quota_bytes}))
                    .collect();
                println!("{}", serde_json::json!(list));
            } else {
                for a in accounts {
                    let quota = a.quota_bytes.map_or("no quota".to_owned(), |q| format!("quota {q}"));
                    println!("{}\t{} bytes used\t{quota}", a.name, a.used_bytes);
                }
            }
        }
        AccountCmd::Passwd { name } => {
            let account = meta.account_by_name(name).await?;
            meta.set_password_hash(account.id, Some(&auth::hash_password(&read_password()?)?)).await?;
            println!("password of {name} set");
        }
        AccountCmd::Quota { name, quota } => {
            let account = meta.account_by_name(name).await?;
            let q = if quota == "none" {
                None
            } else {
                Some(quota.parse().context("QUOTA is a number of bytes or `none`")?)
            };
            meta.set_quota(account.id, q).await?;
            println!("quota of {name}: {}", q.map_or("none".to_owned(), |q: u64| q.to_string()));
        }
        AccountCmd::Token { name, label } => {
            let account = meta.account_by_name(name).await?;
            let token = new_token(&meta, &config, account.id, label).await?;
            if cli.json {
                println!("{}", serde_json::json!({"account": name, "token": token}));
            } else {
                println!("token (shown once): {token}");
            }
        }
    }
    meta.close().await;
    Ok(())
}

/// `nuage admin provider …`.
async fn provider(cli: &Globals, config: &ServiceConfig, meta: &Meta, cmd: &ProviderCmd) -> Result<()> {
    let registry = Registry::read(meta, config.providers()).await?;
    match cmd {
        ProviderCmd::Ls => {
            let counts = meta.placement_counts().await?;
            let held =
                |name: &str| counts.iter().filter(|(p, _, _)| p == name).map(|(_, _, n)| n).sum::<i64>();
            if cli.json {
                let list: Vec<_> = registry
                    .records()
                    .iter()
                    .map(|p| serde_json::json!({"name": p.name, "scheme": p.scheme, "state": p.state.as_str(), "placements": held(&p.name)}))
                    .collect();
                println!("{}", serde_json::json!(list));
            } else {
                for p in registry.records() {
                    println!("{:<12} {:<7} {:<9} {} placements", p.name, p.scheme, p.state, held(&p.name));
                }
            }
        }
        ProviderCmd::Drain { name } => {
            registry.drain(meta, name, config.buckets.replicas).await?;
            println!("draining {name}: `nuage admin status` shows the progress");
        }
        ProviderCmd::Activate { name } => {
            registry.activate(meta, name).await?;
            println!("{name} takes new chunks again");
        }
        ProviderCmd::Add { file } => {
            let record = registry.add(meta, provider_settings(file)?).await?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"name": record.name, "scheme": record.scheme, "state": record.state.as_str()})
                );
            } else {
                println!(
                    "added {} ({}): running servers place new chunks there within 2 s",
                    record.name, record.scheme
                );
            }
        }
        ProviderCmd::Remove { name } => {
            registry.remove(meta, name).await?;
            if cli.json {
                println!("{}", serde_json::json!({"name": name, "state": ProviderState::Removed.as_str()}));
            } else {
                println!("removed {name}: running servers stop using it within 2 s");
                if registry.in_config(name) {
                    println!("take it out of the configuration file too");
                }
            }
        }
    }
    Ok(())
}

/// Reads a provider's settings: the keys of one `[[providers]]` table, or a file with one
/// such table (`-`: standard input).
fn provider_settings(file: &std::path::Path) -> Result<nuage_blob::ProviderConfig> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    #[derive(serde::Deserialize)]
    struct Tables {
        providers: Vec<nuage_blob::ProviderConfig>,
    }
    if text.contains("[[providers]]") {
        let Tables { providers } =
            toml::from_str(&text).with_context(|| format!("{}: provider settings", file.display()))?;
        match <[_; 1]>::try_from(providers) {
            Ok([p]) => Ok(p),
            Err(_) => bail!("{}: one provider at a time", file.display()),
        }
    } else {
        toml::from_str(&text).with_context(|| format!("{}: provider settings", file.display()))
    }
}

/// `nuage admin status`: the workers, the placements by state.
async fn status(cli: &Globals, config: &ServiceConfig, meta: &Meta) -> Result<()> {
    let workers = meta.worker_states().await?;
    let paces = workers::paces(meta, &config.workers).await?;
    let pace_of =
        |name: &str| paces.iter().find(|(k, _, _)| k.name() == name).map(|(k, rate, _)| (*k, *rate));
    let placements = meta.placement_counts().await?;
    let providers = meta.providers().await?;
    let (uploads, leased) = meta.lease_count().await?;
    let (sessions, declared, session_bytes) = meta.open_session_holds().await?;
    let deletions = meta.deletions().await?.len();
    let now = nuage_meta::now_ms();
    // Addresses are uniform hashes: the cursor's first two bytes say how far a pass is.
    let current = |w: &WorkerState| {
        w.cursor.map(|c| {
            let done = (f64::from(u16::from_be_bytes([c[0], c[1]])) + 1.0) / 65_536.0;
            let elapsed = (now - w.pass_started_at.unwrap_or(now)).max(0) as f64 / 1000.0;
            (done, elapsed * (1.0 - done) / done)
        })
    };
    if cli.json {
        let workers: Vec<_> = workers
            .iter()
            .map(|w| {
                serde_json::json!({
                    "name": w.name, "passes": w.passes, "last_pass_at": w.last_pass_at,
                    "pace": pace_of(&w.name).map(|(_, rate)| rate),
                    "last_pass_found": w.last_pass_found,
                    "current": current(w).map(|(done, eta)| serde_json::json!({
                        "progress": done, "eta_secs": eta.round(), "chunks": w.chunks, "bytes": w.bytes, "found": w.found,
                    })),
                })
            })
            .collect();
        let placements: Vec<_> = placements
            .iter()
            .map(|(provider, state, count)| serde_json::json!({"provider": provider, "state": state.as_str(), "count": count}))
            .collect();
        let gc = serde_json::json!({
            "leased_chunks": leased, "leasing_uploads": uploads, "deletions_under_way": deletions,
            "open_sessions": sessions, "session_chunks": declared, "session_bytes_sent": session_bytes,
        });
        let providers: Vec<_> = providers
            .iter()
            .map(|p| serde_json::json!({"name": p.name, "state": p.state.as_str()}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"workers": workers, "placements": placements, "gc": gc, "providers": providers})
        );
        return Ok(());
    }
    println!("workers:");
    if workers.is_empty() {
        println!("  none has run yet");
    }
    for w in &workers {
        let last = match (w.last_pass_at, w.last_pass_found) {
            (Some(at), Some(found)) => format!("last pass ended {}, found {found}", crate::session::utc(at)),
            _ => "no pass finished yet".to_owned(),
        };
        let now_line = match current(w) {
            Some((done, eta)) => format!(
                "; pass under way: {:.0}% ({} chunks, {}, {} found so far), about {:.0} s left",
                done * 100.0,
                w.chunks,
                crate::session::size(w.bytes as u64),
                w.found,
                eta
            ),
            None => String::new(),
        };
        let pace =
            pace_of(&w.name).map(|(k, rate)| format!("; pace {}", show_pace(k, rate))).unwrap_or_default();
        println!("  {:<8} {} passes; {last}{now_line}{pace}", w.name, w.passes);
    }
    println!(
        "gc: {leased} chunks leased by {uploads} simple uploads in progress; {declared} chunks held by \
         {sessions} open smart-upload sessions ({} sent so far); {deletions} deletions under way",
        crate::session::size(session_bytes.max(0) as u64)
    );
    println!("providers:");
    for p in &providers {
        println!("  {:<12} {}", p.name, p.state);
    }
    println!("placements:");
    for (provider, state, count) in &placements {
        println!("  {provider:<12} {state:<8} {count}");
    }
    Ok(())
}

/// `nuage admin key …`.
async fn access_key(cli: &Globals, config: &ServiceConfig, meta: &Meta, cmd: &KeyCmd) -> Result<()> {
    let shown = |k: &nuage_meta::AccessKey| {
        serde_json::json!({
            "id": k.id, "name": k.name, "bucket": k.bucket, "read_only": k.read_only,
            "created_at": k.created_at, "revoked_at": k.revoked_at,
        })
    };
    match cmd {
        KeyCmd::Create { account, name, bucket, read_only } => {
            let a = meta.account_by_name(account).await?;
            let scope =
                nuage_service::access_keys::KeyScope { bucket: bucket.clone(), read_only: *read_only };
            let file = config.access_key_file();
            let made = !file.exists();
            let server = nuage_service::access_keys::ServerKey::load(&file, true)?;
            if made {
                eprintln!(
                    "made the access-key file {} (mode 0600): the server must run as its owner to read it",
                    file.display()
                );
            }
            let (key, secret) = nuage_service::access_keys::create(meta, &server, a.id, name, &scope)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if cli.json {
                let mut v = shown(&key);
                v["secret"] = secret.into();
                println!("{v}");
            } else {
                println!("access key id: {}", key.id);
                println!("secret (shown once): {secret}");
            }
        }
        KeyCmd::Ls { account } => {
            let a = meta.account_by_name(account).await?;
            let keys = meta.access_keys(a.id).await?;
            if cli.json {
                println!("{}", serde_json::Value::from(keys.iter().map(shown).collect::<Vec<_>>()));
            } else {
                for k in &keys {
                    let line = crate::session::access_key_line(
                        &k.id,
                        &k.name,
                        k.bucket.as_deref(),
                        k.read_only,
                        k.revoked_at,
                    );
                    println!("{line}");
                }
            }
        }
        KeyCmd::Revoke { account, id } => {
            let a = meta.account_by_name(account).await?;
            if !meta.revoke_access_key(a.id, id).await? {
                bail!("{account} has no active access key {id}");
            }
            println!("access key {id} revoked");
        }
    }
    Ok(())
}

/// A pace as `nuage admin pace` reads it: a count with an optional decimal or binary suffix.
fn parse_rate(text: &str) -> Result<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, suffix) = text.split_at(digits);
    let scale: u64 = match suffix {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => bail!("RATE is a number with an optional suffix k, M, G, Ki, Mi or Gi (e.g. 20M), or `default`"),
    };
    let n: u64 = number.parse().with_context(|| format!("RATE {text:?} does not start with a number"))?;
    n.checked_mul(scale).with_context(|| format!("RATE {text:?} is too large"))
}

/// Shows a pace for people.
fn show_pace(kind: workers::Kind, rate: u64) -> String {
    match (kind, rate) {
        (_, 0) => "unpaced".to_owned(),
        (workers::Kind::Gc, n) => format!("{n} deletions/s"),
        (_, n) => format!("{}/s", crate::session::size(n)),
    }
}

/// `nuage admin pace [WORKER [RATE]]`.
async fn pace(
    cli: &Globals,
    config: &ServiceConfig,
    meta: &Meta,
    worker: Option<&str>,
    rate: Option<&str>,
) -> Result<()> {
    let kind = worker
        .map(|w| {
            workers::Kind::from_name(w)
                .with_context(|| format!("no worker {w:?}: WORKER is scrub, repair, gc or migrate"))
        })
        .transpose()?;
    if let (Some(kind), Some(rate)) = (kind, rate) {
        let rate = if rate == "default" { None } else { Some(parse_rate(rate)?) };
        workers::set_pace(meta, kind, rate).await?;
    }
    let paces = workers::paces(meta, &config.workers).await?;
    let shown = paces.iter().filter(|(k, _, _)| kind.is_none_or(|kind| kind == *k));
    if cli.json {
        let list: Vec<_> = shown
            .map(|(k, rate, set)| serde_json::json!({"worker": k.name(), "rate": rate, "set_at_run_time": set}))
            .collect();
        println!("{}", serde_json::json!(list));
    } else {
        for (k, rate, set) in shown {
            let whence = if *set { "set with `nuage admin pace`" } else { "configured" };
            println!("{:<8} {} ({whence})", k.name(), show_pace(*k, *rate));
        }
    }
    Ok(())
}

/// `nuage admin scrub` / `repair`: one whole pass now, with a progress bar.
async fn pass(cli: &Globals, config: ServiceConfig, kind: workers::Kind) -> Result<()> {
    let nuage = Arc::new(Nuage::open(config).await?);
    let bar = crate::session::bar(cli, 65_536);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {percent}% ETA {eta}").expect("valid template"),
    );
    let report = workers::run_pass(&nuage, kind, false, |w| {
        if let Some(c) = w.cursor {
            bar.set_position(u64::from(u16::from_be_bytes([c[0], c[1]])) + 1);
        }
    })
    .await?;
    bar.finish_and_clear();
    if cli.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let what = match kind {
            workers::Kind::Scrub => "bad placements",
            workers::Kind::Repair => "copies written",
            workers::Kind::Gc => "chunks deleted",
            workers::Kind::Migrate => "copies moved",
        };
        let verb = if kind == workers::Kind::Gc { "freed" } else { "read" };
        println!(
            "{}: {} chunks, {} {verb} in {:.1} s; {} {what}, {} skipped (provider did not answer)",
            report.worker,
            report.chunks,
            crate::session::size(report.bytes),
            report.seconds,
            report.found,
            report.skipped
        );
        for l in &report.listed {
            println!("  {l}");
        }
    }
    nuage.meta.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(super::redacted("postgres://u:secret@h:5432/db"), "postgres://u@h:5432/db");
        assert_eq!(super::redacted("sqlite:./x/meta.db"), "sqlite:./x/meta.db");
    }
}
