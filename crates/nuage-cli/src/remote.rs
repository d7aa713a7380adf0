//! The client commands: `login`, `logout`, `bucket`, `put`, `get`, `ls`, `rm`, `versions`.
//! Objects of end-to-end buckets are sealed and opened here with the key of [`crate::keys`].

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use nuage_client::api::{BucketRequest, PutAnswer, VersionView};
use nuage_client::stamps::PutStamps;
use nuage_client::{Client, ClientError, SmartPutResult};

use crate::session::{
    Globals, Saved, bar, client, file_progress, load_saved, rate, size, split_target, store_saved, user_dir,
    utc,
};

/// Files transferred at once by `put` and `get` of a folder.
const FILES_IN_FLIGHT: usize = 8;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Account name (asks for the password).
    #[arg(long)]
    account: Option<String>,
    /// Read the password from standard input instead of asking.
    #[arg(long)]
    password_stdin: bool,
    /// Save this token instead of logging in with a password.
    #[arg(long = "with-token")]
    with_token: Option<String>,
}

pub async fn login(cli: &Globals, args: &LoginArgs) -> Result<()> {
    let saved = load_saved()?;
    let server = cli.server.clone().or(saved.server).context("which server? pass --server URL")?;
    let token = match (&args.with_token, &args.account) {
        (Some(t), _) => t.clone(),
        (None, Some(account)) => {
            let password = if args.password_stdin || !std::io::stdin().is_terminal() {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                s.trim_end_matches(['\n', '\r']).to_owned()
            } else {
                rpassword::prompt_password(format!("password for {account}: "))?
            };
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "device".into());
            Client::new(&server, None)?.login(account, &password, &format!("cli on {host}")).await?.token
        }
        (None, None) => bail!("pass --account NAME (password login) or --with-token TOKEN"),
    };
    let client = Client::new(&server, Some(token.clone()))?;
    let account = client.account().await.context("checking the token")?;
    let path = store_saved(&Saved { server: Some(server.clone()), token: Some(token) })?;
    if cli.json {
        println!("{}", serde_json::json!({"server": server, "account": account.name}));
    } else {
        println!("logged in to {server} as {} (saved in {})", account.name, path.display());
    }
    Ok(())
}

