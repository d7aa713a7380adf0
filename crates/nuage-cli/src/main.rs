//! The `nuage` command: parses arguments, calls the libraries, prints results.
//!
//! - `serve`, `admin …`: run and administer a link server ([`server`]).
//! - `edge`: run an edge cache in front of one ([`edge`]).
//! - `login`, `bucket`, `access-key`, `put`, `get`, `ls`, `rm`, `versions`, `restore BUCKET/KEY`,
//!   `undelete`: use one ([`remote`]).
//! - `key`, `share`, `get URL`: the end-to-end key and share links ([`keys`]).
//! - `ingest`, `restore`, `snapshots`: the chunk path straight to providers, with no
//!   server ([`local`]).

mod edge;
mod keys;
mod local;
mod memory;
mod remote;
mod server;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nuage_client::ClientError;
use session::Globals;

/// nuage: a storage cloud that keeps links, with the bytes encrypted on providers you rent.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the link server (SQLite and local folders unless the configuration says otherwise).
    Serve(server::ServeArgs),
    /// Run an edge cache of chunks in front of a link server (`--origin URL`).
    Edge(edge::EdgeArgs),
    /// Administer the server's accounts (runs against its database directly).
    #[command(subcommand)]
    Admin(server::Admin),
    /// Log in to a server and save the token for the other commands.
    Login(remote::LoginArgs),
    /// Revoke the saved token and forget it.
    Logout,
    /// Create, list or delete buckets.
    #[command(subcommand)]
    Bucket(remote::BucketCmd),
    /// Upload a file or a folder (recursively) to BUCKET/KEY.
    Put(remote::PutArgs),
    /// Download BUCKET/KEY (or every key under BUCKET/PREFIX/, or a share URL) to PATH.
    Get(remote::GetArgs),
    /// List buckets, or the keys of BUCKET[/PREFIX].
    Ls(remote::LsArgs),
    /// Delete BUCKET/KEY (or, with -r, every key under the prefix).
    Rm(remote::RmArgs),
    /// List the versions of BUCKET/KEY.
    Versions(remote::VersionsArgs),
    /// Make a share link of BUCKET/KEY (prints its URL); `share ls`, `share revoke ID`.
    Share(keys::ShareArgs),
    /// Your account's S3 access keys: create, ls, revoke (`nuage key` is this device's
    /// end-to-end key).
    #[command(subcommand)]
    AccessKey(remote::AccessKeyCmd),
    /// The end-to-end key of this device (for end-to-end buckets).
    #[command(subcommand)]
    Key(keys::KeyCmd),
    /// Chunk, encrypt and store a file or folder straight on the providers; records a snapshot.
    ///
    /// Files whose size, mtime, ctime and inode are those the last snapshot of the same path
    /// recorded are not read again.
    Ingest {
        /// File or folder.
        path: PathBuf,
        /// Read every file, ignoring earlier snapshots.
        #[arg(long)]
        full: bool,
    },
    /// Bring back an old or deleted version of BUCKET/KEY as its current version (on the
    /// server, nothing downloaded); or, given SNAPSHOT DEST, write the files of a snapshot
    /// back under DEST, verifying every chunk.
    Restore {
        /// BUCKET/KEY, or a snapshot name (as printed by `ingest` and `snapshots`) or path.
        source: String,
        /// For a snapshot: the destination folder.
        dest: Option<PathBuf>,
        /// The version to bring back (from `nuage versions`); default: the last one before
        /// the key was deleted.
        #[arg(long)]
        version: Option<i64>,
    },
    /// Bring back the last version of a deleted BUCKET/KEY (`restore` without `--version`).
    Undelete {
        /// BUCKET/KEY.
        target: String,
    },
    /// List the snapshots.
    Snapshots,
    /// Print the OpenAPI 3.1 document of the HTTP API (what `GET /v1/openapi.json` serves).
    Openapi,
}

