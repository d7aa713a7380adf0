//! The conditions of a request as HTTP spells them (RFC 9110 §13), read from header values:
//! one rule for every front. A front hands a function that gives a header's value by its
//! lowercase name; no HTTP type is needed here.

use nuage_meta::{EntityTag, EtagCondition, Precondition};
use nuage_proto::range::ByteRange;

use crate::read::{IfRange, ReadConditions};

/// Parses an `If-Match` / `If-None-Match` value: `*` or a list of entity tags. Tags that
/// name nothing here (neither 64 hex digits nor an MD5 tag) can match nothing and are
/// dropped. `If-Match` compares strongly (RFC 9110 §13.1.1): a weak tag never matches it;
/// `If-None-Match` weakly.
pub fn etag_condition(value: &str, strong: bool) -> EtagCondition {
    if value.trim() == "*" {
        return EtagCondition::Any;
    }
    let tags = value
        .split(',')
        .filter(|t| !(strong && t.trim().starts_with("W/")))
        .filter_map(|t| EntityTag::parse(t.trim().trim_start_matches("W/").trim_matches('"')))
        .collect();
    EtagCondition::OneOf(tags)
}

/// The conditions of a write: `If-Match`, `If-None-Match`.
pub fn precondition<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Precondition {
    Precondition {
        if_match: header("if-match").map(|v| etag_condition(v, true)),
        if_none_match: header("if-none-match").map(|v| etag_condition(v, false)),
    }
}

/// An `If-Range` entity tag that can name a version: strong, quoted, as this server spells
/// its tags (the comparison is exact, RFC 9110 §13.1.5).
fn strong_tag(value: &str) -> Option<EntityTag> {
    EntityTag::parse(value.strip_prefix('"')?.strip_suffix('"')?)
}

fn unix_secs(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The conditions of a read; dates that cannot be read are ignored, as RFC 9110 says.
pub fn read_conditions<'a>(header: impl Fn(&str) -> Option<&'a str>) -> ReadConditions {
    let date =
        |name: &str| header(name).and_then(|v| httpdate::parse_http_date(v.trim()).ok()).map(unix_secs);
    let if_range = header("if-range").map(|v| {
        let v = v.trim();
        if v.starts_with('"') || v.starts_with("W/") {
            IfRange::Etag(strong_tag(v))
        } else {
            // A date validates only as exactly the version's Last-Modified, as this server
            // writes it (RFC 9110 §13.1.5: an exact match).
            let date = httpdate::parse_http_date(v).ok().filter(|t| httpdate::fmt_http_date(*t) == v);
            IfRange::Date(date.map(unix_secs))
        }
    });
    let Precondition { if_match, if_none_match } = precondition(&header);
    ReadConditions {
        if_match,
        if_none_match,
        if_modified_since: date("if-modified-since"),
        if_unmodified_since: date("if-unmodified-since"),
        if_range,
    }
}

/// The `Range` value, if it asks for one range.
pub fn range<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<ByteRange> {
    header("range").and_then(ByteRange::parse)
}
