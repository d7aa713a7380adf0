//! Percent-encoding for URL paths and query values.

/// `text` with every byte but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`), and
/// `/` when `keep_slash`, written as `%XX`.
pub fn percent_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_all_but_unreserved() {
        assert_eq!(percent_encode("a b/é~.-_", true), "a%20b/%C3%A9~.-_");
        assert_eq!(percent_encode("a/b?c=d&e", false), "a%2Fb%3Fc%3Dd%26e");
    }
}
