//! Object keys: the one rule every entry point applies (the server on every request that
//! names a key, the clients before they write a key's file under a folder).
//!
//! A key is Unicode text, normalized to NFC, of 1 to [`MAX_KEY_BYTES`] bytes once
//! normalized, whose `/`-separated segments are each a name any downloader can write as one
//! file or folder inside its destination, on Linux, macOS and Windows:
//!
//! - no control character (NUL included), no backslash;
//! - no bidirectional control (U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069),
//!   which would show a name reversed (`txt.exe` as `exe.txt`), and no invisible character
//!   (U+00AD, U+034F, U+115F, U+1160, U+180E, U+200B, U+2028, U+2029, U+2060..U+2064,
//!   U+206A..U+206F, U+3164, U+FEFF, U+FFA0, the tags U+E0000..U+E007F); the joiners U+200C
//!   and U+200D, which emoji sequences and several scripts need, only between two visible
//!   characters;
//! - no segment that is empty, `.` or `..`, nor one made only of dots and white space (Windows
//!   drops trailing dots and spaces, so `.. ` is `..` there), nor one that starts with a drive
//!   (`C:`), which would make the rest of the path absolute on Windows.
//!
//! Two keys that differ only in their Unicode form (`é` as one code point or as `e` and a
//! combining accent, as macOS spells file names) are the same key.

use std::path::{Component, Path, PathBuf};

use unicode_normalization::UnicodeNormalization;

/// Longest key, in bytes of UTF-8 (after normalization).
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a key was refused (the message tells a person which rule it broke).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(&'static str);

/// The key in its one form (NFC), or why it is not a key.
pub fn normalize(raw: &str) -> Result<String, KeyError> {
    let key: String = if unicode_normalization::is_nfc(raw) { raw.to_owned() } else { raw.nfc().collect() };
    check(&key)?;
    Ok(key)
}

/// A key prefix (for listings) in the same form as the keys it should match. It is not held
/// to the rules of a whole key: an empty prefix, or one ending with `/`, is fine.
pub fn normalize_prefix(raw: &str) -> String {
    if unicode_normalization::is_nfc(raw) { raw.to_owned() } else { raw.nfc().collect() }
}

fn check(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError("the key is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError("the key is longer than 1024 bytes"));
    }
    let chars: Vec<char> = key.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_control() {
            return Err(KeyError("the key contains a control character (NUL included)"));
        }
        if c == '\\' {
            return Err(KeyError("the key contains a backslash (a folder separator on Windows); use '/'"));
        }
        if is_bidi_control(c) {
            return Err(KeyError("the key contains a bidirectional control character"));
        }
        if is_invisible(c) {
            return Err(KeyError("the key contains an invisible character (zero-width space, BOM, ...)"));
        }
        if is_joiner(c) {
            let visible =
                |c: Option<&char>| c.is_some_and(|c| !c.is_whitespace() && *c != '/' && !is_joiner(*c));
            if !(i > 0 && visible(chars.get(i - 1)) && visible(chars.get(i + 1))) {
                return Err(KeyError("the key has a zero-width joiner that joins nothing"));
            }
        }
    }
    for segment in key.split('/') {
        segment_problem(segment)?;
    }
    Ok(())
}

fn segment_problem(segment: &str) -> Result<(), KeyError> {
    if segment.is_empty() || segment == "." || segment == ".." {
        return Err(KeyError("the key has an empty, '.' or '..' path segment"));
    }
    if segment.chars().all(|c| c == '.' || c.is_whitespace()) {
        return Err(KeyError("the key has a segment made only of dots and spaces"));
    }
    let b = segment.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Err(KeyError("the key has a segment that starts with a drive (C:)"));
    }
    Ok(())
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{2060}'..='\u{2064}'
            | '\u{206A}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

fn is_joiner(c: char) -> bool {
    matches!(c, '\u{200C}' | '\u{200D}')
}

