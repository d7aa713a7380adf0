//! What a write computes of its content as it streams, besides the chunks: the MD5 (S3's
//! entity tag of a single PUT, and `Content-MD5`) and the checksums S3 clients send
//! (`x-amz-checksum-*`: CRC32, CRC32C, CRC64NVME, SHA-1, SHA-256), each checked against the
//! value the client gave before the version is committed. A value may come only after the
//! body, in its trailer (aws-chunked): a [`ContentChecks::trailer`] is read once the content
//! has ended. A mismatch is `bad_digest` and makes no version.
//!
//! The digests are computed on the pipeline's reading thread ([`Digesting`]), one pass over
//! the bytes, so a write's memory stays what the pipeline holds.

use std::collections::BTreeMap;
use std::io::{self, Read};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::Digest as _;
use serde::{Deserialize, Serialize};

use crate::{ServiceError, ServiceResult};

/// A checksum algorithm of S3's (`x-amz-checksum-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Algorithm {
    /// CRC-32 (ISO-HDLC), 4 bytes.
    Crc32,
    /// CRC-32C (Castagnoli), 4 bytes.
    Crc32c,
    /// CRC-64/NVME, 8 bytes: what S3 computes of every object that came without one.
    Crc64nvme,
    /// SHA-1, 20 bytes.
    Sha1,
    /// SHA-256, 32 bytes.
    Sha256,
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: [Algorithm; 5] =
        [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64nvme, Algorithm::Sha1, Algorithm::Sha256];

    /// Its name as S3 spells it (`CRC32`, `CRC64NVME`, `SHA256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Crc64nvme => "CRC64NVME",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        }
    }

    /// The algorithm of this name (any case), if it is one.
    pub fn named(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The length of its digest in bytes.
    fn len(self) -> usize {
        match self {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }
}

/// The digests of a content that a write keeps: its MD5 and its checksums (base64, as S3
/// sends them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digests {
    /// MD5 of the content.
    pub md5: [u8; 16],
    /// The checksums computed.
    pub checksums: BTreeMap<Algorithm, String>,
}

/// The checks a write makes of its content.
#[derive(Default)]
pub struct ContentChecks {
    /// Checksums to compute and keep with the version, besides those `expect` names (and
    /// CRC64NVME, always kept).
    pub compute: Vec<Algorithm>,
    /// Values the content must have, base64 as the client sent them.
    pub expect: Vec<(Algorithm, String)>,
    /// The `Content-MD5` the content must have (base64).
    pub content_md5: Option<String>,
    /// Values known only once the body has ended (a trailer), read then.
    #[allow(clippy::type_complexity)]
    pub trailer: Option<Box<dyn FnOnce() -> ServiceResult<Vec<(Algorithm, String)>> + Send>>,
}

impl std::fmt::Debug for ContentChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentChecks")
            .field("compute", &self.compute)
            .field("expect", &self.expect)
            .field("content_md5", &self.content_md5)
            .field("trailer", &self.trailer.is_some())
            .finish()
    }
}

fn bad_digest(message: String) -> ServiceError {
    ServiceError::invalid("bad_digest", message)
}

fn invalid_digest(message: String) -> ServiceError {
    ServiceError::invalid("invalid_digest", message)
}

/// A base64 digest of `len` bytes, or `invalid_digest`.
fn decode(what: &str, value: &str, len: usize) -> ServiceResult<Vec<u8>> {
    match B64.decode(value.trim()) {
        Ok(d) if d.len() == len => Ok(d),
        _ => Err(invalid_digest(format!("{what} is not {len} bytes in base64: {value:?}"))),
    }
}

impl ContentChecks {
    /// Checks the form of the values given up front, before any byte is read
    /// (`invalid_digest`), and says what to compute: every algorithm named, and CRC64NVME.
    pub(crate) fn prepare(&self) -> ServiceResult<Vec<Algorithm>> {
        if let Some(md5) = &self.content_md5 {
            decode("Content-MD5", md5, 16)?;
        }
        let mut algorithms = vec![Algorithm::Crc64nvme];
        for (a, value) in &self.expect {
            decode(a.name(), value, a.len())?;
            algorithms.push(*a);
        }
        algorithms.extend(&self.compute);
        algorithms.sort();
        algorithms.dedup();
        Ok(algorithms)
    }

    /// Checks `digests` of the content against the values given, the trailer's read now:
    /// `bad_digest` for one that differs, `invalid_digest` for one that cannot be a digest.
    pub(crate) fn verify(self, digests: &Digests) -> ServiceResult<()> {
        if let Some(md5) = &self.content_md5
            && decode("Content-MD5", md5, 16)? != digests.md5
        {
            return Err(bad_digest("the Content-MD5 you specified did not match what was received".into()));
        }
        let mut expect = self.expect;
        if let Some(trailer) = self.trailer {
            expect.extend(trailer()?);
        }
        for (a, value) in expect {
            decode(a.name(), &value, a.len())?;
            let Some(ours) = digests.checksums.get(&a) else {
                // A trailer's algorithm is announced before the body (`compute`).
                return Err(invalid_digest(format!(
                    "the trailer carries a {} checksum that the request did not announce",
                    a.name()
                )));
            };
            if ours.trim() != value.trim() {
                return Err(bad_digest(format!(
                    "the {} you specified did not match the calculated checksum",
                    a.name()
                )));
            }
        }
        Ok(())
    }
}

