//! Test backends: which providers the behavior suite runs against, chosen by environment
//! variables (set by `scripts/test-servers.sh env`), and private server instances that a test
//! may kill.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use nuage_blob::{ProviderConfig, ProviderKind, Secret};

/// A backend the suite runs against, with what keeps it alive (a temp dir).
pub struct Backend {
    pub config: ProviderConfig,
    _dir: Option<tempfile::TempDir>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn required(name: &str) -> String {
    env(name).unwrap_or_else(|| panic!("{name} must be set when the suite is asked to use this server"))
}

/// A root folder unique to this test run, so tests sharing a server never see each other.
pub fn unique_root(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
    format!("/behavior/{test}-{nanos}-{}-{}/", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn memory(name: &str) -> Backend {
    Backend { config: ProviderConfig::new(name, ProviderKind::Memory), _dir: None }
}

pub fn fs(name: &str) -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let config = ProviderConfig::new(name, ProviderKind::Fs { root: dir.path().join("chunks") });
    Backend { config, _dir: Some(dir) }
}

pub fn s3(name: &str, test: &str) -> Option<Backend> {
    let endpoint = env("NUAGE_TEST_S3_ENDPOINT")?;
    Some(s3_at(name, &endpoint, &required("NUAGE_TEST_S3_BUCKET"), Some(unique_root(test))))
}

fn s3_at(name: &str, endpoint: &str, bucket: &str, root: Option<String>) -> Backend {
    let kind = ProviderKind::S3 {
        bucket: bucket.to_owned(),
        endpoint: endpoint.to_owned(),
        access_key_id: required("NUAGE_TEST_S3_ACCESS_KEY"),
        secret_access_key: Secret(required("NUAGE_TEST_S3_SECRET_KEY")),
        root,
    };
    let config = ProviderConfig { region: env("NUAGE_TEST_S3_REGION"), ..ProviderConfig::new(name, kind) };
    Backend { config, _dir: None }
}

pub fn azblob(name: &str, test: &str) -> Option<Backend> {
    let endpoint = env("NUAGE_TEST_AZBLOB_ENDPOINT")?;
    Some(azblob_at(name, &endpoint, &required("NUAGE_TEST_AZBLOB_CONTAINER"), Some(unique_root(test))))
}

fn azblob_at(name: &str, endpoint: &str, container: &str, root: Option<String>) -> Backend {
    let kind = ProviderKind::Azblob {
        container: container.to_owned(),
        endpoint: endpoint.to_owned(),
        account_name: required("NUAGE_TEST_AZBLOB_ACCOUNT_NAME"),
        account_key: Secret(required("NUAGE_TEST_AZBLOB_ACCOUNT_KEY")),
        root,
    };
    Backend { config: ProviderConfig::new(name, kind), _dir: None }
}

/// Every backend of the suite: memory and fs always; S3 and Azure Blob when the environment
/// names their servers. `NUAGE_TEST_REQUIRE=s3,azblob` makes a missing one a failure.
pub fn all(test: &str) -> Vec<Backend> {
    let mut out = vec![memory("memory"), fs("fs")];
    out.extend(s3("s3", test));
    out.extend(azblob("azblob", test));
    // NUAGE_TEST_BACKENDS=fs,s3 narrows a run to some backends (for debugging).
    if let Some(only) = env("NUAGE_TEST_BACKENDS") {
        out.retain(|b| only.split(',').any(|s| s.trim() == b.config.kind.scheme()));
    }
    for want in ["s3", "azblob"].into_iter().filter(|s| is_required(s)) {
        assert!(
            out.iter().any(|b| b.config.kind.scheme() == want),
            "NUAGE_TEST_REQUIRE asks for {want}, but its server is not configured (run scripts/test-servers.sh start)"
        );
    }
    out
}

fn is_required(scheme: &str) -> bool {
    env("NUAGE_TEST_REQUIRE").unwrap_or_default().split(',').any(|s| s.trim() == scheme)
}

/// A server process of our own, killed on drop.
pub struct PrivateServer {
    pub backend: Backend,
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
    /// How to start it again: program, arguments, what it is.
    command: (String, Vec<String>, &'static str),
}

impl PrivateServer {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The folder that holds the server's data (s3s-fs keeps one file per object there).
    pub fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }

    /// Starts it again on the same port, after [`PrivateServer::kill`], with its data lost:
    /// an empty bucket or container of the same name, as after a disaster.
    pub fn restart_empty(&mut self) {
        self.kill();
        let data = self._dir.path().join("data");
        let _ = std::fs::remove_dir_all(&data);
        let (bin, args, what) = &self.command;
        if *what == "s3s-fs" {
            std::fs::create_dir_all(data.join("private")).unwrap();
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.child = spawn(bin, &args, self._dir.path(), what, self.port);
        if *what == "azurite" {
            create_container(
                self.port,
                &required("NUAGE_TEST_AZBLOB_ACCOUNT_NAME"),
                &required("NUAGE_TEST_AZBLOB_ACCOUNT_KEY"),
                "private",
            );
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status}: {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port} within 30 s");
        std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded above
    }
}

fn spawn(bin: &str, args: &[&str], dir: &Path, what: &str, port: u16) -> Child {
    let log = dir.join("server.log");
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(std::fs::File::create(dir.join("server.err")).unwrap()))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({bin}): {e}"));
    wait_for_port(port, &mut child, what, &dir.join("server.err"));
    child
}

/// A private s3s-fs, or `None` when the suite is not asked to use S3.
pub fn private_s3(name: &str) -> Option<PrivateServer> {
    if env("NUAGE_TEST_S3_ENDPOINT").is_none() {
        assert!(!is_required("s3"), "NUAGE_TEST_REQUIRE asks for s3, but NUAGE_TEST_S3_ENDPOINT is not set");
        return None;
    }
    let bin = required("NUAGE_TEST_S3S_BIN");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data/private")).unwrap();
    let port = free_port();
    let (ak, sk) = (required("NUAGE_TEST_S3_ACCESS_KEY"), required("NUAGE_TEST_S3_SECRET_KEY"));
    let data: PathBuf = dir.path().join("data");
    let args = ["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", &ak, "--secret-key", &sk];
    let mut args: Vec<&str> = args.to_vec();
    let data = data.to_string_lossy().into_owned();
    args.push(&data);
    let child = spawn(&bin, &args, dir.path(), "s3s-fs", port);
    let mut backend = s3_at(name, &format!("http://127.0.0.1:{port}"), "private", None);
    backend.config = backend.config.with_timeout(5);
    let command = (bin.clone(), args.iter().map(|a| a.to_string()).collect(), "s3s-fs");
    Some(PrivateServer { backend, child, port, _dir: dir, command })
}

/// A private Azurite (blob service) with a container, or `None` when the suite is not asked
/// to use Azure Blob.
pub fn private_azblob(name: &str) -> Option<PrivateServer> {
    if env("NUAGE_TEST_AZBLOB_ENDPOINT").is_none() {
        assert!(
            !is_required("azblob"),
            "NUAGE_TEST_REQUIRE asks for azblob, but NUAGE_TEST_AZBLOB_ENDPOINT is not set"
        );
        return None;
    }
    let bin = required("NUAGE_TEST_AZURITE_BIN");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let location = dir.path().join("data").to_string_lossy().into_owned();
    let port_s = port.to_string();
    let args = [
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        &port_s,
        "--location",
        &location,
        "--silent",
        "--disableTelemetry",
        "--skipApiVersionCheck",
    ];
    let child = spawn(&bin, &args, dir.path(), "azurite", port);
    let account = required("NUAGE_TEST_AZBLOB_ACCOUNT_NAME");
    create_container(port, &account, &required("NUAGE_TEST_AZBLOB_ACCOUNT_KEY"), "private");
    let mut backend = azblob_at(name, &format!("http://127.0.0.1:{port}/{account}"), "private", None);
    backend.config = backend.config.with_timeout(5);
    let command = (bin.clone(), args.iter().map(|a| a.to_string()).collect(), "azurite");
    Some(PrivateServer { backend, child, port, _dir: dir, command })
}

/// Creates a container with a SharedKey-signed request (OpenDAL has no call for it).
fn create_container(port: u16, account: &str, key_b64: &str, container: &str) {
    use base64::Engine;
    use std::io::{Read, Write};
    let b64 = base64::engine::general_purpose::STANDARD;
    let date = httpdate();
    let version = "2021-12-02";
    let string_to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{account}/{account}/{container}\nrestype:container"
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &b64.decode(key_b64).unwrap());
    let sig = b64.encode(aws_lc_rs::hmac::sign(&key, string_to_sign.as_bytes()).as_ref());
    let request = format!(
        "PUT /{account}/{container}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\nContent-Length: 0\r\nAuthorization: SharedKey {account}:{sig}\r\nConnection: close\r\n\r\n"
    );
    // Azurite may accept the readiness probe and refuse a connection just after (seen once
    // in a hundred restarts): the connection is tried again for a bounded time.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline && e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded above
            }
            Err(e) => panic!("connecting to azurite on {port} to create {container}: {e}"),
        }
    };
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "container creation failed: {response}");
}

/// The current time as an HTTP date (RFC 7231, always GMT).
fn httpdate() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let (year, month, day) = nuage_core::date::civil(days);
    let mon = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        [month as usize - 1];
    format!("{weekday}, {day:02} {mon} {year} {:02}:{:02}:{:02} GMT", rem / 3600, rem % 3600 / 60, rem % 60)
}
