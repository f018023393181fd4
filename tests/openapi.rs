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

/// Every `$ref` names a schema the document defines (clients and fuzzers cannot use a dangling one).
#[test]
fn every_reference_resolves() {
    let doc = serde_json::to_value(consentry::routes::openapi()).unwrap();
    let defined: std::collections::HashSet<String> =
        doc["components"]["schemas"].as_object().unwrap().keys().cloned().collect();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v.as_str()) {
                        ("$ref", Some(r)) => out.push(r.rsplit('/').next().unwrap_or_default().to_owned()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut refs = Vec::new();
    walk(&doc, &mut refs);
    let dangling: Vec<&String> = refs.iter().filter(|r| !defined.contains(*r)).collect();
    assert!(dangling.is_empty(), "undefined schemas: {dangling:?}");
}
