//! The committed `openapi/openapi.json` is what the code generates (STYLE.md §10).

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let generated = consentry::routes::openapi().to_pretty_json().unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json differs from the code; regenerate it with:\n    cargo run -- openapi > openapi/openapi.json"
    );
}
