//! The demo page, in the shared layout: a "Run Demo" button posts `/api/run-demo` and renders
//! each hop with PASS/FAIL/SKIPPED (colour and text), its reason and error, and its evidence.
//! Text from the server is inserted as text, never as HTML. The body is `page.html`.

/// The page's body (page-specific CSS, the button and the hops, the script).
const BODY: &str = include_str!("page.html");

/// `GET /`.
pub fn index() -> String {
    crate::ui::layout("Run Demo", "demo", BODY)
}
