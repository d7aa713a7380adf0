//! End to end: the real `nuage serve` binary as a child process, driven through the `nuage`
//! CLI and the SDK. Runs on SQLite + a local folder always; on PostgreSQL + the S3 server +
//! Azurite when `scripts/test-servers.sh env` names them (`NUAGE_TEST_REQUIRE` containing
//! `postgres` makes their absence a failure).

mod common;

use std::io::Write;
use std::path::Path;

use common::*;
use nuage_client::Client;
use nuage_client::api::no_progress;

/// The whole user story, then restarts and resumes.
/// `direct`: S3 is among the providers, so the smart uploads to the `--direct-upload`
/// bucket go straight to it.
fn scenario(d: &Deployment, direct: bool) {
    let server = d.serve();
    let created =
        d.ok_with(&["--json", "admin", "account", "create", "alice", "--password-stdin"], "s3cret\n");
    let admin_token =
        serde_json::from_str::<serde_json::Value>(&created).unwrap()["token"].as_str().unwrap().to_owned();
    d.ok_with(&["--server", &server.url, "login", "--account", "alice", "--password-stdin"], "s3cret\n");
    let wrong =
        d.run(&["--server", &server.url, "login", "--account", "alice", "--password-stdin"], "nope\n");
    assert_eq!(wrong.status.code(), Some(4), "a wrong password exits with the auth code");
    // Direct upload: with S3 among the providers, chunks go to it with presigned URLs (the
    // server verifies them at commit); with a local folder only, through the server.
    d.ok(&["bucket", "create", "photos", "--direct-upload"]);

    let src = d.path("src");
    std::fs::create_dir_all(src.join("2026/trip")).unwrap();
    std::fs::write(src.join("2026/trip/big.raw"), data(3_000_000, 1)).unwrap();
    std::fs::write(src.join("2026/trip/small.txt"), b"hello").unwrap();
    std::fs::write(src.join("2026/empty"), b"").unwrap();
    std::fs::write(src.join("notes é.md"), data(10_000, 2)).unwrap();
    d.ok(&["put", src.to_str().unwrap(), "photos/backup"]);
    let through_server = metric(&server.url, "nuage_chunks_written_total");
    assert_eq!(through_server == 0, direct, "{through_server} chunks went through the server");
    let listed = d.ok(&["--json", "ls", "-r", "photos"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["objects"].as_array().unwrap().len(), 4);

    let out = d.path("out");
    d.ok(&["get", "photos/backup", out.to_str().unwrap()]);
    assert!(tree(&src) == tree(&out), "the folder comes back identical");
    // Fetched again: what is there already is left alone; a file changed since is never
    // overwritten without --force (nothing at all is downloaded then).
    let again = d.ok(&["get", "photos/backup", out.to_str().unwrap()]);
    assert!(again.contains("0 file(s) downloaded") && again.contains("4 unchanged"), "{again}");
    std::fs::write(out.join("notes é.md"), b"edited here").unwrap();
    std::fs::remove_file(out.join("2026/empty")).unwrap();
    let refused = d.run(&["get", "photos/backup", out.to_str().unwrap()], "");
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("exists with other content") && said.contains("--force"), "{said}");
    assert!(!out.join("2026/empty").exists(), "a refused get writes nothing");
    let one = out.join("2026/trip/small.txt");
    std::fs::write(&one, b"mine").unwrap();
    let refused = d.run(&["get", "photos/backup/2026/trip/small.txt", one.to_str().unwrap()], "");
    assert!(!refused.status.success());
    assert_eq!(std::fs::read(&one).unwrap(), b"mine");
    d.ok(&["get", "--force", "photos/backup", out.to_str().unwrap()]);
    assert!(tree(&src) == tree(&out), "--force brings the folder back identical");
    let folder = d.run(&["rm", "photos/backup"], "");
    let said = String::from_utf8_lossy(&folder.stderr);
    assert!(!folder.status.success() && said.contains("nuage rm -r photos/backup/"), "{said}");
    // `ls` has headers and sizes people read; the put's summary says what happened.
    let listing = d.ok(&["ls", "photos/backup"]);
    assert!(
        listing.starts_with("      SIZE  MODIFIED")
            && listing.contains("folder")
            && listing.contains("KiB  "),
        "{listing}"
    );
    let again = d.ok(&["put", src.to_str().unwrap(), "photos/backup"]);
    assert!(again.contains("0 file(s) sent, 4 unchanged"), "{again}");

    // A deleted key: `get` says that versions are kept and how to bring one back; `undelete`
    // does it on the server, `restore --version` takes an older content back.
    let key = "photos/backup/2026/trip/small.txt";
    let first =
        serde_json::from_str::<serde_json::Value>(&d.ok(&["--json", "versions", key])).unwrap()[0]["version"]
            .as_i64()
            .unwrap();
    d.ok(&["rm", key]);
    let gone = d.run(&["get", key, d.path("gone.txt").to_str().unwrap()], "");
    let said = String::from_utf8_lossy(&gone.stderr);
    assert_eq!(gone.status.code(), Some(3), "{said}");
    assert!(said.contains("was deleted") && said.contains(&format!("nuage undelete {key}")), "{said}");
    let as_json = d.run(&["--json", "get", key, d.path("gone.txt").to_str().unwrap()], "");
    let error: serde_json::Value = serde_json::from_slice(&as_json.stderr).expect("--json errors are JSON");
    assert_eq!(
        (error["error"]["code"].as_str(), error["error"]["exit_code"].as_u64()),
        (Some("object_not_found"), Some(3))
    );
    let undeleted = d.ok(&["undelete", key]);
    assert!(
        undeleted.contains(&format!("content of version {first}"))
            && undeleted.contains("nothing was downloaded"),
        "{undeleted}"
    );
    let live = d.run(&["undelete", key], "");
    assert!(
        String::from_utf8_lossy(&live.stderr).contains("is not deleted"),
        "undelete of a live key explains"
    );
    let fetched = d.path("fetched.txt");
    d.ok(&["get", key, fetched.to_str().unwrap()]);
    assert_eq!(std::fs::read(&fetched).unwrap(), b"hello");
    let newer = d.path("newer.txt");
    std::fs::write(&newer, b"newer").unwrap();
    d.ok(&["put", newer.to_str().unwrap(), key]);
    d.ok(&["restore", key, "--version", &first.to_string()]);
    d.ok(&["get", "--force", key, fetched.to_str().unwrap()]);
    assert_eq!(std::fs::read(&fetched).unwrap(), b"hello", "restore --version brought the old content back");

    // A re-upload of a folder in which 1% of the bytes changed sends at most 2% of them: the
    // smart upload sends only the chunks the server lacks.
    let docs = d.path("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for i in 0..100 {
        std::fs::write(docs.join(format!("doc{i:03}.bin")), data(40_000, 100 + i)).unwrap();
    }
    let put_json = |args: &[&str]| -> serde_json::Value { serde_json::from_str(&d.ok(args)).unwrap() };
    let first = put_json(&["--json", "put", docs.to_str().unwrap(), "photos/docs"]);
    assert_eq!(first["bytes_sent"], first["stored_bytes"], "the first upload sends everything: {first}");
    std::fs::write(docs.join("doc042.bin"), data(40_000, 4242)).unwrap();
    let second = put_json(&["--json", "put", docs.to_str().unwrap(), "photos/docs"]);
    let (sent, total) = (second["bytes_sent"].as_u64().unwrap(), second["bytes"].as_u64().unwrap());
    eprintln!(
        "re-upload after a 1% change: sent {sent} of {total} bytes; {} files unchanged",
        second["unchanged"]
    );
    assert!(sent > 0 && sent * 50 <= total, "sent {sent} of {total} bytes");
    assert_eq!(second["unchanged"].as_u64(), Some(99), "the 99 unchanged files are skipped");
    let versions = d.ok(&["--json", "versions", "photos/docs/doc042.bin"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&versions).unwrap().as_array().map(Vec::len),
        Some(2)
    );
    let versions = d.ok(&["--json", "versions", "photos/docs/doc041.bin"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&versions).unwrap().as_array().map(Vec::len),
        Some(1)
    );
    let back = d.path("docs-back");
    d.ok(&["get", "photos/docs", back.to_str().unwrap()]);
    assert!(tree(&docs) == tree(&back), "the edited folder comes back identical");
    // The plain streaming upload stores the same chunks: the same content sent smartly
    // under another key sends nothing.
    let notes = src.join("notes é.md");
    d.ok(&["put", "--simple", notes.to_str().unwrap(), "photos/simple.md"]);
    let again = put_json(&["--json", "put", notes.to_str().unwrap(), "photos/smart.md"]);
    assert_eq!((again["bytes_sent"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(0)), "{again}");
    d.ok(&["rm", "-r", "photos/docs"]);
    d.ok(&["rm", "photos/simple.md"]);
    d.ok(&["rm", "photos/smart.md"]);

    // Another account sees nothing of alice's.
    let bob = d.ok(&["--json", "admin", "account", "create", "bobby"]);
    let bob_token =
        serde_json::from_str::<serde_json::Value>(&bob).unwrap()["token"].as_str().unwrap().to_owned();
    let denied =
        d.run(&["--token", &bob_token, "get", "photos/backup/notes é.md", d.path("x").to_str().unwrap()], "");
    assert_eq!(denied.status.code(), Some(3), "{}", String::from_utf8_lossy(&denied.stderr));
    let forged = d.run(&["--token", &format!("nu_{}", "0".repeat(64)), "ls"], "");
    assert_eq!(forged.status.code(), Some(4));

    // A download stopped halfway resumes from where it stopped, and the file is identical.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = Client::new(&server.url, Some(admin_token.clone())).unwrap();
        let dest = d.path("resumed.raw");
        let stop = std::sync::Arc::new(|done: u64| done < 1_000_000);
        let first = client.get_to_file("photos", "backup/2026/trip/big.raw", None, &dest, stop).await;
        assert!(matches!(first, Err(nuage_client::ClientError::Interrupted)), "{first:?}");
        assert!(!dest.exists(), "no file takes the name before it is whole");
        let again = client
            .get_to_file("photos", "backup/2026/trip/big.raw", None, &dest, no_progress())
            .await
            .unwrap();
        assert!(again.resumed_from >= 1_000_000, "{again:?}");
        assert!(std::fs::read(&dest).unwrap() == data(3_000_000, 1));

        // Stopped again, then the object changes: the next download starts over and brings
        // the new content, never the old one under the final name.
        let changed = d.path("changed.raw");
        let stop = std::sync::Arc::new(|done: u64| done < 1_000_000);
        let first = client.get_to_file("photos", "backup/2026/trip/big.raw", None, &changed, stop).await;
        assert!(matches!(first, Err(nuage_client::ClientError::Interrupted)), "{first:?}");
        let new = data(2_500_000, 9);
        client
            .put_bytes("photos", "backup/2026/trip/big.raw", new.clone(), "application/octet-stream")
            .await
            .unwrap();
        let again = client
            .get_to_file("photos", "backup/2026/trip/big.raw", None, &changed, no_progress())
            .await
            .unwrap();
        assert_eq!(again.resumed_from, 0);
        assert!(std::fs::read(&changed).unwrap() == new);
        client
            .put_bytes("photos", "backup/2026/trip/big.raw", data(3_000_000, 1), "application/octet-stream")
            .await
            .unwrap();
    });

    // A client that goes away mid-upload leaves no version: a raw HTTP request that promises
    // 10 MB, sends 1 MB and closes the connection.
    let aborted_before = metric(&server.url, "nuage_uploads_aborted_total");
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut socket = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        socket,
        "PUT /v1/buckets/photos/objects/cut.bin HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {admin_token}\r\n\
         Content-Length: 10000000\r\n\r\n"
    )
    .unwrap();
    socket.write_all(&data(1_000_000, 3)).unwrap();
    drop(socket);
    // The server counts the aborted upload once it has seen the body end early; wait for that
    // (bounded) before looking, so the check below cannot pass by looking too soon.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric(&server.url, "nuage_uploads_aborted_total") == aborted_before {
        assert!(std::time::Instant::now() < deadline, "the server never noticed the cut upload");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let cut = d.run(&["--server", &server.url, "versions", "photos/cut.bin"], "");
    assert_eq!(cut.status.code(), Some(3), "no version of the cut upload exists");

    // A restart loses nothing.
    drop(server);
    let server = d.serve();
    let again = d.path("again");
    d.ok(&["--server", &server.url, "get", "photos/backup", again.to_str().unwrap()]);
    assert!(tree(&src) == tree(&again));
    d.ok(&["--server", &server.url, "rm", "-r", "photos/backup"]);
    d.ok(&["--server", &server.url, "bucket", "rm", "photos"]);
}

