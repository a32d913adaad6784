//! A test file built with `harness = false` never runs a `#[test]` function: the attribute compiles to nothing
//! there, so a test added that way would be silently lost. This holds every such file of the workspace to the rule
//! that its tests are listed in its `main` instead (see the crate docs).

use std::path::{Path, PathBuf};

/// `(crate folder, test name)` of every `[[test]]` with `harness = false` in the workspace's crates.
fn harnessless_tests(workspace: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(workspace.join("crates")).expect("crates/") {
        let dir = entry.expect("a crate folder").path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        for block in manifest.split("[[test]]").skip(1) {
            let block = block.split("\n[").next().unwrap_or(block);
            let value = |key: &str| {
                block.lines().find_map(|line| {
                    let (k, v) = line.split_once('=')?;
                    (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
                })
            };
            if value("harness").as_deref() == Some("false") {
                let name = value("name").expect("a [[test]] has a name");
                found.push((dir.clone(), name));
            }
        }
    }
    found
}

#[test]
fn harnessless_test_files_have_no_test_attributes() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tests = harnessless_tests(&workspace);
    assert!(
        tests.iter().any(|(_, name)| name == "gpu_vs_cpu"),
        "the scan found none of the GPU test binaries: {tests:?}"
    );
    for (dir, name) in tests {
        let path = dir.join("tests").join(format!("{name}.rs"));
        let source =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (number, line) in source.lines().enumerate() {
            assert!(
                !line.trim_start().starts_with("#[test]"),
                "{}:{}: #[test] never runs under harness = false; list the function in main instead",
                path.display(),
                number + 1
            );
        }
    }
}