/// A running checksum.
enum Hasher {
    Crc(crc_fast::Digest, usize),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    fn new(a: Algorithm) -> Hasher {
        use crc_fast::CrcAlgorithm as C;
        match a {
            Algorithm::Crc32 => Hasher::Crc(crc_fast::Digest::new(C::Crc32IsoHdlc), 4),
            Algorithm::Crc32c => Hasher::Crc(crc_fast::Digest::new(C::Crc32Iscsi), 4),
            Algorithm::Crc64nvme => Hasher::Crc(crc_fast::Digest::new(C::Crc64Nvme), 8),
            Algorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc(d, _) => d.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    fn finish(self) -> String {
        let bytes = match self {
            Hasher::Crc(d, len) => d.finalize().to_be_bytes()[8 - len..].to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        };
        B64.encode(bytes)
    }
}

/// A reader that computes the digests of what passes through it.
pub(crate) struct Digesting<R> {
    inner: R,
    md5: md5::Md5,
    hashers: Vec<(Algorithm, Hasher)>,
}

impl<R: Read> Digesting<R> {
    pub(crate) fn new(inner: R, algorithms: &[Algorithm]) -> Self {
        let hashers = algorithms.iter().map(|a| (*a, Hasher::new(*a))).collect();
        Digesting { inner, md5: md5::Md5::new(), hashers }
    }

    /// The digests of everything read.
    pub(crate) fn finish(self) -> Digests {
        Digests {
            md5: self.md5.finalize().into(),
            checksums: self.hashers.into_iter().map(|(a, h)| (a, h.finish())).collect(),
        }
    }
}

impl<R: Read> Read for Digesting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.md5.update(&buf[..n]);
        for (_, h) in &mut self.hashers {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests_of(data: &[u8], algorithms: &[Algorithm]) -> Digests {
        let mut r = Digesting::new(data, algorithms);
        io::copy(&mut r, &mut io::sink()).unwrap();
        r.finish()
    }

    /// The values of the AWS documentation's and the algorithms' check strings.
    #[test]
    fn digests_are_those_s3_computes() {
        let d = digests_of(b"123456789", &Algorithm::ALL);
        let hex = |a| hex::encode(B64.decode(&d.checksums[&a]).unwrap());
        assert_eq!(hex(Algorithm::Crc32), "cbf43926");
        assert_eq!(hex(Algorithm::Crc32c), "e3069283");
        assert_eq!(hex(Algorithm::Crc64nvme), "ae8b14860a799888");
        assert_eq!(hex(Algorithm::Sha1), "f7c3bc1d808e04732adf679965ccc34ca7ae3441");
        assert_eq!(hex::encode(d.md5), "25f9e794323b453885f5181f1b624d0b");
        assert_eq!(hex::encode(digests_of(b"", &[]).md5), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn a_mismatch_is_bad_digest_and_a_malformed_value_invalid_digest() {
        let data = b"hello";
        let good = digests_of(data, &[Algorithm::Crc32]).checksums[&Algorithm::Crc32].clone();
        let run = |checks: ContentChecks| {
            let algorithms = checks.prepare()?;
            checks.verify(&digests_of(data, &algorithms))
        };
        let code = |r: ServiceResult<()>| r.err().map(|e| e.code);
        assert_eq!(
            code(run(ContentChecks { expect: vec![(Algorithm::Crc32, good.clone())], ..Default::default() })),
            None
        );
        assert_eq!(
            code(run(ContentChecks {
                expect: vec![(Algorithm::Crc32, "AAAAAA==".into())],
                ..Default::default()
            })),
            Some("bad_digest")
        );
        assert_eq!(
            code(run(ContentChecks {
                expect: vec![(Algorithm::Crc32, "AAAA".into())],
                ..Default::default()
            })),
            Some("invalid_digest")
        );
        let trailer = move || Ok(vec![(Algorithm::Crc32, good)]);
        let announced = ContentChecks {
            compute: vec![Algorithm::Crc32],
            trailer: Some(Box::new(trailer)),
            ..Default::default()
        };
        assert_eq!(code(run(announced)), None);
        let unannounced = || Ok(vec![(Algorithm::Sha1, B64.encode([0u8; 20]))]);
        assert_eq!(
            code(run(ContentChecks { trailer: Some(Box::new(unannounced)), ..Default::default() })),
            Some("invalid_digest")
        );
        let wrong_trailer = || Ok(vec![(Algorithm::Crc32, "AAAAAA==".into())]);
        let checks = ContentChecks {
            compute: vec![Algorithm::Crc32],
            trailer: Some(Box::new(wrong_trailer)),
            ..Default::default()
        };
        assert_eq!(code(run(checks)), Some("bad_digest"));
        let md5 = B64.encode(digests_of(data, &[]).md5);
        assert_eq!(code(run(ContentChecks { content_md5: Some(md5), ..Default::default() })), None);
        let other = B64.encode([0u8; 16]);
        assert_eq!(
            code(run(ContentChecks { content_md5: Some(other), ..Default::default() })),
            Some("bad_digest")
        );
    }
}
