//! The port's limits, over real TCP on loopback (`nuage_server::serve_on`): a client that
//! sends its headers or its body too slowly is cut off, an idle keep-alive connection is
//! closed, and one address holds a bounded number of connections. Each test paces its client
//! with sleeps (that is the behaviour under test); no test waits on a sleep to know that the
//! server did something.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nuage_server::{Nuage, ServerConfig, auth};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Server {
    addr: SocketAddr,
    token: String,
    _dir: tempfile::TempDir,
}

async fn server(http: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config: ServerConfig =
        toml::from_str(&format!("data_dir = {:?}\n[http]\n{http}", dir.path())).unwrap();
    let nuage = Arc::new(Nuage::open(config.service).await.unwrap());
    let hash = auth::hash_password("pw").unwrap();
    let account = nuage.meta.create_account("alice", Some(&hash), None, [1; 32]).await.unwrap();
    let token = nuage_server::issue_token(&nuage, account.id, "test").await.unwrap().token;
    let policy = nuage_meta::BucketPolicy {
        replicas: 1,
        write_quorum: 1,
        keep_versions: 1,
        e2e_key_id: None,
        direct_upload: false,
    };
    nuage.meta.create_bucket(account.id, "files", policy).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(nuage_server::serve_on(nuage, listener, config.http));
    Server { addr, token, _dir: dir }
}

/// One answer read off a connection: its status and body (by `Content-Length`).
async fn read_answer(stream: &mut TcpStream) -> Option<(u16, String)> {
    read_answer_from(stream).await
}

async fn read_answer_from(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.ok()?;
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

fn code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["error"]["code"].as_str().unwrap_or("").to_owned()
}

/// Waits (at most a minute, so a broken server fails the test instead of hanging it) until
/// the server closes the connection; what it sent before is returned.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut got))
        .await
        .expect("the server never closed the connection")
        .ok();
    got
}

impl Server {
    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    fn head(&self, method: &str, path: &str, extra: &str) -> String {
        format!("{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n{extra}\r\n", self.token)
    }

    async fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut c = self.connect().await;
        let head = self.head(method, path, &format!("content-length: {}\r\n", body.len()));
        c.write_all(head.as_bytes()).await.unwrap();
        c.write_all(body).await.unwrap();
        read_answer(&mut c).await.expect("an answer")
    }
}

#[tokio::test]
async fn a_request_line_that_never_ends_and_an_idle_connection_are_closed() {
    let s = server("header_timeout_secs = 1").await;
    let started = Instant::now();
    let mut partial = s.connect().await;
    partial.write_all(b"GET /healthz HTT").await.unwrap();
    let mut idle = s.connect().await;
    idle.write_all(s.head("GET", "/healthz", "").as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut idle).await.expect("an answer").0, 200);
    // Both are closed by the server (a partial line gets no answer that is a success).
    let got = until_closed(&mut partial).await;
    assert!(!String::from_utf8_lossy(&got).contains(" 200 "), "{got:?}");
    assert!(until_closed(&mut idle).await.is_empty());
    assert!(started.elapsed() >= Duration::from_secs(1), "closed before the timeout");
    // The server still serves.
    assert_eq!(s.request("GET", "/healthz", b"").await.0, 200);
}

#[tokio::test]
async fn an_idle_or_trickled_body_is_cut_with_408_and_stores_nothing() {
    let s = server("body_timeout_secs = 1\nbody_min_bytes_per_sec = 200").await;
    // A chunked body that stops after its first chunk.
    let mut idle = s.connect().await;
    let head = s.head("PUT", "/v1/buckets/files/objects/idle", "transfer-encoding: chunked\r\n");
    idle.write_all(head.as_bytes()).await.unwrap();
    idle.write_all(b"5\r\nhello\r\n").await.unwrap();
    let (status, body) = read_answer(&mut idle).await.expect("an answer");
    assert_eq!((status, code(&body).as_str()), (408, "request_timeout"), "{body}");

    // A body of 2000 bytes sent 1 byte every 20 ms: 50 B/s, under the 200 B/s floor.
    // The answer is read while the trickle goes on, and ends it.
    let mut slow = s.connect().await;
    let head = s.head("PUT", "/v1/buckets/files/objects/slow", "content-length: 2000\r\n");
    slow.write_all(head.as_bytes()).await.unwrap();
    let (mut from, mut to) = slow.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..2000 {
            if to.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let answer = read_answer_from(&mut from).await;
    trickle.abort();
    let (status, body) = answer.expect("an answer");
    assert_eq!((status, code(&body).as_str()), (408, "request_timeout"), "{body}");

    // The same body at 1000 B/s passes: the floor is not a ceiling.
    let mut fine = s.connect().await;
    let head = s.head("PUT", "/v1/buckets/files/objects/fine", "content-length: 2000\r\n");
    fine.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..20 {
        fine.write_all(&[b'y'; 100]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = read_answer(&mut fine).await.expect("an answer");
    assert_eq!(status, 201, "{body}");

    // A JSON body that stops: the same answer through the JSON extractor.
    let mut json = s.connect().await;
    let head = s.head("POST", "/v1/uploads", "content-type: application/json\r\ncontent-length: 100\r\n");
    json.write_all(head.as_bytes()).await.unwrap();
    json.write_all(br#"{"bucket":"#).await.unwrap();
    let (status, body) = read_answer(&mut json).await.expect("an answer");
    assert_eq!((status, code(&body).as_str()), (408, "request_timeout"), "{body}");

    for (key, want) in [("idle", 404), ("slow", 404), ("fine", 200)] {
        let (status, _) = s.request("GET", &format!("/v1/buckets/files/objects/{key}"), b"").await;
        assert_eq!(status, want, "{key}");
    }
}

#[tokio::test]
async fn one_address_holds_at_most_its_connections() {
    let s = server("connections_per_client = 2").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = s.connect().await;
        c.write_all(s.head("GET", "/healthz", "").as_bytes()).await.unwrap();
        assert_eq!(read_answer(&mut c).await.expect("an answer").0, 200);
        held.push(c); // kept alive: each still counts
    }
    // A client over the limit that sends its request at once still reads the refusal.
    let mut third = s.connect().await;
    third
        .write_all(s.head("PUT", "/v1/buckets/files/objects/x", "content-length: 10000\r\n").as_bytes())
        .await
        .unwrap();
    third.write_all(&[b'z'; 10000]).await.unwrap();
    let (status, body) = read_answer(&mut third).await.expect("an answer");
    assert_eq!((status, code(&body).as_str()), (503, "too_many_connections"), "{body}");
    assert!(until_closed(&mut third).await.is_empty());

    // Once one closes, its slot is free again (as soon as the server has seen the close).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = s.request("GET", "/healthz", b"").await;
        if status == 200 {
            break;
        }
        assert_eq!(code(&body), "too_many_connections");
        assert!(Instant::now() < deadline, "the closed connection's slot was never freed");
        tokio::task::yield_now().await;
    }
}
