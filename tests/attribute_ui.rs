//! Compile-time behaviour of `#[scheduler_lock]`: what it accepts
//! (`tests/ui/pass`, compiled and run) and what it rejects, with which message
//! (`tests/ui/*.rs` against the checked-in `*.stderr`).
//!
//! Regenerate the expected messages with
//! `TRYBUILD=overwrite cargo test --test attribute_ui`, then review the diff.

#[test]
fn attribute_ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/*.rs");
}
