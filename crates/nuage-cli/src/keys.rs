//! `nuage key` (the end-to-end content key) and `nuage share` (share links), and the
//! download of a share URL by `nuage get URL`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Subcommand};
use nuage_client::share::{ShareSpec, ShareUrl, download_share};
use nuage_client::{Client, ClientError};
use nuage_core::e2e::ContentKey;

use crate::session::Globals;
use crate::session::{bar, client, file_progress, saved_path, size, split_target, utc};

/// First word of a key file.
const KEY_FILE_TAG: &str = "nuage-content-key-v1";

/// The key file: `$NUAGE_KEY_FILE`, else `content.key` beside the saved login.
fn key_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("NUAGE_KEY_FILE").filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    Ok(saved_path()?.with_file_name("content.key"))
}

fn passphrase_env() -> Option<String> {
    std::env::var("NUAGE_PASSPHRASE").ok().filter(|p| !p.is_empty())
}

fn read_key_file(path: &Path) -> Result<Option<ContentKey>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let bytes = text
        .trim()
        .strip_prefix(KEY_FILE_TAG)
        .and_then(|rest| URL_SAFE_NO_PAD.decode(rest.trim()).ok())
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .with_context(|| format!("{} is not a nuage key file", path.display()))?;
    Ok(Some(ContentKey::from_bytes(bytes)))
}

fn write_key_file(path: &Path, key: &ContentKey) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Written whole under a temporary name, then linked to its name, which fails if a key
    // is there: a crash never leaves a half key file, and a key file is never overwritten.
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| -> Result<()> {
        let mut f = options.open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        writeln!(f, "{KEY_FILE_TAG} {}", URL_SAFE_NO_PAD.encode(key.as_bytes()))?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path).with_context(|| format!("creating {}", path.display()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&tmp);
    written
}

/// The account's content key: from `NUAGE_PASSPHRASE` (Argon2id, salted with the account
/// name), else from the key file.
pub async fn content_key(client: &Client) -> Result<ContentKey> {
    if let Some(p) = passphrase_env() {
        let account = client.account().await?.name;
        return Ok(tokio::task::spawn_blocking(move || ContentKey::from_passphrase(&p, &account)).await??);
    }
    let path = key_path()?;
    read_key_file(&path)?.ok_or_else(|| {
        anyhow::Error::new(ClientError::Key(format!(
            "no end-to-end key: {} does not exist; run `nuage key init` (or set NUAGE_PASSPHRASE)",
            path.display()
        )))
    })
}

/// Where this device remembers which buckets are end-to-end: beside the key file.
fn e2e_record_path() -> Result<PathBuf> {
    Ok(key_path()?.with_file_name("e2e-buckets"))
}

/// Checks what the server says of `bucket` against what this device remembers, and
/// remembers an end-to-end bucket. A server that stops calling an end-to-end bucket so (a
/// compromised or misconfigured one) would otherwise receive plain manifests, chunk keys
/// included: that is refused.
pub fn check_e2e_record(server: &str, bucket: &str, server_says: Option<&str>) -> Result<()> {
    check_e2e_record_in(&e2e_record_path()?, server, bucket, server_says)
}

fn check_e2e_record_in(path: &Path, server: &str, bucket: &str, server_says: Option<&str>) -> Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let remembered = text.lines().find_map(|l| {
        let mut f = l.splitn(3, ' ');
        let (id, b, s) = (f.next()?, f.next()?, f.next()?);
        (b == bucket && s == server).then(|| id.to_owned())
    });
    match (remembered, server_says) {
        (Some(id), Some(said)) if id == said => Ok(()),
        (Some(id), said) => Err(anyhow::Error::new(ClientError::Key(format!(
            "this device knows bucket {bucket} on {server} as end-to-end (key {id}), and the server now says {}: \
             refusing to send or read it in the clear ({} records it)",
            said.map_or("it is not".to_owned(), |s| format!("its key is {s}")),
            path.display()
        )))),
        (None, Some(said)) => {
            use std::io::Write;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            writeln!(f, "{said} {bucket} {server}")?;
            f.sync_all()?;
            Ok(())
        }
        (None, None) => Ok(()),
    }
}

