//! Checks of the source tree that the compiler and clippy do not make, run by `cargo test`
//! (`tests/tidy.rs`) in the manner of rust-analyzer's `xtask/src/tidy.rs`.
//!
//! [`modules`] reads a crate's sources into a graph of which module names which, from the
//! text: `crate::a::b`, `super::x`, `self::x`, the trees of `use` items and bare paths
//! through a child module. It is a reading, not a name resolution: glob imports and
//! macros are not followed, and comments and `#[cfg(test)]` modules at the end of a file
//! are left out. It can miss an edge written in a form it does not read: a path through a
//! module brought in by `use` (`use crate::edge; edge::keys::f()`), a root re-export
//! renamed with `as`, `//` inside a string literal (the rest of that line is dropped).
//! None of these occurs in the tree today.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root (the folder of the top `Cargo.toml`).
/// `cargo test` sets `CARGO_MANIFEST_DIR` when it runs a test, which holds even for a test
/// binary built in another checkout sharing the target folder; the compile-time value
/// serves when run otherwise.
pub fn workspace_root() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    dir.parent().expect("xtask sits in the workspace root").to_owned()
}

/// Every `.rs` file under `dir`, sorted.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target" && n != "node_modules" && n != ".git") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A module path inside its crate: `[]` is the crate root, `["edge", "keys"]` is
/// `crate::edge::keys`.
pub type ModPath = Vec<String>;

/// The modules of one crate and the modules each one names.
#[derive(Debug, Default)]
pub struct ModuleGraph {
    /// Module → the modules its code names (itself left out).
    pub edges: BTreeMap<ModPath, BTreeSet<ModPath>>,
}

/// Shows a module path as Rust writes it.
pub fn show(m: &ModPath) -> String {
    if m.is_empty() { "crate".to_owned() } else { format!("crate::{}", m.join("::")) }
}

/// The module a file under `src` is, or `None` for files that are not modules of the
/// library or binary (`src/bin/*` are crates of their own).
fn module_of(src: &Path, file: &Path) -> Option<ModPath> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    match stem {
        "lib" | "main" if parts.is_empty() => {}
        "mod" => {}
        _ => parts.push(stem.to_owned()),
    }
    Some(parts)
}

