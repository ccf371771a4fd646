//! The README's library quick start is `examples/write_read_layer.rs`, byte for byte: the example is
//! compiled (clippy `--all-targets`) and run (`.ci/run`), and this test fails when the two drift apart.

/// The body of the first fenced block in `markdown` that opens with `fence` (a line of its own).
fn fenced_block<'a>(markdown: &'a str, fence: &str) -> Option<&'a str> {
    let open = format!("\n{fence}\n");
    let start = markdown.find(&open)? + open.len();
    let len = markdown[start..].find("\n```\n")? + 1;
    Some(&markdown[start..start + len])
}

#[test]
fn readme_quick_start_is_the_write_read_layer_example() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let example = std::fs::read_to_string(format!(
        "{}/examples/write_read_layer.rs",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("examples/write_read_layer.rs");
    let block = fenced_block(&readme, "```rust")
        .expect("README.md has a ```rust block (the library quick start)");
    assert_eq!(
        block, example,
        "the README's ```rust block must equal layer_writers/examples/write_read_layer.rs"
    );
}

#[test]
fn fenced_block_finds_the_body() {
    let md = "text\n```sh\nls\n```\n```rust\nfn main() {}\n```\nmore\n";
    assert_eq!(fenced_block(md, "```rust"), Some("fn main() {}\n"));
    assert_eq!(fenced_block(md, "```toml"), None);
}
