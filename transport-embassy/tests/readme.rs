//! The README's code is the terminal example's, verbatim: CI builds the example, so what
//! crates.io shows compiles.

#[test]
fn readme_shows_the_terminal_example() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/terminal.rs");
    let mut blocks = 0;
    for block in readme.split("```rust\n").skip(1) {
        let code = block.split("```").next().unwrap_or_default();
        assert!(
            example.contains(code),
            "transport-embassy/README.md shows code that is not in examples/terminal.rs \
             (copy the excerpt again):\n{code}"
        );
        blocks += 1;
    }
    assert_eq!(blocks, 1, "one example in the README");
}
