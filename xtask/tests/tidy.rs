//! Tidy tests: rules of the source tree that the compiler does not check. Each failure says
//! what to change.

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
