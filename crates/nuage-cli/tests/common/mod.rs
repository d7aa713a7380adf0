//! The harness of the end-to-end tests: a deployment (configuration, data folder, client
//! configuration), the real `nuage` binary as child processes, test data.
#![allow(dead_code)] // each test file uses part of it

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const NUAGE: &str = env!("CARGO_BIN_EXE_nuage");

pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A running `nuage serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One deployment: a configuration file, a data folder, a client configuration.
pub struct Deployment {
    pub dir: tempfile::TempDir,
}

impl Deployment {
    pub fn new(config: &str) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n{config}", dir.path().join("data"));
        std::fs::write(dir.path().join("nuage.toml"), text).unwrap();
        Deployment { dir }
    }

    /// Appends `extra` (TOML: `[buckets]` and `[workers]` settings) and two folder
    /// providers, `a` and `b`, under the deployment's folder, to its configuration.
    pub fn with_two_folders(self, extra: &str) -> Deployment {
        self.with_folders(extra, &["a", "b"])
    }

    /// Appends `extra` and a folder provider per name, in a folder of that name.
    pub fn with_folders(self, extra: &str, names: &[&str]) -> Deployment {
        let mut config = std::fs::read_to_string(self.path("nuage.toml")).unwrap() + extra + "\n";
        for name in names {
            config +=
                &format!("[[providers]]\nname = {name:?}\nscheme = \"fs\"\nroot = {:?}\n", self.path(name));
        }
        std::fs::write(self.path("nuage.toml"), config).unwrap();
        self
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(NUAGE);
        c.arg("--config")
            .arg(self.path("nuage.toml"))
            .env("NUAGE_CLIENT_CONFIG", self.path("client.toml"))
            .env("NUAGE_CACHE_DIR", self.path("cache"))
            .env_remove("NUAGE_SERVER")
            .env_remove("NUAGE_TOKEN")
            .env_remove("NUAGE_DATA_DIR")
            .env_remove("NUAGE_DATABASE_URL")
            .env_remove("NUAGE_LISTEN");
        c
    }

    /// Starts the server and waits for the line that gives its address.
    pub fn serve(&self) -> Server {
        self.serve_with(&[])
    }

    /// Starts the server with more `serve` arguments.
    pub fn serve_with(&self, args: &[&str]) -> Server {
        let mut c = self.command();
        c.arg("serve").args(args);
        spawn_until(c, "nuage serving on ")
    }

    /// Starts `nuage edge ARGS` (no server configuration) and waits until it listens.
    pub fn edge(&self, args: &[&str]) -> Server {
        let mut c = Command::new(NUAGE);
        c.arg("edge").args(args).env_remove("NUAGE_CONFIG").env_remove("NUAGE_ORIGIN");
        spawn_until(c, "nuage edge serving on ")
    }

    /// Creates the account `alice` (password `s3cret`), logs in to `server` as her, and
    /// returns her admin token.
    pub fn alice(&self, server: &Server) -> String {
        let created =
            self.ok_with(&["--json", "admin", "account", "create", "alice", "--password-stdin"], "s3cret\n");
        self.ok_with(
            &["--server", &server.url, "login", "--account", "alice", "--password-stdin"],
            "s3cret\n",
        );
        serde_json::from_str::<serde_json::Value>(&created).unwrap()["token"].as_str().unwrap().to_owned()
    }

    /// Runs `nuage ARGS` with `stdin`, returns its output.
    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        self.run_env(args, stdin, &[])
    }

    /// Runs `nuage ARGS` with `stdin` and more environment variables.
    pub fn run_env(&self, args: &[&str], stdin: &str, vars: &[(&str, &str)]) -> Output {
        let mut child = self
            .command()
            .envs(vars.iter().copied())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs `nuage ARGS` and expects success.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, "")
    }

    pub fn ok_with(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "nuage {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// Spawns `command` and waits for the stdout line starting with `prefix`, which gives the URL.
pub fn spawn_until(mut command: Command, prefix: &str) -> Server {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("starting nuage");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix(prefix) {
                    break url.to_owned();
                }
            }
            _ => panic!("nuage exited before listening: {:?}", child.wait()),
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn data(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Every file under `root` with its content, by relative path.
pub fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// One counter of the server's `/metrics`.
pub fn metric(url: &str, name: &str) -> u64 {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// Creates an empty database on the PostgreSQL server of `base` and returns its URL.
pub fn fresh_pg_database(base: &str) -> String {
    let name = format!("nuage_e2e_{}_{}", std::process::id(), rand_suffix());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(base).await.expect("connecting to PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    });
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

pub fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        % 1_000_000_007
}

/// Waits until `done()` holds, checking it again each time `progress` is notified (the
/// clients of a load test notify it after every request); fails after two minutes without
/// it holding.
pub async fn until(progress: &tokio::sync::Notify, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let notified = progress.notified();
        tokio::pin!(notified);
        notified.as_mut().enable(); // before the check: a notification in between is kept
        if done() {
            return;
        }
        tokio::time::timeout_at(deadline, notified).await.expect("the clients made no progress");
    }
}
