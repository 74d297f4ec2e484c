//! Each construct the macro cannot differentiate gets a compile error on the construct itself.
#[test]
fn compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