#[test]
fn sqlite_and_a_local_folder() {
    scenario(&Deployment::new(""), false);
}

/// Creates an empty PostgreSQL database for one test and returns its URL.
#[test]
fn postgres_and_s3_and_azure_blob() {
    let required = env("NUAGE_TEST_REQUIRE").unwrap_or_default().contains("postgres");
    let (Some(pg), Some(s3), Some(az)) =
        (env("NUAGE_TEST_PG_URL"), env("NUAGE_TEST_S3_ENDPOINT"), env("NUAGE_TEST_AZBLOB_ENDPOINT"))
    else {
        assert!(!required, "NUAGE_TEST_REQUIRE names postgres but the test servers are not all set");
        return;
    };
    let get = |n: &str| env(n).unwrap_or_else(|| panic!("{n} must be set"));
    let root = format!("/e2e-{}-{}/", std::process::id(), rand_suffix());
    let config = format!(
        r#"database_url = "{db}"

[buckets]
replicas = 2

[[providers]]
name = "s3"
scheme = "s3"
bucket = "{bucket}"
endpoint = "{s3}"
region = "us-east-1"
access_key_id = "{ak}"
secret_access_key = "{sk}"
root = "{root}"

[[providers]]
name = "azure"
scheme = "azblob"
container = "{container}"
endpoint = "{az}"
account_name = "{account}"
account_key = "{key}"
root = "{root}"
"#,
        db = fresh_pg_database(&pg),
        bucket = get("NUAGE_TEST_S3_BUCKET"),
        ak = get("NUAGE_TEST_S3_ACCESS_KEY"),
        sk = get("NUAGE_TEST_S3_SECRET_KEY"),
        container = get("NUAGE_TEST_AZBLOB_CONTAINER"),
        account = get("NUAGE_TEST_AZBLOB_ACCOUNT_NAME"),
        key = get("NUAGE_TEST_AZBLOB_ACCOUNT_KEY"),
    );
    scenario(&Deployment::new(&config), true);
}

