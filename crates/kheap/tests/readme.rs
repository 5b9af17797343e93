//! The README and the crate's first documentation page show the same complete program, kept in
//! one place: `examples/host_program.rs` (the crate docs include it); the README must show it
//! as it is.

#[test]
fn readme_shows_the_host_program_example_as_it_is() {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{manifest}/../../README.md")).unwrap();
    let example = std::fs::read_to_string(format!("{manifest}/examples/host_program.rs")).unwrap();
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "README.md no longer shows examples/host_program.rs as it is: update one from the other"
    );
}

#[test]
fn readme_code_blocks_hide_no_lines() {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{manifest}/../../README.md")).unwrap();
    let mut in_rust = false;
    for (n, line) in readme.lines().enumerate() {
        if line.starts_with("```") {
            in_rust = !in_rust && line.starts_with("```rust");
            continue;
        }
        assert!(
            !(in_rust && (line == "#" || line.starts_with("# "))),
            "README.md line {}: a rustdoc-hidden line, which a reader pasting the block would miss",
            n + 1
        );
    }
}