/// Forgets `bucket` (deleted by this device).
pub fn forget_e2e_record(server: &str, bucket: &str) -> Result<()> {
    forget_e2e_record_in(&e2e_record_path()?, server, bucket)
}

fn forget_e2e_record_in(path: &Path, server: &str, bucket: &str) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| {
            let mut f = l.splitn(3, ' ');
            !(f.next().is_some() && f.next() == Some(bucket) && f.next() == Some(server))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).with_context(|| format!("writing {}", path.display()))
}

/// The content key, checked against the id an end-to-end bucket was made with.
pub async fn bucket_key(client: &Client, bucket: &str, id: &str) -> Result<ContentKey> {
    if passphrase_env().is_none() {
        let path = key_path()?;
        if read_key_file(&path)?.is_none() {
            // A new key (`key init`) could never open what is sealed already: say what can.
            return Err(anyhow::Error::new(ClientError::Key(format!(
                "bucket {bucket} is sealed with content key {id}, and this device has no key ({} does \
                 not exist): copy the key file of the device that made the bucket there, or set \
                 NUAGE_PASSPHRASE to the passphrase it was made with",
                path.display()
            ))));
        }
    }
    let key = content_key(client).await?;
    if hex::encode(key.id()) != id {
        return Err(anyhow::Error::new(ClientError::Key(format!(
            "bucket {bucket} is sealed with content key {id}, and this device's key is {}: \
             use the key file or passphrase the bucket was made with",
            hex::encode(key.id())
        ))));
    }
    Ok(key)
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Make this device's end-to-end key: random, kept in the key file (back it up: without
    /// it, end-to-end buckets cannot be read), or derived from a passphrase.
    Init {
        /// Derive the key from a passphrase (asked, or NUAGE_PASSPHRASE), so that any
        /// device can derive it again; it is then kept in the key file too.
        #[arg(long)]
        passphrase: bool,
    },
    /// Where the key is and its id (the id is public; the key never leaves the device).
    Show,
}

