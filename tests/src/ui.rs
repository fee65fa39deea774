//! Compile-fail tests of the macros: unsupported shapes and attributes get one
//! clear error each, with its span, and no further errors where the item is used.

#[test]
fn cached_as_attribute_errors() {
    trybuild::TestCases::new().compile_fail("ui/cached_as/*.rs");
}

#[test]
fn cached_attribute_errors() {
    trybuild::TestCases::new().compile_fail("ui/cached/*.rs");
}

#[test]
fn cacheable_attribute_errors() {
    trybuild::TestCases::new().compile_fail("ui/cacheable/*.rs");
}

/// What the rules accept compiles (lifetime parameters).
#[test]
fn accepted_shapes_compile() {
    trybuild::TestCases::new().pass("ui/pass/*.rs");
}