/// Every file under `root`, concatenated: all that the server and its providers hold.
fn everything_under(root: &Path) -> Vec<u8> {
    tree(root).into_iter().flat_map(|(_, bytes)| bytes).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Share links from the CLI (normal and end-to-end), then the proof that the server's
/// database and its provider together cannot decrypt an end-to-end object.
#[test]
fn share_links_and_end_to_end_buckets() {
    use base64::Engine;
    use nuage_core::e2e::{self, ContentKey, FileKey};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // Small chunks, so that the end-to-end file has several.
    let d = Deployment::new("[chunking]\nmin_size = 16384\navg_size = 65536\nmax_size = 262144\n");
    let server = d.serve();
    d.ok_with(&["admin", "account", "create", "alice", "--password-stdin"], "s3cret\n");
    d.ok_with(&["--server", &server.url, "login", "--account", "alice", "--password-stdin"], "s3cret\n");

    // A normal bucket: a link with a password and one download.
    d.ok(&["bucket", "create", "photos"]);
    let photo = d.path("photo.jpg");
    std::fs::write(&photo, data(300_000, 5)).unwrap();
    d.ok(&["put", photo.to_str().unwrap(), "photos/"]);
    let pw = [("NUAGE_SHARE_PASSWORD", "letmein")];
    let made = d.run_env(
        &["share", "photos/photo.jpg", "--max-downloads", "1", "--password", "--expires", "7d"],
        "",
        &pw,
    );
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let link = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    assert!(link.starts_with(&format!("{}/s/sh_", server.url)), "{link}");
    let got = d.path("got.jpg");
    let no_password = d.run(&["get", &link, got.to_str().unwrap()], "");
    assert!(!no_password.status.success() && !got.exists(), "a password link needs its password");
    let wrong = d.run_env(&["get", &link, got.to_str().unwrap()], "", &[("NUAGE_SHARE_PASSWORD", "no")]);
    assert_eq!(wrong.status.code(), Some(4), "a wrong password exits with the auth code");
    assert!(d.run_env(&["get", &link, got.to_str().unwrap()], "", &pw).status.success());
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&photo).unwrap());
    let twice = d.run_env(&["get", &link, d.path("again.jpg").to_str().unwrap()], "", &pw);
    assert_eq!(twice.status.code(), Some(5), "the one download is spent");
    assert!(String::from_utf8_lossy(&twice.stderr).contains("share_exhausted"));

    // An end-to-end bucket: the key stays in the key file; the server refuses plaintext.
    let no_key = d.run(&["bucket", "create", "vault", "--e2e"], "");
    assert!(!no_key.status.success() && String::from_utf8_lossy(&no_key.stderr).contains("nuage key init"));
    d.ok(&["key", "init"]);
    d.ok(&["bucket", "create", "vault", "--e2e"]);
    let marker = b"this sentence is the plaintext the server must never see, not even once";
    let mut secret = marker.to_vec();
    secret.extend(data(500_000, 6));
    let secret_path = d.path("secret.bin");
    std::fs::write(&secret_path, &secret).unwrap();
    d.ok(&["put", secret_path.to_str().unwrap(), "vault/"]);
    let back = d.path("back.bin");
    d.ok(&["get", "vault/secret.bin", back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == secret, "the owner reads it back");
    // Another device without the key is told to bring that key, never to make a new one.
    let elsewhere = d.path("other-device.key");
    let out = d.run_env(
        &["get", "vault/secret.bin", d.path("nope.bin").to_str().unwrap()],
        "",
        &[("NUAGE_KEY_FILE", elsewhere.to_str().unwrap())],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(10), "{said}");
    assert!(said.contains("copy the key file") && !said.contains("key init"), "{said}");
    let saved: toml::Value =
        toml::from_str(&std::fs::read_to_string(d.path("client.toml")).unwrap()).unwrap();
    let client = Client::new(&server.url, Some(saved["token"].as_str().unwrap().to_owned())).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    match runtime.block_on(client.get_bytes("vault", "secret.bin")) {
        Err(nuage_client::ClientError::Api { status: 409, code, .. }) => {
            assert_eq!(code, "end_to_end_bucket")
        }
        other => panic!("a plaintext GET of an end-to-end object answered {other:?}"),
    }
    let view = runtime.block_on(client.manifest("vault", "secret.bin", None)).unwrap();
    let sealed = b64.decode(&view.manifest).unwrap();

    let link = d.ok(&["share", "vault/secret.bin"]).trim().to_owned();
    let (bare, fragment) =
        link.split_once("#k=").expect("an end-to-end link carries its key in the fragment");
    let shared = d.path("shared.bin");
    d.ok(&["get", &link, shared.to_str().unwrap()]);
    assert!(std::fs::read(&shared).unwrap() == secret, "the recipient decrypts it");
    let keyless = d.run(&["get", bare, d.path("keyless.bin").to_str().unwrap()], "");
    assert_eq!(keyless.status.code(), Some(10), "{}", String::from_utf8_lossy(&keyless.stderr));
    let shares: serde_json::Value = serde_json::from_str(&d.ok(&["--json", "share", "ls"])).unwrap();
    assert_eq!(shares.as_array().unwrap().len(), 2);
    let id = shares[0]["id"].as_i64().unwrap().to_string();
    d.ok(&["share", "revoke", &id]);
    let revoked = d.run(&["get", &link, d.path("late.bin").to_str().unwrap()], "");
    assert_eq!(revoked.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&revoked.stderr).contains("share_revoked"));
    drop(server);

    // What the device holds: the content key; the link holds the file key; the manifest, the
    // chunk keys. None of it is on the server's side, and no 32 bytes there open anything.
    let key_text = std::fs::read_to_string(d.path("content.key")).unwrap();
    let content_key: [u8; 32] =
        b64.decode(key_text.split_whitespace().nth(1).unwrap()).unwrap().try_into().unwrap();
    let file_key: [u8; 32] = b64.decode(fragment).unwrap().try_into().unwrap();
    let manifest = e2e::open_manifest(&FileKey::from_bytes(file_key), &sealed).unwrap();
    assert!(manifest.entries.len() >= 2);
    let held = everything_under(&d.path("data"));
    assert!(held.len() > secret.len(), "the data folder holds the chunks and the database");
    assert!(!contains(&held, &marker[..32]), "plaintext on the server side");
    assert!(!contains(&held, &content_key), "the content key on the server side");
    assert!(!contains(&held, &file_key), "the file key on the server side");
    for entry in &manifest.entries {
        assert!(!contains(&held, entry.key.as_bytes()), "a chunk key on the server side");
    }
    assert!(contains(&held, &sealed), "the sealed manifest is what the database keeps");
    let opens = held.windows(32).filter(|w| {
        let k: [u8; 32] = (*w).try_into().unwrap();
        e2e::unwrap_file_key(&ContentKey::from_bytes(k), &sealed).is_ok()
            || e2e::open_manifest(&FileKey::from_bytes(k), &sealed).is_ok()
    });
    assert_eq!(opens.count(), 0, "no 32 bytes the server and its provider hold open the manifest");
}