/// Exit codes, documented in docs/cli.md.
/// The message of a failed command: the chain of contexts, except that a server that cannot
/// be reached is said once, plainly, with what to check.
fn explain(e: &anyhow::Error) -> String {
    // Retried until the window was spent: what was being done, and the failure, in words.
    let gave_up = e.chain().position(|c| {
        matches!(c.downcast_ref::<ClientError>(), Some(ClientError::GaveUp { .. } | ClientError::Cut { .. }))
    });
    if let Some(at) = gave_up {
        return e.chain().take(at + 1).map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
    }
    let unreachable = e.chain().find_map(|c| match c.downcast_ref::<ClientError>() {
        Some(ClientError::Http(h)) if h.is_connect() || h.is_timeout() => Some(h),
        _ => None,
    });
    let Some(h) = unreachable else { return format!("{e:#}") };
    let server = h.url().map(|u| u.origin().ascii_serialization()).unwrap_or_else(|| "the server".into());
    let root = e.chain().last().map(|c| c.to_string()).unwrap_or_default();
    let doing =
        e.chain().next().map(|c| c.to_string()).filter(|top| !top.starts_with("talking to the server"));
    let what = if h.is_timeout() { "did not answer in time" } else { "cannot be reached" };
    format!(
        "{}{server} {what} ({root}): is `nuage serve` running at {server}? (the server comes from \
         --server, NUAGE_SERVER or `nuage login`)",
        doing.map(|d| format!("{d}: ")).unwrap_or_default()
    )
}

fn exit_code(e: &anyhow::Error) -> u8 {
    let Some(c) = e.chain().find_map(|c| c.downcast_ref::<ClientError>()) else { return 1 };
    match c {
        ClientError::Api { status: 404, .. } => 3,
        ClientError::Api { status: 401 | 403, .. } => 4,
        ClientError::Api { status: 409 | 410 | 412 | 422, .. } => 5,
        ClientError::Api { status: 413 | 507, .. } => 6,
        ClientError::Api { status: 429 | 502..=504, .. }
        | ClientError::Http(_)
        | ClientError::GaveUp { .. } => 7,
        ClientError::Integrity(_) => 8,
        ClientError::Interrupted | ClientError::Cut { .. } => 9,
        ClientError::Key(_) => 10,
        _ => 1,
    }
}

fn main() -> ExitCode {
    // Before any thread is started: each would take an arena of its own.
    memory::two_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime")
        .block_on(run())
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    // The server logs what it does; client commands only warn, in plain lines. Colours only
    // on a terminal.
    let daemon = matches!(cli.command, Command::Serve(_) | Command::Edge(_));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // s3s logs every refused S3 request (a 404, a bad signature) as an error: those are
        // answers, not faults of the server; what fails inside is logged by nuage itself.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(if daemon { "info,s3s=off" } else { "warn,s3s=off" })
        });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if daemon {
        logs.init();
    } else {
        logs.without_time().with_target(false).init();
    }
    let result = match &cli.command {
        Command::Serve(args) => server::serve(&cli.globals, args).await,
        Command::Edge(args) => edge::edge(&cli.globals, args).await,
        Command::Admin(cmd) => server::admin(&cli.globals, cmd).await,
        Command::Login(args) => remote::login(&cli.globals, args).await,
        Command::Logout => remote::logout(&cli.globals).await,
        Command::Bucket(cmd) => remote::bucket(&cli.globals, cmd).await,
        Command::Put(args) => remote::put(&cli.globals, args).await,
        Command::Get(args) => remote::get(&cli.globals, args).await,
        Command::Ls(args) => remote::ls(&cli.globals, args).await,
        Command::Rm(args) => remote::rm(&cli.globals, args).await,
        Command::Versions(args) => remote::versions(&cli.globals, args).await,
        Command::Share(args) => keys::share(&cli.globals, args).await,
        Command::AccessKey(cmd) => remote::access_key(&cli.globals, cmd).await,
        Command::Key(cmd) => keys::key(&cli.globals, cmd).await,
        Command::Ingest { path, full } => local::ingest(&cli.globals, path, *full).await,
        Command::Restore { source, dest: Some(dest), version: None } => {
            local::restore(&cli.globals, source, dest).await
        }
        Command::Restore { dest: Some(_), version: Some(_), .. } => {
            Err(anyhow::anyhow!("--version is for BUCKET/KEY; a snapshot is restored as SNAPSHOT DEST"))
        }
        Command::Restore { source, dest: None, version } => {
            remote::restore(&cli.globals, source, *version).await
        }
        Command::Undelete { target } => remote::restore(&cli.globals, target, None).await,
        Command::Snapshots => local::snapshots(&cli.globals),
        Command::Openapi => serde_json::to_string_pretty(&nuage_server::openapi_document())
            .map(|doc| println!("{doc}"))
            .map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit_code(&e);
            if cli.globals.json {
                let api = e.chain().find_map(|c| c.downcast_ref::<ClientError>()).and_then(ClientError::code);
                eprintln!(
                    "{}",
                    serde_json::json!({"error": {"message": explain(&e), "exit_code": code, "code": api}})
                );
            } else {
                eprintln!("nuage: {}", explain(&e));
            }
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
