//! Reading an answer of the origin into memory, with a cap: an edge never holds more of
//! one answer than the largest thing it asked for.

use bytes::Bytes;

/// A response body of at most `cap` bytes (more is an error, read no further).
pub(crate) async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Bytes, String> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(format!("a body of {:?} bytes, more than {cap}", response.content_length()));
    }
    let mut body = bytes::BytesMut::new();
    while let Some(part) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + part.len() > cap {
            return Err(format!("a body of more than {cap} bytes"));
        }
        body.extend_from_slice(&part);
    }
    Ok(body.freeze())
}