/// `nuage admin` finds the server's database as `serve` does and never makes an empty one
/// in its place: run from the wrong folder, it says where it looked and how to create one.
#[test]
fn admin_opens_the_servers_database_and_creates_none_unless_told() {
    let d = Deployment::new("");
    let out = d.run(&["admin", "account", "ls"], "");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("no database at") && said.contains("nuage admin init"), "{said}");
    assert!(!d.path("data").exists(), "nothing was created");

    // With no configuration at all, in a folder that is not the server's.
    let elsewhere = d.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = std::process::Command::new(NUAGE)
        .args(["admin", "status"])
        .current_dir(&elsewhere)
        .env_remove("NUAGE_CONFIG")
        .env_remove("NUAGE_DATA_DIR")
        .env_remove("NUAGE_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nuage-data/meta.db"));
    assert!(!elsewhere.join("nuage-data").exists());

    d.ok(&["admin", "init"]);
    assert!(d.path("data/meta.db").exists());
    d.ok_with(&["admin", "account", "create", "alice", "--password-stdin"], "pw\n");
    assert!(d.ok(&["admin", "account", "ls"]).contains("alice"));
    // The server opens the database admin made, with its account.
    let server = d.serve();
    d.ok_with(&["--server", &server.url, "login", "--account", "alice", "--password-stdin"], "pw\n");
}