/// Where the file of the key part `relative` (a key, or what follows a prefix in one) goes
/// under `root`: always inside it, whatever a server sent. `None` when `relative` is not a
/// key, or when on this system one of its segments would not be one plain name (a
/// separator of this system in it, a Windows drive).
pub fn local_path(root: &Path, relative: &str) -> Option<PathBuf> {
    let key = normalize(relative).ok()?;
    let mut path = root.to_path_buf();
    for segment in key.split('/') {
        let mut parts = Path::new(segment).components();
        match (parts.next(), parts.next()) {
            (Some(Component::Normal(name)), None) if name == segment => path.push(name),
            _ => return None,
        }
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(key: &str) -> bool {
        normalize(key).is_ok()
    }

    #[test]
    fn the_rules() {
        for good in [
            "a",
            "photos/2026/été.jpg",
            "a b/c..d/.hidden",
            "2026-12-02T10:00:00Z.log",
            "family \u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}.png",
            "\u{0645}\u{06CC}\u{200C}\u{062E}\u{0648}\u{0627}\u{0647}\u{0645}",
            "CON",
            "...a",
        ] {
            assert!(ok(good), "{good:?}");
        }
        assert!(ok(&"x".repeat(1024)));
        for bad in [
            "",
            "../etc/passwd",
            "a/../b",
            "a/./b",
            "/abs",
            "trailing/",
            "a//b",
            "nul\0byte",
            "new\nline",
            "a\\b",
            "..\\..\\x",
            "C:/x",
            "a/c:evil",
            "a/.. /b",
            "a/.../b",
            "a/ /b",
            "invoice\u{202E}fdp.exe",
            "a\u{2066}b",
            "zero\u{200B}width",
            "\u{FEFF}bom",
            "soft\u{00AD}hyphen",
            "tag\u{E0041}",
            "hangul\u{3164}filler",
            "a/\u{3000}/b",
            "a/\u{00A0}./b",
            "\u{200D}start",
            "end\u{200D}",
            "a\u{200D}/b",
            "a \u{200C}b",
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
        assert!(!ok(&"x".repeat(1025)));
    }

    #[test]
    fn keys_are_nfc() {
        let decomposed = "cafe\u{0301}/re\u{0301}sume\u{0301}.txt";
        let composed = "caf\u{e9}/r\u{e9}sum\u{e9}.txt";
        assert_eq!(normalize(decomposed).unwrap(), composed);
        assert_eq!(normalize(composed).unwrap(), composed);
        assert_eq!(normalize_prefix("cafe\u{0301}/"), "caf\u{e9}/");
    }

    #[test]
    fn local_paths_stay_under_the_root() {
        let root = Path::new("/dest");
        assert_eq!(local_path(root, "a/b.txt"), Some(PathBuf::from("/dest/a/b.txt")));
        for bad in ["../x", "/etc/passwd", "a/../../x", "C:/x", "a\\..\\x", "", "a//b"] {
            assert_eq!(local_path(root, bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Whatever the text, an accepted key is NFC, fits, and maps to a path under the root
        /// made only of plain names; normalizing is idempotent.
        #[test]
        fn any_accepted_key_is_safe(raw in "(\\PC|[./\\\\: \u{200B}-\u{200F}\u{202A}-\u{202E}]){0,40}") {
            if let Ok(key) = normalize(&raw) {
                proptest::prop_assert!(key.len() <= MAX_KEY_BYTES);
                proptest::prop_assert_eq!(normalize(&key), Ok(key.clone()));
                let root = Path::new("/dest");
                let path = local_path(root, &key).expect("an accepted key has a local path");
                proptest::prop_assert!(path.starts_with(root));
                let below = path.strip_prefix(root).unwrap();
                proptest::prop_assert!(below.components().all(|c| matches!(c, Component::Normal(_))));
                proptest::prop_assert_eq!(below.components().count(), key.split('/').count());
            }
        }
    }
}
