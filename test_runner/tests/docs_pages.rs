//! The README stays a first page: under 12,000 bytes, the two commands a newcomer needs, and links only
//! to pages that exist. Every page under `docs/` is dated, and every relative link in it resolves.

use std::path::{Path, PathBuf};

/// README.md's size limit in bytes.
const README_LIMIT: usize = 12_000;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test_runner sits in the workspace root")
        .to_path_buf()
}

/// The targets of the Markdown links `[text](target)` in `text` that are not URLs or in-page anchors,
/// without any `#fragment`.
fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("](") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = &rest[..end];
        rest = &rest[end..];
        if target.contains("://") || target.starts_with('#') || target.contains(' ') {
            continue;
        }
        let path = target.split('#').next().unwrap_or(target);
        if !path.is_empty() {
            links.push(path.to_owned());
        }
    }
    links
}

fn missing_links(page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
    let dir = page.parent().expect("a page has a directory");
    relative_links(&text)
        .into_iter()
        .filter(|target| !dir.join(target).exists())
        .collect()
}

#[test]
fn readme_fits_and_shows_the_two_commands() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    assert!(
        readme.len() < README_LIMIT,
        "README.md is {} bytes; move detail to docs/ (limit {README_LIMIT})",
        readme.len()
    );
    for command in [
        "cargo run --release -p bench_ingest",
        "cargo test --workspace",
    ] {
        assert!(readme.contains(command), "README.md must show `{command}`");
    }
}

#[test]
fn every_relative_link_resolves() {
    let root = workspace_root();
    let mut pages = vec![root.join("README.md")];
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/ exists");
    for entry in docs {
        let path = entry.expect("docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    assert!(pages.len() > 1, "docs/ has pages");
    let broken: Vec<String> = pages
        .iter()
        .flat_map(|page| {
            missing_links(page)
                .into_iter()
                .map(move |t| format!("{} -> {t}", page.display()))
        })
        .collect();
    assert!(broken.is_empty(), "links to missing files: {broken:?}");
}

#[test]
fn every_docs_page_is_dated() {
    let docs = workspace_root().join("docs");
    for entry in std::fs::read_dir(&docs).expect("docs/ exists") {
        let path = entry.expect("docs/ entry").path();
        let text = std::fs::read_to_string(&path).expect("a docs page");
        let dated = text.as_bytes().windows(10).any(|w| {
            w.iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                _ => b.is_ascii_digit(),
            })
        });
        assert!(dated, "{} names no date (YYYY-MM-DD)", path.display());
    }
}

#[test]
fn link_parsing_finds_relative_targets_only() {
    let text = "see [a](docs/A.md), [b](https://x.y/z), [c](#here), [d](docs/B.md#part)";
    assert_eq!(relative_links(text), vec!["docs/A.md", "docs/B.md"]);
}