/// `nuage admin key`: a key is made with its secret shown once, listed without it, the key
/// file made readable by its owner only, and revoked once; bad input changes nothing.
#[test]
fn admin_makes_lists_and_revokes_access_keys() {
    let d = Deployment::new("");
    d.ok(&["admin", "init"]);
    d.ok(&["admin", "account", "create", "alice"]);
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&d.ok(&all)).unwrap()
    };
    let made =
        json(&["admin", "key", "create", "alice", "--name", "nas", "--bucket", "photos", "--read-only"]);
    let (id, secret) = (made["id"].as_str().unwrap().to_owned(), made["secret"].as_str().unwrap().to_owned());
    assert!(id.starts_with("NU") && id.len() == 20 && secret.len() == 40, "{made}");
    assert_eq!((made["bucket"].as_str(), made["read_only"].as_bool()), (Some("photos"), Some(true)));
    let file = d.path("data/access-keys.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let listed = d.ok(&["admin", "key", "ls", "alice"]);
    assert!(
        listed.contains(&id) && listed.contains("bucket photos, read-only") && listed.contains("active"),
        "{listed}"
    );
    assert!(!listed.contains(&secret), "never the secret");
    let db = std::fs::read(d.path("data/meta.db")).unwrap();
    assert!(
        !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the database holds no secret in the clear"
    );
    for (args, says) in [
        (&["admin", "key", "create", "nobody"][..], "no such account"),
        (&["admin", "key", "create", "alice", "--bucket", "No"][..], "bucket name"),
        (&["admin", "key", "create", "alice", "--name", "a\tb"][..], "access key's name"),
        (&["admin", "key", "revoke", "alice", "NUNOSUCHKEYAAAAAAAAA"][..], "no active access key"),
    ] {
        let out = d.run(args, "");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && said.contains(says), "{args:?}: {said}");
    }
    assert_eq!(json(&["admin", "key", "ls", "alice"]).as_array().unwrap().len(), 1, "refusals made nothing");
    d.ok(&["admin", "key", "revoke", "alice", &id]);
    assert!(d.ok(&["admin", "key", "ls", "alice"]).contains("revoked"));
    assert!(!d.run(&["admin", "key", "revoke", "alice", &id], "").status.success(), "revoked once");
}

/// A server that is not there is said once, with what to check; an address without its
/// scheme is refused with an example.
#[test]
fn an_unreachable_server_and_a_url_without_scheme_are_explained() {
    let d = Deployment::new("");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = d.run(&["--server", &url, "--token", "t", "ls"], "");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{said}");
    assert!(said.contains(&format!("is `nuage serve` running at {url}?")), "{said}");
    assert_eq!(said.matches(&url).count(), 2, "the server is named once, and once in the question: {said}");
    assert_eq!(said.lines().count(), 1, "{said}");

    let out = d.run(&["--server", &format!("127.0.0.1:{port}"), "--token", "t", "ls"], "");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(said.contains("not a server URL") && said.contains("http://127.0.0.1:8420"), "{said}");
    let out = d.run(&["login", "--server", "localhost", "--with-token", "t"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a server URL"));
    assert!(!d.path("client.toml").exists(), "a refused login saves nothing");
}