pub async fn logout(cli: &Globals) -> Result<()> {
    let client = client(cli)?;
    match client.logout().await {
        Ok(()) | Err(ClientError::Api { status: 401, .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let mut saved = load_saved()?;
    saved.token = None;
    store_saved(&saved)?;
    println!("logged out");
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum BucketCmd {
    /// Create a bucket.
    Create {
        /// Name: 3 to 63 of a-z 0-9 - .
        name: String,
        /// Copies of each chunk, on distinct providers (default: the server's).
        #[arg(long)]
        replicas: Option<u32>,
        /// Copies stored before a write succeeds (default: all replicas).
        #[arg(long)]
        write_quorum: Option<u32>,
        /// Versions kept per key, 0 for all (default: the server's).
        #[arg(long)]
        keep_versions: Option<u32>,
        /// End-to-end: manifests sealed on this device with its key (`nuage key init`); the
        /// server can list names and sizes but never read the content.
        #[arg(long)]
        e2e: bool,
        /// Let devices send chunks straight to a provider that can presign (S3) instead of
        /// through the server; the server verifies them at commit.
        #[arg(long)]
        direct_upload: bool,
    },
    /// List buckets.
    Ls,
    /// Delete an empty bucket.
    Rm {
        /// Name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccessKeyCmd {
    /// Make an S3 access key of your account and print its id and secret (shown once).
    Create {
        /// A label for the key.
        #[arg(long, default_value = "s3")]
        name: String,
        /// Only this bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// Reads only.
        #[arg(long)]
        read_only: bool,
    },
    /// Your S3 access keys, newest first (never their secrets).
    Ls,
    /// Revoke access key ID: refused from the next request on.
    Revoke {
        /// The access key id.
        id: String,
    },
}

pub async fn access_key(cli: &Globals, cmd: &AccessKeyCmd) -> Result<()> {
    let client = client(cli)?;
    match cmd {
        AccessKeyCmd::Create { name, bucket, read_only } => {
            let request = nuage_client::api::AccessKeyRequest {
                name: Some(name.clone()),
                bucket: bucket.clone(),
                read_only: *read_only,
            };
            let made = client.create_access_key(&request).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&made)?);
            } else {
                println!("access key id: {}", made.key.id);
                println!("secret (shown once): {}", made.secret);
            }
        }
        AccessKeyCmd::Ls => {
            let keys = client.access_keys().await?;
            if cli.json {
                println!("{}", serde_json::to_string(&keys)?);
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
        AccessKeyCmd::Revoke { id } => {
            client.revoke_access_key(id).await?;
            if !cli.json {
                println!("access key {id} revoked");
            }
        }
    }
    Ok(())
}

pub async fn bucket(cli: &Globals, cmd: &BucketCmd) -> Result<()> {
    let client = client(cli)?;
    match cmd {
        BucketCmd::Create { name, replicas, write_quorum, keep_versions, e2e, direct_upload } => {
            let e2e_key_id = match e2e {
                true => Some(hex::encode(crate::keys::content_key(&client).await?.id())),
                false => None,
            };
            let spec = BucketRequest {
                replicas: *replicas,
                write_quorum: *write_quorum,
                keep_versions: *keep_versions,
                e2e_key_id,
                direct_upload: direct_upload.then_some(true),
            };
            let b = client.create_bucket(name, &spec).await?;
            crate::keys::check_e2e_record(client.base(), &b.name, b.e2e_key_id.as_deref())?;
            if cli.json {
                println!("{}", serde_json::to_string(&b)?);
            } else {
                println!(
                    "created {}bucket {} (replicas {}, write quorum {}, keeps {} versions)",
                    if b.e2e_key_id.is_some() { "end-to-end " } else { "" },
                    b.name,
                    b.replicas,
                    b.write_quorum,
                    if b.keep_versions == 0 { "all".to_owned() } else { b.keep_versions.to_string() }
                );
            }
        }
        BucketCmd::Ls => list_buckets(cli, &client).await?,
        BucketCmd::Rm { name } => {
            client.delete_bucket(name).await?;
            crate::keys::forget_e2e_record(client.base(), name)?;
            if !cli.json {
                println!("deleted bucket {name}");
            }
        }
    }
    Ok(())
}

async fn list_buckets(cli: &Globals, client: &Client) -> Result<()> {
    let buckets = client.buckets().await?;
    if cli.json {
        println!("{}", serde_json::to_string(&buckets)?);
    } else if buckets.is_empty() {
        println!("no bucket yet: `nuage bucket create NAME` makes one");
    } else {
        println!("{:<24}  {:>8}  {:>6}  {:<8}  CREATED", "BUCKET", "REPLICAS", "KEEPS", "SEALING");
        for b in buckets {
            let keeps = if b.keep_versions == 0 { "all".to_owned() } else { b.keep_versions.to_string() };
            let sealing = if b.e2e_key_id.is_some() { "e2e" } else { "server" };
            println!("{:<24}  {:>8}  {keeps:>6}  {sealing:<8}  {}", b.name, b.replicas, utc(b.created_at));
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// File or folder.
    path: PathBuf,
    /// BUCKET/KEY for a file (BUCKET/ or BUCKET/DIR/ keeps the file name); BUCKET[/PREFIX]
    /// for a folder, whose files go under PREFIX/ by relative path.
    target: String,
    /// Stream each file to the server as one request, instead of chunking here and sending
    /// only the chunks the server lacks.
    #[arg(long)]
    simple: bool,
    /// Upload files even when the key already holds the same content (by default such
    /// files are skipped, and no version is made for them).
    #[arg(long)]
    force: bool,
}

pub async fn put(cli: &Globals, args: &PutArgs) -> Result<()> {
    let client = client(cli)?;
    let (bucket, key) = split_target(&args.target)?;
    let meta = std::fs::metadata(&args.path).with_context(|| format!("reading {}", args.path.display()))?;
    let files: Vec<(PathBuf, String)> = if meta.is_dir() {
        let prefix = key.trim_end_matches('/');
        nuage_ingest::walk(&args.path)?
            .into_iter()
            .map(|(p, rel)| {
                let k = if prefix.is_empty() { rel } else { format!("{prefix}/{rel}") };
                (p, k)
            })
            .collect()
    } else {
        let name = args.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let k = if key.is_empty() || key.ends_with('/') { format!("{key}{name}") } else { key.to_owned() };
        vec![(args.path.clone(), k)]
    };
    // Keys in their one form (NFC: macOS spells file names decomposed), so that what the
    // server lists matches what is here; a file name that is no key stops the put first.
    let files = files
        .into_iter()
        .map(|(p, k)| match nuage_core::key::normalize(&k) {
            Ok(k) => Ok((p, k)),
            Err(e) => Err(anyhow::anyhow!("{}: cannot be the key {k:?}: {e}; nothing was sent", p.display())),
        })
        .collect::<Result<Vec<_>>>()?;
    let mut total = 0;
    for (p, _) in &files {
        total += std::fs::metadata(p).with_context(|| format!("reading {}", p.display()))?.len();
    }
    let started = Instant::now();
    let info = client.bucket(bucket).await?;
    crate::keys::check_e2e_record(client.base(), bucket, info.e2e_key_id.as_deref())?;
    let sealing = match info.e2e_key_id {
        Some(id) if args.simple => {
            bail!(
                "bucket {bucket} is end-to-end encrypted (key {id}): it takes smart uploads only, not --simple"
            )
        }
        Some(id) => Some(crate::keys::bucket_key(&client, bucket, &id).await?),
        None => None,
    };
    let pipeline = match (args.simple, &sealing) {
        (true, _) => None,
        (false, None) => Some(client.upload_settings().await?),
        (false, Some(k)) => Some(Client::e2e_pipeline(&client.upload_settings().await?, k)),
    };
    // What the server holds under these keys: a file is not sent again when its size and
    // stamp are those the last put of this folder recorded and the key still has the version
    // that put made, or (without a record) when its size and hash are those of the key's
    // current version. (The ETag of an end-to-end version is not the file's hash, which the
    // server must not learn: without a record, those files are sealed again, and only their
    // chunks the server lacks are sent.)
    let existing: HashMap<String, VersionView> = if args.force {
        HashMap::new()
    } else {
        let prefix = if files.len() == 1 { files[0].1.as_str() } else { key.trim_end_matches('/') };
        match client.list_all(bucket, prefix).await {
            Ok(objects) => objects.into_iter().map(|o| (o.key.clone(), o)).collect(),
            Err(e) => return Err(e).context(format!("listing {bucket}/{prefix}")),
        }
    };
    let root =
        std::fs::canonicalize(&args.path).with_context(|| format!("reading {}", args.path.display()))?;
    let mut stamps = PutStamps::load(&cache_dir()?.join("put"), client.base(), bucket, &root, key);
    let bar = bar(cli, total);
    // The first failure stops the put: the files not started yet are not tried (a server
    // that stayed down through the retry window is said once, not once per file).
    let stop = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<Result<Option<_>>> = futures::stream::iter(&files)
        .map(|(path, key)| {
            let (client, progress, pipeline) = (&client, file_progress(&bar), pipeline.as_ref());
            let sealing = sealing.as_ref();
            let known = existing.get(key.as_str());
            let (stamps, stop) = (&stamps, &stop);
            async move {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(None);
                }
                let put = async {
                    // Taken before the file is read: a change during the upload makes the
                    // next put read it again.
                    let meta = tokio::fs::metadata(path)
                        .await
                        .with_context(|| format!("reading {}", path.display()))?;
                    if let Some(o) = known {
                        if stamps.unchanged(key, &meta, o.etag.as_deref()) {
                            progress(o.size);
                            return Ok((meta, skipped(bucket, o)));
                        }
                        if sealing.is_none()
                            && let Some(unchanged) = unchanged(path, bucket, o).await?
                        {
                            progress(o.size);
                            return Ok((meta, unchanged));
                        }
                    }
                    match pipeline {
                        Some(p) => client.smart_put_file(p, sealing, bucket, key, path, progress).await,
                        None => {
                            client.put_file(bucket, key, path, progress).await.map(|put| SmartPutResult {
                                stored_bytes: put.size,
                                bytes_sent: put.size,
                                chunks: 0,
                                chunks_sent: 0,
                                unchanged: false,
                                put,
                            })
                        }
                    }
                    .with_context(|| format!("uploading {}", path.display()))
                    .map(|r| (meta, r))
                };
                let put: Result<_> = put.await;
                if let Err(e) = &put
                    && stops_the_rest(e)
                {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                put.map(Some)
            }
        })
        .buffer_unordered(FILES_IN_FLIGHT)
        .collect()
        .await;
    bar.finish_and_clear();
    let mut done = Vec::new();
    let mut first_error = None;
    for r in results {
        match r {
            Ok(Some((meta, r))) => {
                stamps.record(&r.put.key, &meta, &r.put.etag);
                done.push(r);
            }
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // What did go up is remembered even when something else failed.
    if let Err(e) = stamps.save() {
        tracing::warn!("saving {}: {e}", stamps.path().display());
    }
    if let Some(e) = first_error {
        if files.len() > 1 && stops_the_rest(&e) {
            let sent = done.iter().filter(|d| !d.unchanged).count();
            let unchanged = done.len() - sent;
            return Err(e.context(format!(
                "stopped after {sent} file(s) sent and {unchanged} unchanged of {} (running the same command again sends the rest)",
                files.len()
            )));
        }
        return Err(e);
    }
    done.sort_by(|a, b| a.put.key.cmp(&b.put.key));
    let secs = started.elapsed().as_secs_f64();
    let stored: u64 = done.iter().map(|d| d.stored_bytes).sum();
    let sent: u64 = done.iter().map(|d| d.bytes_sent).sum();
    let skipped = done.iter().filter(|d| d.unchanged).count();
    if cli.json {
        println!(
            "{}",
            serde_json::json!({
                "bucket": bucket, "objects": done, "bytes": total, "seconds": secs,
                "stored_bytes": stored, "bytes_sent": sent, "unchanged": skipped,
            })
        );
    } else {
        if done.len() == 1 {
            println!("{bucket}/{} version {}", done[0].put.key, done[0].put.version);
        }
        let read: u64 = done.iter().filter(|d| !d.unchanged).map(|d| d.put.size).sum();
        println!(
            "{} file(s) sent, {skipped} unchanged; {} in {secs:.1} s ({})",
            done.len() - skipped,
            size(read),
            rate(read, secs)
        );
        if !args.simple && stored > 0 {
            let share = 100.0 * sent as f64 / stored as f64;
            println!(
                "{} of {} of encrypted chunks sent ({share:.1}%); the server had the rest",
                size(sent),
                size(stored)
            );
        }
    }
    Ok(())
}

/// Whether a failed file stops a folder put (the files not started are not tried): the
/// server stayed unreachable through the retry window, or its storage is full; any other
/// failure (a file that cannot be read, a quota refusal) is the file's, and the others go on.
fn stops_the_rest(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<ClientError>(),
            Some(ClientError::GaveUp { .. } | ClientError::Api { status: 507, .. })
        )
    })
}

/// When `path` has the content of the key's current version `o` (same size, same BLAKE3),
/// the result of an upload that did nothing.
async fn unchanged(path: &Path, bucket: &str, o: &VersionView) -> Result<Option<SmartPutResult>> {
    let Some(etag) = &o.etag else { return Ok(None) };
    let len = tokio::fs::metadata(path).await.with_context(|| format!("reading {}", path.display()))?.len();
    if len != o.size || hex::encode(nuage_client::api::file_hash(path).await?) != *etag {
        return Ok(None);
    }
    Ok(Some(skipped(bucket, o)))
}

/// The result of an upload skipped because the key's current version `o` (in `bucket`) has
/// the content.
fn skipped(bucket: &str, o: &VersionView) -> SmartPutResult {
    let put = PutAnswer {
        bucket: bucket.to_owned(),
        key: o.key.clone(),
        version: o.version,
        size: o.size,
        etag: o.etag.clone().unwrap_or_default(),
        replayed: false,
    };
    SmartPutResult { put, stored_bytes: 0, bytes_sent: 0, chunks: 0, chunks_sent: 0, unchanged: true }
}

/// The cache folder: `$NUAGE_CACHE_DIR`, else `$XDG_CACHE_HOME/nuage`, else `~/.cache/nuage`.
fn cache_dir() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("NUAGE_CACHE_DIR").filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    user_dir("XDG_CACHE_HOME", ".cache")
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// BUCKET/KEY, or BUCKET/PREFIX/ (or BUCKET) for every key under it, or a share URL
    /// (`http…/s/TOKEN`, no account needed).
    source: String,
    /// Destination file or folder (default: the key's last segment, or the current folder).
    path: Option<PathBuf>,
    /// A version id (from `nuage versions`).
    #[arg(long)]
    version: Option<i64>,
    /// Overwrite files that exist with other content (a file that already has the object's
    /// content is left as it is, without this).
    #[arg(long)]
    force: bool,
}

/// One file of a `get`: the key, where it goes, the version (none: the current one), its
/// size (0 when not known) and content hash.
struct Fetch {
    key: String,
    dest: PathBuf,
    version: Option<i64>,
    size: u64,
    etag: Option<String>,
}

/// Whether the file at `path` already holds `size` bytes hashing to `etag` (BLAKE3, hex).
async fn holds(path: &Path, size: u64, etag: Option<&str>) -> bool {
    let (path, etag) = (path.to_owned(), etag.map(str::to_owned));
    tokio::task::spawn_blocking(move || -> bool {
        let Some(etag) = etag else { return false };
        if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(size) {
            return false;
        }
        let mut hasher = blake3::Hasher::new();
        std::fs::File::open(&path).and_then(|f| hasher.update_reader(f).map(|_| ())).is_ok()
            && hasher.finalize().to_hex().as_str() == etag
    })
    .await
    .unwrap_or(false)
}

/// Where the file of `relative` (a key, or the part of one after the prefix) goes under
/// `root`: refused when it would not be a plain path inside it, whatever the server sent.
fn local_path(root: &Path, relative: &str) -> Result<PathBuf> {
    nuage_core::key::local_path(root, relative).with_context(|| {
        format!(
            "the key {relative:?} cannot be written as a file inside {}: nothing was written",
            root.display()
        )
    })
}

pub async fn get(cli: &Globals, args: &GetArgs) -> Result<()> {
    if args.source.starts_with("http://") || args.source.starts_with("https://") {
        if args.version.is_some() {
            bail!("a share link gives the version it was made for; --version does not apply");
        }
        return crate::keys::get_link(cli, &args.source, args.path.as_deref()).await;
    }
    let client = client(cli)?;
    let (bucket, key) = split_target(&args.source)?;
    let info = client.bucket(bucket).await?;
    crate::keys::check_e2e_record(client.base(), bucket, info.e2e_key_id.as_deref())?;
    let sealed_with = match info.e2e_key_id {
        Some(id) => Some(crate::keys::bucket_key(&client, bucket, &id).await?),
        None => None,
    };
    // One object, unless the key is empty or ends with '/', or names no object but a prefix.
    let mut deleted = None;
    let single = if key.is_empty() || key.ends_with('/') {
        None
    } else {
        match client.versions(bucket, key).await {
            Ok(v) if v.first().is_some_and(|v| !v.tombstone) || args.version.is_some() => {
                // The version asked for, when it is listed (its size and hash are then known).
                let asked = args.version.and_then(|id| v.iter().position(|x| x.version == id));
                v.into_iter().nth(asked.unwrap_or(0))
            }
            Ok(v) => {
                deleted = Some(v); // deleted: said below, unless a folder has the name
                None
            }
            Err(ClientError::Api { status: 404, .. }) => None,
            Err(e) => return Err(e.into()),
        }
    };
    let started = Instant::now();
    let jobs: Vec<Fetch> = match single {
        Some(v) => {
            let name = key.rsplit('/').next().unwrap_or(key);
            let dest = match &args.path {
                Some(p) if p.is_dir() => local_path(p, name)?,
                Some(p) => p.clone(),
                None => local_path(Path::new(""), name)?,
            };
            let (size, etag) = match args.version {
                Some(id) if id != v.version => (0, None),
                _ => (v.size, v.etag.clone()),
            };
            vec![Fetch { key: key.to_owned(), dest, version: args.version, size, etag }]
        }
        None => {
            let key = nuage_core::key::normalize_prefix(key);
            let prefix =
                if key.is_empty() || key.ends_with('/') { key.to_owned() } else { format!("{key}/") };
            let objects: Vec<VersionView> = client.list_all(bucket, &prefix).await?;
            if objects.is_empty() {
                let kept = deleted.as_ref().map_or(0, |v| v.iter().filter(|v| !v.tombstone).count());
                let message = match deleted.as_ref().and_then(|v| v.first()) {
                    Some(tombstone) if kept > 0 => format!(
                        "{bucket}/{key} was deleted on {}; {kept} earlier version(s) are kept: \
                         `nuage undelete {bucket}/{key}` brings the last one back, \
                         `nuage versions {bucket}/{key}` lists them (`nuage get --version N` downloads one)",
                        utc(tombstone.created_at)
                    ),
                    _ => format!("no object {bucket}/{key} and nothing under {bucket}/{prefix}"),
                };
                return Err(anyhow::Error::new(ClientError::Api {
                    status: 404,
                    code: "object_not_found".into(),
                    message,
                }));
            }
            let root = args.path.clone().unwrap_or_else(|| PathBuf::from("."));
            objects
                .into_iter()
                .map(|o| {
                    let relative = o.key.strip_prefix(&prefix).with_context(|| {
                        format!("the server listed {:?} under the prefix {prefix:?}", o.key)
                    })?;
                    let dest = local_path(&root, relative)?;
                    Ok(Fetch {
                        key: o.key.clone(),
                        dest,
                        version: Some(o.version),
                        size: o.size,
                        etag: o.etag.clone(),
                    })
                })
                .collect::<Result<_>>()?
        }
    };
    // Two keys may name one file here (`A.txt` and `a.txt` on a case-insensitive disk is
    // beyond what can be seen from here, but the same path twice is not).
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = jobs.iter().find(|j| !seen.insert(j.dest.clone())) {
        bail!("two keys would be written to {}; nothing was downloaded", twice.dest.display());
    }
    // A file that exists is left alone when it has the object's content already (a folder
    // fetched again after an interruption), and is never overwritten otherwise unless --force.
    let mut unchanged = 0usize;
    let mut differ = Vec::new();
    let mut wanted = Vec::new();
    for job in jobs {
        if job.dest.exists() {
            if holds(&job.dest, job.size, job.etag.as_deref()).await {
                unchanged += 1;
                continue;
            }
            if !args.force {
                differ.push(job.dest.display().to_string());
            }
        }
        wanted.push(job);
    }
    if let Some(first) = differ.first() {
        bail!(
            "{first}{} exists with other content; nothing was downloaded (--force overwrites)",
            if differ.len() > 1 { format!(" (and {} more files)", differ.len() - 1) } else { String::new() }
        );
    }
    let jobs = wanted;
    // Through the manifest (chunks from the edges, decrypted here) when the server lists
    // edges or the bucket is end-to-end; else streamed from the server, resumable.
    let through_manifest = sealed_with.is_some() || !client.edge_list().await?.is_empty();
    let total = jobs.iter().map(|j| j.size).sum();
    let bar = bar(cli, total);
    let results: Vec<_> = futures::stream::iter(&jobs)
        .map(|Fetch { key, dest, version, .. }| {
            let (client, progress, sealed_with) = (&client, file_progress(&bar), sealed_with.as_ref());
            async move {
                if through_manifest {
                    client.get_through_manifest(bucket, key, *version, sealed_with, dest, progress).await
                } else {
                    client.get_to_file(bucket, key, *version, dest, progress).await
                }
                .with_context(|| format!("downloading {bucket}/{key}"))
                .map(|r| (dest.clone(), r))
            }
        })
        .buffer_unordered(FILES_IN_FLIGHT)
        .collect()
        .await;
    bar.finish_and_clear();
    let mut done = Vec::new();
    for r in results {
        done.push(r?);
    }
    let bytes: u64 = done.iter().map(|(_, r)| r.size).sum();
    let resumed: u64 = done.iter().map(|(_, r)| r.resumed_from).sum();
    let secs = started.elapsed().as_secs_f64();
    if cli.json {
        let files: Vec<_> = done
            .iter()
            .map(|(p, r)| serde_json::json!({"path": p, "size": r.size, "version": r.version, "etag": r.etag, "resumed_from": r.resumed_from}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"files": files, "bytes": bytes, "seconds": secs, "unchanged": unchanged})
        );
    } else {
        if let [(path, _)] = done.as_slice() {
            println!("{}", path.display());
        }
        let sent = bytes - resumed;
        let resumed = if resumed > 0 { format!(", {} of it resumed", size(resumed)) } else { String::new() };
        println!(
            "{} file(s) downloaded and verified, {unchanged} unchanged; {} in {secs:.1} s ({}){resumed}",
            done.len(),
            size(bytes),
            rate(sent, secs)
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// BUCKET[/PREFIX]; nothing lists the buckets.
    target: Option<String>,
    /// Every key under the prefix, not grouped by '/'.
    #[arg(short, long)]
    recursive: bool,
}

pub async fn ls(cli: &Globals, args: &LsArgs) -> Result<()> {
    let client = client(cli)?;
    let Some(target) = &args.target else { return list_buckets(cli, &client).await };
    let (bucket, prefix) = split_target(target)?;
    let delimiter = (!args.recursive).then_some("/");
    let all = |prefix: String| {
        let client = &client;
        async move {
            let mut token: Option<String> = None;
            let (mut objects, mut prefixes) = (Vec::new(), Vec::new());
            loop {
                let page = client.list(bucket, &prefix, delimiter, token.as_deref()).await?;
                objects.extend(page.objects);
                prefixes.extend(page.prefixes);
                match page.next_page_token {
                    Some(t) => token = Some(t),
                    None => return Ok::<_, ClientError>((objects, prefixes)),
                }
            }
        }
    };
    let (mut all_objects, mut all_prefixes) = all(prefix.to_owned()).await?;
    // `ls bucket/photos` of a folder lists what is in it, as `ls` of a directory does.
    let folder = format!("{prefix}/");
    if !prefix.is_empty() && all_objects.is_empty() && all_prefixes == [folder.clone()] {
        (all_objects, all_prefixes) = all(folder).await?;
    }
    if cli.json {
        println!("{}", serde_json::json!({"objects": all_objects, "prefixes": all_prefixes}));
    } else {
        if all_prefixes.is_empty() && all_objects.is_empty() {
            println!("nothing under {target}");
            return Ok(());
        }
        println!("{:>10}  {:<23}  {:>10}  KEY", "SIZE", "MODIFIED", "VERSION");
        for p in &all_prefixes {
            println!("{:>10}  {:<23}  {:>10}  {p}", "folder", "", "");
        }
        for o in &all_objects {
            println!("{:>10}  {:<23}  {:>10}  {}", size(o.size), utc(o.created_at), o.version, o.key);
        }
        let total: u64 = all_objects.iter().map(|o| o.size).sum();
        println!("{} object(s), {}; {} folder(s)", all_objects.len(), size(total), all_prefixes.len());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// BUCKET/KEY (or BUCKET/PREFIX with -r).
    target: String,
    /// Delete every key under the prefix.
    #[arg(short, long)]
    recursive: bool,
}

pub async fn rm(cli: &Globals, args: &RmArgs) -> Result<()> {
    let client = client(cli)?;
    let (bucket, key) = split_target(&args.target)?;
    // `rm -r b/photos` takes the key `photos` and what is under `photos/`, never `photos2`.
    let folder = if key.is_empty() || key.ends_with('/') { key.to_owned() } else { format!("{key}/") };
    let keys: Vec<String> = if args.recursive {
        let listed = client.list_all(bucket, key).await?.into_iter().map(|o| o.key);
        listed.filter(|k| k == key || k.starts_with(&folder)).collect()
    } else {
        if key.is_empty() {
            bail!("{}: which key? (use -r for a whole prefix)", args.target);
        }
        vec![key.to_owned()]
    };
    for k in &keys {
        let deleted = client.delete(bucket, k).await;
        if let Err(ClientError::Api { status: 404, .. }) = &deleted
            && !args.recursive
        {
            let under = client.list(bucket, &folder, Some("/"), None).await;
            if under.is_ok_and(|l| !l.objects.is_empty() || !l.prefixes.is_empty()) {
                bail!(
                    "{bucket}/{k} is no object but a folder: `nuage rm -r {bucket}/{folder}` deletes what is under it"
                );
            }
        }
        deleted.with_context(|| format!("deleting {bucket}/{k}"))?;
        if !cli.json {
            println!("deleted {bucket}/{k}");
        }
    }
    if cli.json {
        println!("{}", serde_json::json!({"deleted": keys}));
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct VersionsArgs {
    /// BUCKET/KEY.
    target: String,
}

pub async fn versions(cli: &Globals, args: &VersionsArgs) -> Result<()> {
    let client = client(cli)?;
    let (bucket, key) = split_target(&args.target)?;
    let versions = client.versions(bucket, key).await?;
    if cli.json {
        println!("{}", serde_json::to_string(&versions)?);
    } else {
        for v in versions {
            let what = if v.tombstone { "(deleted)".to_owned() } else { format!("{} bytes", v.size) };
            println!("{:<10}  {}  {what}", v.version, utc(v.created_at));
        }
    }
    Ok(())
}

/// `nuage restore BUCKET/KEY [--version N]` and `nuage undelete BUCKET/KEY`.
pub async fn restore(cli: &Globals, target: &str, version: Option<i64>) -> Result<()> {
    let client = client(cli)?;
    let (bucket, key) = split_target(target)?;
    if key.is_empty() {
        bail!("{target}: which key? (BUCKET/KEY; a snapshot is restored as `nuage restore SNAPSHOT DEST`)");
    }
    let versions = client
        .versions(bucket, key)
        .await
        .with_context(|| format!("reading the versions of {bucket}/{key}"))?;
    let version = match version {
        Some(v) => v,
        None => {
            if versions.first().is_some_and(|v| !v.tombstone) {
                bail!(
                    "{bucket}/{key} is not deleted; `nuage restore {bucket}/{key} --version N` brings back an older version (`nuage versions {bucket}/{key}` lists them)"
                );
            }
            match versions.iter().find(|v| !v.tombstone) {
                Some(v) => v.version,
                None => bail!("{bucket}/{key} has no kept version to bring back"),
            }
        }
    };
    let put = client
        .restore(bucket, key, version)
        .await
        .with_context(|| format!("restoring {bucket}/{key} version {version}"))?;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({"bucket": bucket, "key": put.key, "version": put.version, "restored_from": version, "size": put.size, "etag": put.etag})
        );
    } else {
        println!(
            "{bucket}/{} version {} is the content of version {version} ({}); nothing was downloaded",
            put.key,
            put.version,
            size(put.size)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_795_391_340_795), "2026-11-22 23:49:00 UTC");
    }

    #[test]
    fn targets() {
        assert_eq!(super::split_target("photos/a/b.jpg").unwrap(), ("photos", "a/b.jpg"));
        assert_eq!(super::split_target("photos").unwrap(), ("photos", ""));
        assert_eq!(super::split_target("nuage://photos/x").unwrap(), ("photos", "x"));
        assert!(super::split_target("/x").is_err());
    }
}