/// The code of a file without comments and without the `#[cfg(test)]` module that ends it.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    let mut in_block = false;
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            let next = lines.peek().map(|l| l.trim_start()).unwrap_or("");
            if next.starts_with("mod ") || next.starts_with("pub mod ") || next.starts_with("pub(crate) mod ")
            {
                break;
            }
        }
        let mut rest = line;
        let mut kept = String::new();
        loop {
            if in_block {
                match rest.find("*/") {
                    Some(i) => {
                        rest = &rest[i + 2..];
                        in_block = false;
                    }
                    None => break,
                }
            } else {
                let line_comment = rest.find("//");
                let block = rest.find("/*");
                match (line_comment, block) {
                    (Some(l), b) if b.is_none_or(|b| l < b) => {
                        kept.push_str(&rest[..l]);
                        break;
                    }
                    (_, Some(b)) => {
                        kept.push_str(&rest[..b]);
                        rest = &rest[b + 2..];
                        in_block = true;
                    }
                    _ => {
                        kept.push_str(rest);
                        break;
                    }
                }
            }
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths a `use` tree names, from the text right after its leading `prefix::`:
/// `{a, b::{c, d}}` gives `[a], [b, c], [b, d]`; `a::b` gives `[a, b]`.
fn use_tree(text: &str) -> (Vec<Vec<String>>, usize) {
    let bytes: Vec<char> = text.chars().collect();
    let mut paths = Vec::new();
    let mut i = 0;
    parse_tree(&bytes, &mut i, Vec::new(), &mut paths);
    (paths, i)
}

fn skip_ws(s: &[char], i: &mut usize) {
    while *i < s.len() && s[*i].is_whitespace() {
        *i += 1;
    }
}

fn parse_tree(s: &[char], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    skip_ws(s, i);
    if *i < s.len() && s[*i] == '{' {
        *i += 1;
        loop {
            skip_ws(s, i);
            if *i >= s.len() {
                return;
            }
            if s[*i] == '}' {
                *i += 1;
                return;
            }
            if s[*i] == ',' {
                *i += 1;
                continue;
            }
            let before = *i;
            parse_tree(s, i, prefix.clone(), out);
            if *i == before {
                *i += 1; // not a path: step over it
            }
        }
    }
    let mut path = prefix;
    loop {
        skip_ws(s, i);
        let start = *i;
        while *i < s.len() && is_ident_char(s[*i]) {
            *i += 1;
        }
        if *i == start {
            if *i < s.len() && s[*i] == '*' {
                *i += 1;
            }
            break;
        }
        path.push(s[start..*i].iter().collect());
        skip_ws(s, i);
        if s.get(*i) == Some(&':') && s.get(*i + 1) == Some(&':') {
            *i += 2;
            skip_ws(s, i);
            if s.get(*i) == Some(&'{') {
                parse_tree(s, i, path, out);
                return;
            }
            continue;
        }
        // `as name`
        let save = *i;
        let rest: String = s[*i..s.len().min(*i + 3)].iter().collect();
        if rest == "as " {
            *i += 3;
            skip_ws(s, i);
            while *i < s.len() && is_ident_char(s[*i]) {
                *i += 1;
            }
        } else {
            *i = save;
        }
        break;
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// Reads the modules of the crate whose sources are in `src`.
pub fn modules(src: &Path) -> ModuleGraph {
    let mut code = BTreeMap::new();
    for f in rust_files(src) {
        if let Some(m) = module_of(src, &f) {
            let text = fs::read_to_string(&f).unwrap_or_default();
            code.insert(m, code_of(&text));
        }
    }
    let known: BTreeSet<ModPath> = code.keys().cloned().collect();
    // What the root re-exports (`pub use m::Name;`), so that `crate::Name` is `m`.
    let mut reexports: BTreeMap<String, ModPath> = BTreeMap::new();
    if let Some(root) = code.get(&Vec::new()) {
        for (pos, _) in root.match_indices("pub use ") {
            let (paths, _) = use_tree(&root[pos + "pub use ".len()..]);
            for p in paths {
                if let Some(m) = deepest_module(&known, &[], &p) {
                    reexports.insert(p.last().cloned().unwrap_or_default(), m);
                }
            }
        }
    }
    let mut graph = ModuleGraph::default();
    for (module, text) in &code {
        let mut targets = BTreeSet::new();
        for path in paths_named(text, module.is_empty()) {
            let (base, rest): (ModPath, &[String]) = match path.first().map(String::as_str) {
                Some("crate") => (Vec::new(), &path[1..]),
                Some("super") => {
                    let mut base = module.clone();
                    let mut rest = &path[..];
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    (base, rest)
                }
                Some("self") => (module.clone(), &path[1..]),
                Some(first) => {
                    let mut child = module.clone();
                    child.push(first.to_owned());
                    if !known.contains(&child) {
                        continue;
                    }
                    (module.clone(), &path[..])
                }
                None => continue,
            };
            let target = match deepest_module(&known, &base, rest) {
                Some(m) if m.is_empty() => match rest.first().and_then(|n| reexports.get(n)) {
                    Some(m) => m.clone(),
                    None => m,
                },
                Some(m) => m,
                None => continue,
            };
            if &target != module {
                targets.insert(target);
            }
        }
        graph.edges.insert(module.clone(), targets);
    }
    graph
}

/// The deepest known module along `base` + `rest` (at least `base` itself).
fn deepest_module(known: &BTreeSet<ModPath>, base: &[String], rest: &[String]) -> Option<ModPath> {
    let mut m: ModPath = base.to_vec();
    if !known.contains(&m) {
        return None;
    }
    for seg in rest {
        let mut next = m.clone();
        next.push(seg.clone());
        if known.contains(&next) {
            m = next;
        } else {
            break;
        }
    }
    Some(m)
}

/// Every path written in `code` that starts with `crate`, `super` or `self`, and every
/// other path of two segments or more (the caller keeps those through a child module).
/// `use` trees are expanded. In the root, `mod` items and `pub use` re-exports name
/// nothing: the root declaring a module is not the root depending on it.
fn paths_named(code: &str, root: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !is_ident_char(c) || (i > 0 && (is_ident_char(chars[i - 1]) || chars[i - 1] == ':')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident_char(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        if word == "use" || word == "mod" {
            let statement_start = code[..byte_index(code, start)].trim_end();
            let is_pub = statement_start.ends_with("pub") || statement_start.ends_with(')');
            if word == "mod" || (root && is_pub) {
                // skip to the end of the item
                while i < chars.len() && chars[i] != ';' && chars[i] != '{' {
                    i += 1;
                }
                if word == "use" {
                    while i < chars.len() && chars[i] != ';' {
                        i += 1;
                    }
                }
                continue;
            }
            if word == "use" {
                let rest: String = chars[i..].iter().collect();
                let (paths, used) = use_tree(&rest);
                out.extend(paths);
                i += used;
                continue;
            }
        }
        // a path `word::a::b`, read as a use tree (`super::{a, b}` expands the same way)
        if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
            let rest: String = chars[start..].iter().collect();
            let (paths, used) = use_tree(&rest);
            out.extend(paths);
            i = start + used.max(word.chars().count());
        }
    }
    out
}

fn byte_index(s: &str, char_index: usize) -> usize {
    s.char_indices().nth(char_index).map(|(b, _)| b).unwrap_or(s.len())
}

/// The groups of modules that name each other in a circle (strongly connected components
/// of more than one module), each with one circle through it, shortest first.
pub fn cycles(graph: &ModuleGraph) -> Vec<Vec<ModPath>> {
    let nodes: Vec<&ModPath> = graph.edges.keys().collect();
    let index: BTreeMap<&ModPath, usize> = nodes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let succ: Vec<Vec<usize>> = nodes
        .iter()
        .map(|m| graph.edges[*m].iter().filter_map(|t| index.get(t).copied()).collect())
        .collect();
    let mut found = Vec::new();
    let mut seen = BTreeSet::new();
    for start in 0..nodes.len() {
        if seen.contains(&start) {
            continue;
        }
        // the shortest path back to `start`, by breadth-first search
        let mut prev: BTreeMap<usize, usize> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut closed = None;
        while let Some(n) = queue.pop_front() {
            for &s in &succ[n] {
                if s == start {
                    closed = Some(n);
                    break;
                }
                if let std::collections::btree_map::Entry::Vacant(e) = prev.entry(s) {
                    e.insert(n);
                    queue.push_back(s);
                }
            }
            if closed.is_some() {
                break;
            }
        }
        if let Some(mut n) = closed {
            let mut circle = vec![n];
            while n != start {
                n = prev[&n];
                circle.push(n);
            }
            circle.reverse();
            seen.extend(circle.iter().copied());
            found.push(circle.into_iter().map(|i| nodes[i].clone()).collect());
        }
    }
    found.sort_by_key(|c: &Vec<ModPath>| c.len());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_trees_expand() {
        let (paths, _) = use_tree("crate::{a, b::{c, d as e}, f::*};");
        let want: Vec<Vec<String>> =
            [vec!["crate", "a"], vec!["crate", "b", "c"], vec!["crate", "b", "d"], vec!["crate", "f"]]
                .iter()
                .map(|p| p.iter().map(|s| s.to_string()).collect())
                .collect();
        assert_eq!(paths, want);
    }

    #[test]
    fn a_circle_is_found_and_comments_name_nothing() {
        let dir = std::env::temp_dir().join(format!("xtask-cycles-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("edge")).unwrap();
        fs::write(dir.join("lib.rs"), "//! r\nmod a;\nmod b;\nmod c;\nmod edge;\npub use a::Thing;\n")
            .unwrap();
        fs::write(dir.join("a.rs"), "//! a\nuse crate::b::X;\n// crate::c::Y is only a comment\n").unwrap();
        fs::write(dir.join("b.rs"), "//! b\nfn f() { crate::Thing::new(); }\n").unwrap();
        fs::write(dir.join("c.rs"), "//! c\nuse crate::{a, b};\n").unwrap();
        fs::write(dir.join("edge/mod.rs"), "//! e\nmod keys;\nfn g() { keys::K; }\n").unwrap();
        fs::write(
            dir.join("edge/keys.rs"),
            "//! k\nfn h() { super::g(); }\n#[cfg(test)]\nmod tests { use crate::a; }\n",
        )
        .unwrap();
        let graph = modules(&dir);
        let found = cycles(&graph);
        let shown: Vec<Vec<String>> = found.iter().map(|c| c.iter().map(show).collect()).collect();
        assert_eq!(shown, vec![vec!["crate::a", "crate::b"], vec!["crate::edge", "crate::edge::keys"]]);
        assert!(!graph.edges[&vec!["a".to_owned()]].contains(&vec!["c".to_owned()]), "{graph:?}");
        assert!(!graph.edges[&vec!["edge".to_owned(), "keys".to_owned()]].contains(&vec!["a".to_owned()]));
        fs::remove_dir_all(&dir).unwrap();
    }
}
