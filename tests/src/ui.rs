//! Compile-fail tests of `#[cached_as]`: unsupported shapes get one clear error
//! each, with its span.

#[test]
fn cached_as_attribute_errors() {
    trybuild::TestCases::new().compile_fail("ui/cached_as/*.rs");
}
