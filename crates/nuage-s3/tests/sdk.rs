//! The AWS SDK for Rust (`aws-sdk-s3`) against the S3 endpoint, with the SDK's defaults
//! (since 2025 it sends a CRC32 or CRC64NVME checksum with every upload, in an `aws-chunked`
//! body with a trailer when it streams, and checks checksums of downloads when asked): the
//! endpoint on loopback over a real `Nuage` (SQLite and a local folder in a temp dir).

use std::net::SocketAddr;
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier,
};
use nuage_service::Nuage;
use nuage_service::access_keys::KeyScope;
use nuage_service::auth::Caller;

struct Endpoint {
    client: Client,
    _dir: tempfile::TempDir,
}

async fn endpoint() -> Endpoint {
    let dir = tempfile::tempdir().unwrap();
    let config =
        nuage_service::config::ServiceConfig { data_dir: dir.path().to_owned(), ..Default::default() };
    let nuage = Arc::new(Nuage::open(config).await.unwrap());
    let account = nuage.meta.create_account("app", None, None, [3; 32]).await.unwrap();
    let caller = Caller { account_id: account.id, token_id: 0 };
    let (key, secret) = nuage.create_access_key(caller, "sdk", &KeyScope::default()).await.unwrap();
    let router = nuage_s3::router(nuage, &nuage_s3::S3Config::default()).unwrap();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://{addr}"))
        .credentials_provider(Credentials::new(key.id, secret, None, None, "test"))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Endpoint { client: Client::from_conf(config), _dir: dir }
}

fn code<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &aws_sdk_s3::error::SdkError<E>) -> String {
    e.as_service_error().and_then(|s| s.code()).unwrap_or("no service error").to_owned()
}

#[tokio::test]
async fn the_rust_sdk_with_its_default_checksums() {
    let Endpoint { client: s3, _dir } = endpoint().await;
    s3.create_bucket().bucket("app").send().await.unwrap();

    // A small PUT (the SDK's default CRC32 in a header) and a streamed one of 3 MB (an
    // aws-chunked body with the checksum in its trailer).
    s3.put_object()
        .bucket("app")
        .key("hello.txt")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let file = _dir.path().join("big.bin");
    std::fs::write(&file, &big).unwrap();
    let put = s3
        .put_object()
        .bucket("app")
        .key("big.bin")
        .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
        .body(ByteStream::from_path(&file).await.unwrap())
        .send()
        .await
        .unwrap();
    assert!(put.checksum_crc64_nvme().is_some());
    let got = s3
        .get_object()
        .bucket("app")
        .key("big.bin")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.checksum_crc64_nvme(), put.checksum_crc64_nvme());
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        big.as_slice(),
        "checked by the SDK too"
    );
    let part = s3.get_object().bucket("app").key("big.bin").range("bytes=10-19").send().await.unwrap();
    assert_eq!(part.body.collect().await.unwrap().into_bytes().as_ref(), &big[10..20]);

    // Conditional writes: the second `If-None-Match: *` loses.
    s3.put_object()
        .bucket("app")
        .key("once")
        .if_none_match("*")
        .body(ByteStream::from_static(b"1"))
        .send()
        .await
        .unwrap();
    let again = s3
        .put_object()
        .bucket("app")
        .key("once")
        .if_none_match("*")
        .body(ByteStream::from_static(b"2"))
        .send()
        .await;
    assert_eq!(code(&again.unwrap_err()), "PreconditionFailed");

    // A copy, listings through the paginator, versions.
    s3.copy_object().bucket("app").key("copy.txt").copy_source("app/hello.txt").send().await.unwrap();
    let copied = s3.get_object().bucket("app").key("copy.txt").send().await.unwrap();
    assert_eq!(copied.body.collect().await.unwrap().into_bytes().as_ref(), b"hello");
    let mut keys = Vec::new();
    let mut pages = s3.list_objects_v2().bucket("app").max_keys(1).into_paginator().send();
    while let Some(page) = pages.next().await {
        keys.extend(page.unwrap().contents().iter().filter_map(|o| o.key().map(str::to_owned)));
    }
    assert_eq!(keys, ["big.bin", "copy.txt", "hello.txt", "once"]);
    let v2 = s3
        .put_object()
        .bucket("app")
        .key("hello.txt")
        .body(ByteStream::from_static(b"hello 2"))
        .send()
        .await
        .unwrap();
    let versions = s3.list_object_versions().bucket("app").prefix("hello").send().await.unwrap();
    assert_eq!(versions.versions().len(), 2);
    let old = versions.versions().iter().find(|v| v.is_latest() == Some(false)).unwrap();
    s3.delete_object()
        .bucket("app")
        .key("hello.txt")
        .version_id(old.version_id().unwrap())
        .send()
        .await
        .unwrap();
    let left = s3.list_object_versions().bucket("app").prefix("hello").send().await.unwrap();
    assert_eq!(left.versions().len(), 1);
    assert_eq!(left.versions()[0].version_id(), v2.version_id());

    // Multipart: two parts, the first of 5 MiB, each with the SDK's checksum.
    let upload = s3.create_multipart_upload().bucket("app").key("parts.bin").send().await.unwrap();
    let id = upload.upload_id().unwrap();
    let (first, second) = (vec![7u8; 5 << 20], b"the end".to_vec());
    let mut done = Vec::new();
    for (n, body) in [(1, first.clone()), (2, second.clone())] {
        let p = s3
            .upload_part()
            .bucket("app")
            .key("parts.bin")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
        done.push(CompletedPart::builder().part_number(n).e_tag(p.e_tag().unwrap()).build());
    }
    let complete = s3
        .complete_multipart_upload()
        .bucket("app")
        .key("parts.bin")
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
        .send()
        .await
        .unwrap();
    assert!(complete.e_tag().unwrap().ends_with("-2\""), "{:?}", complete.e_tag());
    let whole = s3.get_object().bucket("app").key("parts.bin").send().await.unwrap();
    let bytes = whole.body.collect().await.unwrap().into_bytes();
    assert_eq!(bytes.len(), first.len() + second.len());
    assert_eq!(&bytes[first.len()..], second.as_slice());

    // DeleteObjects, then a key that is gone.
    let ids = ["once", "copy.txt"].map(|k| ObjectIdentifier::builder().key(k).build().unwrap());
    let delete = Delete::builder().set_objects(Some(ids.to_vec())).build().unwrap();
    let out = s3.delete_objects().bucket("app").delete(delete).send().await.unwrap();
    assert_eq!(out.deleted().len(), 2);
    assert_eq!(code(&s3.get_object().bucket("app").key("once").send().await.unwrap_err()), "NoSuchKey");
    assert_eq!(code(&s3.head_bucket().bucket("nope").send().await.unwrap_err()), "NotFound");
}
