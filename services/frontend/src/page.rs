//! The demo page: one self-contained HTML document (inline CSS and JS, no CDN). A "Run Demo"
//! button posts `/api/run-demo` and renders each hop with PASS/FAIL/SKIPPED (colour and text),
//! its reason and error, and its evidence. Text from the server is inserted as text, never as
//! HTML.

/// `GET /`.
pub const INDEX: &str = include_str!("page.html");
