//! Tidy tests: rules of the source tree that the compiler does not check. Each failure says
//! what to change.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use xtask::{cycles, modules, rust_files, show, workspace_root};

/// The crates of the workspace, as (name, source folder).
fn crates() -> Vec<(String, std::path::PathBuf)> {
    let root = workspace_root();
    let mut out = Vec::new();
    for dir in [root.join("crates"), root.join("bench")] {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            if e.path().join("Cargo.toml").exists() {
                out.push((e.file_name().to_string_lossy().into_owned(), e.path().join("src")));
            }
        }
    }
    out.push(("xtask".to_owned(), root.join("xtask/src")));
    out.sort();
    out
}

#[test]
fn no_module_names_another_that_names_it_back() {
    let mut report = String::new();
    for (name, src) in crates() {
        for circle in cycles(&modules(&src)) {
            let mut shown: Vec<String> = circle.iter().map(show).collect();
            shown.push(shown[0].clone());
            report.push_str(&format!("{name}: {}\n", shown.join(" → ")));
        }
    }
    assert!(
        report.is_empty(),
        "modules that depend on each other in a circle (move what both need into a module that \
         names neither):\n{report}"
    );
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let root = workspace_root();
    let mut missing = Vec::new();
    for dir in ["crates", "bench", "xtask"] {
        for f in rust_files(&root.join(dir)) {
            let text = fs::read_to_string(&f).unwrap();
            if !text.starts_with("//!") {
                missing.push(f.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files that do not start with a `//!` comment saying what they hold:\n{}",
        missing.join("\n")
    );
}

/// The crate graph written in ARCHITECTURE.md ("Which crate may use which"): crate → the
/// workspace crates it may depend on.
fn allowed_graph() -> BTreeMap<String, BTreeSet<String>> {
    let text = fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap();
    let section =
        text.split("### Which crate may use which").nth(1).expect("ARCHITECTURE.md has the section");
    let block =
        section.split("```text\n").nth(1).and_then(|b| b.split("```").next()).expect("a ```text block");
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, deps) =
                l.split_once(':').unwrap_or_else(|| panic!("`crate: deps` expected, not {l:?}"));
            (name.trim().to_owned(), deps.split_whitespace().map(str::to_owned).collect())
        })
        .collect()
}