pub async fn key(cli: &Globals, cmd: &KeyCmd) -> Result<()> {
    let path = key_path()?;
    match cmd {
        KeyCmd::Init { passphrase } => {
            if path.exists() {
                bail!(
                    "{} exists already; move it away first (it may be the only copy of a key)",
                    path.display()
                );
            }
            let key = if *passphrase {
                let client = client(cli)?;
                let account = client.account().await?.name;
                let p = match passphrase_env() {
                    Some(p) => p,
                    None => {
                        let p = rpassword::prompt_password("passphrase for end-to-end buckets: ")?;
                        if p != rpassword::prompt_password("again: ")? {
                            bail!("the two passphrases differ");
                        }
                        p
                    }
                };
                if p.chars().count() < 12 {
                    bail!("a passphrase needs at least 12 characters");
                }
                tokio::task::spawn_blocking(move || ContentKey::from_passphrase(&p, &account)).await??
            } else {
                ContentKey::random()
            };
            write_key_file(&path, &key)?;
            if cli.json {
                println!("{}", serde_json::json!({"key_file": path, "key_id": hex::encode(key.id())}));
            } else {
                println!("end-to-end key {} saved in {}", hex::encode(key.id()), path.display());
                if !passphrase {
                    println!(
                        "keep a copy of that file somewhere safe: without it, end-to-end buckets cannot be read"
                    );
                }
            }
        }
        KeyCmd::Show => {
            let key = match passphrase_env() {
                Some(_) => Some(content_key(&client(cli)?).await?),
                None => read_key_file(&path)?,
            };
            let Some(key) = key else {
                bail!("no end-to-end key: {} does not exist; run `nuage key init`", path.display());
            };
            let source = if passphrase_env().is_some() {
                "NUAGE_PASSPHRASE".to_owned()
            } else {
                path.display().to_string()
            };
            if cli.json {
                println!("{}", serde_json::json!({"source": source, "key_id": hex::encode(key.id())}));
            } else {
                println!("key {} from {source}", hex::encode(key.id()));
            }
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ShareArgs {
    #[command(subcommand)]
    cmd: Option<ShareCmd>,
    /// BUCKET/KEY to share.
    target: Option<String>,
    /// Lifetime: seconds, or a number with s, m, h or d (`7d`).
    #[arg(long)]
    expires: Option<String>,
    /// Downloads allowed.
    #[arg(long)]
    max_downloads: Option<u64>,
    /// Ask the recipient for a password (asked here, or NUAGE_SHARE_PASSWORD).
    #[arg(long)]
    password: bool,
    /// A version id (default: the current one).
    #[arg(long)]
    version: Option<i64>,
}

#[derive(Debug, Subcommand)]
enum ShareCmd {
    /// List the share links.
    Ls,
    /// Revoke a share link at once.
    Revoke {
        /// Id, from `nuage share ls`.
        id: i64,
    },
}

/// Seconds in `7d`, `12h`, `30m`, `45s` or `3600`.
fn duration_secs(text: &str) -> Result<u64> {
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: u64 =
        number.parse().with_context(|| format!("{text:?}: expected a duration such as 7d, 12h or 30m"))?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => bail!("{text:?}: the unit is s, m, h or d"),
    };
    n.checked_mul(unit).filter(|&s| s > 0).with_context(|| format!("{text:?}: out of range"))
}

fn share_password(confirm: bool) -> Result<String> {
    if let Some(p) = std::env::var("NUAGE_SHARE_PASSWORD").ok().filter(|p| !p.is_empty()) {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(anyhow::Error::new(ClientError::Key(
            "this link asks for a password: set NUAGE_SHARE_PASSWORD".into(),
        )));
    }
    let p = rpassword::prompt_password("share password: ")?;
    if confirm && p != rpassword::prompt_password("again: ")? {
        bail!("the two passwords differ");
    }
    Ok(p)
}

pub async fn share(cli: &Globals, args: &ShareArgs) -> Result<()> {
    let client = client(cli)?;
    match (&args.cmd, &args.target) {
        (Some(ShareCmd::Ls), _) => {
            let shares = client.shares().await?;
            if cli.json {
                println!("{}", serde_json::to_string(&shares)?);
                return Ok(());
            }
            for s in shares {
                let limit = s
                    .max_downloads
                    .map(|m| format!("{}/{m}", s.downloads))
                    .unwrap_or(s.downloads.to_string());
                let expires = s.expires_at.map(utc).unwrap_or_else(|| "never".into());
                let lock = if s.password { ", password" } else { "" };
                println!(
                    "{:>5}  {}/{} v{}  {}  downloads {limit}, expires {expires}{lock}",
                    s.id, s.bucket, s.key, s.version, s.state
                );
            }
        }
        (Some(ShareCmd::Revoke { id }), _) => {
            client.revoke_share(*id).await?;
            if !cli.json {
                println!("revoked share {id}");
            }
        }
        (None, None) => bail!("nuage share BUCKET/KEY, nuage share ls or nuage share revoke ID"),
        (None, Some(target)) => {
            let (bucket, key) = split_target(target)?;
            if key.is_empty() {
                bail!("{target:?}: expected BUCKET/KEY");
            }
            let info = client.bucket(bucket).await?;
            check_e2e_record(client.base(), bucket, info.e2e_key_id.as_deref())?;
            let content_key = match &info.e2e_key_id {
                Some(id) => Some(crate::keys::bucket_key(&client, bucket, id).await?),
                None => None,
            };
            let spec = ShareSpec {
                version: args.version,
                expires_in_secs: args.expires.as_deref().map(duration_secs).transpose()?,
                max_downloads: args.max_downloads,
                password: if args.password { Some(share_password(true)?) } else { None },
                content_key,
            };
            let made = client.create_share(bucket, key, &spec).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&made)?);
            } else {
                println!("{}", made.url);
                let mut notes = vec![format!("share {}", made.share.id)];
                if let Some(e) = made.share.expires_at {
                    notes.push(format!("expires {}", utc(e)));
                }
                if let Some(m) = made.share.max_downloads {
                    notes.push(format!("{m} download(s)"));
                }
                if made.share.password {
                    notes.push("password".into());
                }
                if info.e2e_key_id.is_some() {
                    notes.push("end-to-end: the key is the part after #, which no server sees".into());
                }
                eprintln!("{}", notes.join(", "));
            }
        }
    }
    Ok(())
}

