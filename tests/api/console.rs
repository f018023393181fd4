//! The console (`/console`, issue 13): served from the binary under a strict
//! Content-Security-Policy, within its size budget. Its pages are walked in a real browser by
//! `console/test/console.browser.mjs`.

use crate::helpers::{assert_problem, TestApp};

crate::backend_tests!(the_console_is_served_from_the_binary_under_a_strict_csp_within_100_kb_gzipped);

async fn the_console_is_served_from_the_binary_under_a_strict_csp_within_100_kb_gzipped(app: TestApp) {
    let mut gzipped = 0;
    for (path, content_type) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/assets/console.js", "text/javascript; charset=utf-8"),
        ("/console/assets/console.css", "text/css; charset=utf-8"),
    ] {
        let res = app.client.get(app.url(path)).header("Accept-Encoding", "gzip").send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers().clone();
        assert_eq!(h["content-type"], content_type);
        assert_eq!(h["content-encoding"], "gzip");
        // Only its own script, stylesheet and API; no inline code; never framed.
        let csp = h["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        gzipped += res.bytes().await.unwrap().len();
    }
    assert!(gzipped <= 100 * 1024, "the console is {gzipped} bytes gzipped, over its budget of 100 KB");
    let page = app.client.get(app.url("/console")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"<script type="module" src="/console/assets/console.js"></script>"#));
    assert!(!page.contains("<script>"), "no inline script");
    // Revalidated by ETag.
    let first = app.client.get(app.url("/console/assets/console.js")).send().await.unwrap();
    let tag = first.headers()["etag"].to_str().unwrap().to_owned();
    let again =
        app.client.get(app.url("/console/assets/console.js")).header("If-None-Match", &tag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    assert_problem(app.client.get(app.url("/console/assets/secrets.js")).send().await.unwrap(), 404).await;
}