/// The workspace's crates and the workspace crates each depends on (normal and build
/// dependencies; test-only ones are left out), from `cargo metadata`.
fn actual_graph() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(workspace_root())
        .output()
        .expect("running cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let ours: BTreeSet<String> = packages.iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .filter_map(|d| d["name"].as_str())
                .filter(|n| ours.contains(*n))
                .map(str::to_owned)
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn crates_depend_only_on_what_architecture_md_allows() {
    let allowed = allowed_graph();
    let actual = actual_graph();
    let mut report = String::new();
    for (name, deps) in &actual {
        match allowed.get(name) {
            None => report.push_str(&format!("{name} is not in the list\n")),
            Some(ok) => {
                for d in deps.difference(ok) {
                    report.push_str(&format!("{name} depends on {d}, which the list does not allow\n"));
                }
                for d in ok.difference(deps) {
                    report.push_str(&format!("{name} is listed with {d}, which it does not depend on\n"));
                }
            }
        }
    }
    for name in allowed.keys().filter(|n| !actual.contains_key(*n)) {
        report.push_str(&format!("{name} is listed but is no crate of the workspace\n"));
    }
    assert!(
        report.is_empty(),
        "the crate graph and ARCHITECTURE.md (\"Which crate may use which\") differ: change the \
         dependency or, if the design changed, the list and the rule beside it:\n{report}"
    );
}

/// The error codes the code writes: the literal after `StatusCode::X,` (the second argument
/// of `ApiError::new`) or `ErrorKind::X,` (of `ServiceError::new`, also through a `use …
/// as K`), the first argument of `bad_request(`, `invalid(` and `unauthorized(`,
/// `code: "…"` fields and the `"code":"…"` of a body written by hand. Codes chosen in a
/// `match` and passed on are not seen.
fn error_codes_in(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let literal_after = |rest: &str| -> Option<String> {
        let rest = rest.trim_start();
        let body = rest.strip_prefix('"')?;
        let end = body.find('"')?;
        let word = &body[..end];
        (!word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
            .then(|| word.to_owned())
    };
    for kind in ["StatusCode::", "ErrorKind::", "K::"] {
        for (i, _) in code.match_indices(kind) {
            let rest = &code[i + kind.len()..];
            let name_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic() || *b == b'_').count();
            if let Some(after) = rest[name_len..].trim_start().strip_prefix(',')
                && let Some(w) = literal_after(after)
            {
                found.insert(w);
            }
        }
    }
    for marker in ["bad_request(", "invalid(", "unauthorized(", "code: ", r#""code":"#] {
        for (i, _) in code.match_indices(marker) {
            if let Some(w) = literal_after(&code[i + marker.len()..]) {
                found.insert(w);
            }
        }
    }
    found
}

#[test]
fn every_error_code_the_server_answers_is_in_docs_api_md() {
    let root = workspace_root();
    let doc = fs::read_to_string(root.join("docs/api.md")).unwrap();
    let mut missing = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let fronts_and_service = [
        "crates/nuage-server/src",
        "crates/nuage-edge/src",
        "crates/nuage-http/src",
        "crates/nuage-service/src",
    ]
    .iter()
    .flat_map(|d| rust_files(&root.join(d)));
    for f in fronts_and_service {
        for c in error_codes_in(&fs::read_to_string(&f).unwrap()) {
            seen.insert(c.clone());
            // Listed in a table of codes (`| status | code | when |`), not just named.
            if !doc.contains(&format!("| `{c}` |")) {
                missing.insert(format!("{c} ({})", f.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    assert!(
        seen.len() > 40,
        "the scan found only {} codes: it no longer reads how codes are written",
        seen.len()
    );
    // One of each way a code is written: by `ApiError::new`, by the service (`K::`,
    // `invalid(`), by a body written by hand.
    for written in ["token_not_found", "bucket_not_found", "invalid_key", "too_many_connections"] {
        assert!(seen.contains(written), "the scan no longer finds `{written}`");
    }
    assert!(missing.is_empty(), "error codes the server answers that docs/api.md does not list:\n{}", {
        let v: Vec<String> = missing.into_iter().collect();
        v.join("\n")
    });
}

/// The fronts turn requests into calls of the object service: a handler that calls the
/// metadata store or the chunk store itself holds a rule the next front would copy.
#[test]
fn the_server_front_calls_the_service_not_the_stores() {
    let root = workspace_root();
    let mut found = Vec::new();
    for f in rust_files(&root.join("crates/nuage-server/src")) {
        let text = fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains(".meta.") || code.contains(".store.") {
                found.push(format!(
                    "{}:{}: {}",
                    f.strip_prefix(&root).unwrap().display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "nuage-server calls a store directly (add the operation to nuage-service and call it):\n{}",
        found.join("\n")
    );
}

/// The states the store records are spelled once, in `nuage-meta/src/states.rs`: SQL binds
/// `as_str()` (or formats the enum) rather than quoting a spelling of its own.
#[test]
fn sql_names_no_state_by_a_spelling_of_its_own() {
    let root = workspace_root();
    let states = fs::read_to_string(root.join("crates/nuage-meta/src/states.rs")).unwrap();
    let spellings: Vec<String> = states
        .split("spelled!(")
        .skip(1)
        .flat_map(|inv| {
            let inv = &inv[..inv.find(");").unwrap_or(inv.len())];
            inv.split("= \"")
                .skip(1)
                .filter_map(|s| s.split('"').next().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(spellings.len() >= 10, "read only {spellings:?} from states.rs: the scan no longer reads it");
    let mut found = Vec::new();
    for f in rust_files(&root.join("crates/nuage-meta/src")) {
        if f.ends_with("states.rs") {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            for s in &spellings {
                if line.contains(&format!("'{s}'")) {
                    found.push(format!("{}:{}: '{s}'", f.strip_prefix(&root).unwrap().display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "SQL that spells a state itself (bind its as_str()):\n{}", found.join("\n"));
}