/// `name` when it is a plain file name: one path component, no separator, no control
/// character, not hidden, not starting with `-`.
fn safe_file_name(name: &str) -> Option<&str> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.starts_with('-')
        && !name.chars().any(|c| c.is_control() || matches!(c, '/' | '\\' | ':'))
        && Path::new(name).file_name() == Some(std::ffi::OsStr::new(name));
    plain.then_some(name)
}

fn unsafe_name(name: &str) -> String {
    format!("the link's file name {name:?} is not a plain file name; give a PATH to write to")
}

/// `nuage get URL [PATH]`: downloads a share link, with no account.
pub async fn get_link(cli: &Globals, url: &str, path: Option<&Path>) -> Result<()> {
    let link: ShareUrl = url.parse()?;
    let info = nuage_client::share::link_info(&link).await?;
    // The name comes from the server: it may only ever name a file in the chosen folder.
    let safe = safe_file_name(&info.name);
    let dest = match path {
        Some(p) if p.is_dir() => p.join(safe.with_context(|| unsafe_name(&info.name))?),
        Some(p) => p.to_owned(),
        None => {
            let dest = PathBuf::from(safe.with_context(|| unsafe_name(&info.name))?);
            if dest.exists() {
                bail!("{} exists already; give a PATH to write to", dest.display());
            }
            dest
        }
    };
    let password = if info.password { Some(share_password(false)?) } else { None };
    let started = std::time::Instant::now();
    let bar = bar(cli, info.size);
    download_share(&link, &info, password.as_deref(), cli.region.clone(), &dest, file_progress(&bar))
        .await
        .with_context(|| format!("downloading {url}"))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if cli.json {
        println!(
            "{}",
            serde_json::json!({"path": dest, "size": info.size, "e2e": info.e2e, "seconds": secs})
        );
    } else {
        println!("{}", dest.display());
        println!(
            "{} downloaded and verified{} in {secs:.1} s",
            size(info.size),
            if info.e2e { ", decrypted here" } else { "" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_secs("7d").unwrap(), 7 * 86_400);
        assert_eq!(duration_secs("12h").unwrap(), 12 * 3600);
        assert_eq!(duration_secs("30m").unwrap(), 1800);
        assert_eq!(duration_secs("45").unwrap(), 45);
        for bad in ["", "d", "0", "7w", "-1d", "1.5h"] {
            assert!(duration_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_server_cannot_turn_an_end_to_end_bucket_plain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e2e-buckets");
        let (a, b) = ("http://a", "http://b");
        check_e2e_record_in(&path, a, "vault", None).unwrap();
        check_e2e_record_in(&path, a, "vault", Some("k1")).unwrap(); // remembered
        check_e2e_record_in(&path, a, "vault", Some("k1")).unwrap();
        assert!(check_e2e_record_in(&path, a, "vault", None).is_err(), "now plain: refused");
        assert!(check_e2e_record_in(&path, a, "vault", Some("k2")).is_err(), "another key: refused");
        check_e2e_record_in(&path, b, "vault", None).unwrap(); // another server
        check_e2e_record_in(&path, a, "photos", None).unwrap(); // another bucket
        forget_e2e_record_in(&path, a, "vault").unwrap();
        check_e2e_record_in(&path, a, "vault", None).unwrap(); // deleted, then made again
    }

    #[test]
    fn only_plain_file_names_come_from_a_link() {
        for ok in ["cat.jpg", "été 2026.png", "a..b"] {
            assert_eq!(safe_file_name(ok), Some(ok));
        }
        for bad in ["", ".", "..", "../x", "/etc/passwd", "a/b", "a\\b", ".bashrc", "-rf", "c:x", "a\nb"] {
            assert_eq!(safe_file_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn key_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("content.key");
        assert!(read_key_file(&path).unwrap().is_none());
        let key = ContentKey::random();
        write_key_file(&path, &key).unwrap();
        assert_eq!(read_key_file(&path).unwrap(), Some(key.clone()));
        assert!(write_key_file(&path, &key).is_err(), "never overwrites a key file");
        std::fs::write(&path, "something else").unwrap();
        assert!(read_key_file(&path).is_err());
    }
}
