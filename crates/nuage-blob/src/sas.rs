//! Azure Blob service SAS for one blob: what lets a device PUT one chunk straight to an Azure
//! container, for a few minutes, without the account key.
//!
//! OpenDAL presigns Azure requests only by appending a SAS token configured in advance,
//! which would hand every device write access to the whole container for the token's
//! lifetime. Here each URL is signed for one blob, create-and-write only, expiring with the
//! upload's grant: the "service SAS" of the Azure Storage REST API (signed version
//! 2020-12-06, string-to-sign per "Create a service SAS"), HMAC-SHA256 with the account key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use nuage_core::url::percent_encode;

use crate::Presigned;

/// The SAS version whose string-to-sign is built below.
const SIGNED_VERSION: &str = "2020-12-06";

/// What a blob SAS needs to know of the provider.
#[derive(Debug)]
pub(crate) struct BlobSas<'a> {
    pub endpoint: &'a str,
    pub account_name: &'a str,
    pub account_key: &'a str,
    pub container: &'a str,
    pub root: Option<&'a str>,
}

fn iso8601(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (y, m, d) = nuage_core::date::civil(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

impl BlobSas<'_> {
    /// A presigned `PUT` of the block blob at `object_key` (under the provider's root),
    /// allowed until `now + expire`.
    pub fn put(&self, object_key: &str, now: SystemTime, expire: Duration) -> Result<Presigned, String> {
        let key = STANDARD.decode(self.account_key).map_err(|e| format!("account key is not base64: {e}"))?;
        let blob = match self.root.map(|r| r.trim_matches('/')).filter(|r| !r.is_empty()) {
            Some(root) => format!("{root}/{object_key}"),
            None => object_key.to_owned(),
        };
        let permissions = "cw";
        let expiry = iso8601(now + expire);
        let resource = format!("/blob/{}/{}/{}", self.account_name, self.container, blob);
        // Fields, in order: permissions, start, expiry, canonicalized resource, identifier,
        // IP, protocol, version, resource type, snapshot time, encryption scope, and the five
        // response-header overrides (rscc, rscd, rsce, rscl, rsct). Unused ones stay empty.
        let to_sign = [
            permissions,
            "",
            &expiry,
            &resource,
            "",
            "",
            "",
            SIGNED_VERSION,
            "b",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
        .join("\n");
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), to_sign.as_bytes());
        let signature = STANDARD.encode(tag.as_ref());
        let url = format!(
            "{}/{}/{}?sv={SIGNED_VERSION}&sr=b&sp={permissions}&se={}&sig={}",
            self.endpoint.trim_end_matches('/'),
            percent_encode(self.container, false),
            percent_encode(&blob, true),
            percent_encode(&expiry, false),
            percent_encode(&signature, false),
        );
        Ok(Presigned {
            method: "PUT".into(),
            url,
            headers: vec![("x-ms-blob-type".into(), "BlockBlob".into())],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_sas_names_one_blob_and_expires() {
        let sas = BlobSas {
            endpoint: "http://127.0.0.1:10000/devstoreaccount1/",
            account_name: "devstoreaccount1",
            account_key: "a2V5",
            container: "chunks",
            root: Some("/tenant/"),
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let p = sas.put("ch/ab/abcd", at, Duration::from_secs(600)).unwrap();
        assert!(
            p.url.starts_with("http://127.0.0.1:10000/devstoreaccount1/chunks/tenant/ch/ab/abcd?sv=2020-12-06&sr=b&sp=cw&se=2026-11-18T11%3A16%3A40Z&sig="),
            "{}",
            p.url
        );
        assert_eq!(p.method, "PUT");
        assert_eq!(p.headers, [("x-ms-blob-type".to_owned(), "BlockBlob".to_owned())]);
        let other = sas.put("ch/ab/abce", at, Duration::from_secs(600)).unwrap();
        let sig = |u: &str| u.rsplit_once("sig=").unwrap().1.to_owned();
        assert_ne!(sig(&p.url), sig(&other.url), "each blob has its own signature");
        assert!(sas.put("x", at, Duration::ZERO).is_ok());
        assert!(BlobSas { account_key: "not base64!", ..sas }.put("x", at, Duration::ZERO).is_err());
    }
}
