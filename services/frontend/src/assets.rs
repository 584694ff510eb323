//! The UI's JavaScript and CSS: files under `services/frontend/assets/`, embedded in the binary
//! at build time and served from `GET /assets/{name}` (offline, no CDN), open to everyone like
//! `/login`, which uses them too.
//!
//! Pages link them with [`url`], which adds the file's content hash (`?v=…`), so an asset is
//! cached for a year (`immutable`) and a rebuilt frontend's pages fetch the new one.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};

use crate::AppState;

/// One embedded file.
#[derive(Debug)]
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset { name: $name, content_type: $type, body: include_str!(concat!("../assets/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

static ASSETS: &[Asset] = &[
    asset!("ztlab.css", CSS),
    asset!("zt.js", JS),
    asset!("demo.css", CSS),
    asset!("demo.js", JS),
    asset!("dashboard.js", JS),
    asset!("scenario.js", JS),
    asset!("entries.css", CSS),
    asset!("entries.js", JS),
    asset!("entries-delete.js", JS),
    asset!("entry-form.js", JS),
    asset!("audit.js", JS),
    asset!("policies.css", CSS),
    asset!("policies.js", JS),
    asset!("favicon.svg", SVG),
];

/// The lab's icon: every page links it, and `/favicon.ico` (which browsers ask for on their own)
/// answers with it, so no page load ends in a 404.
pub const FAVICON: &str = "favicon.svg";

/// Each asset by name, with its version (a hash of its content).
static BY_NAME: LazyLock<HashMap<&'static str, (&'static Asset, String)>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let mut h = DefaultHasher::new();
            a.body.hash(&mut h);
            (a.name, (a, format!("{:016x}", h.finish())))
        })
        .collect()
});

/// The URL of asset `name`, with its version.
pub fn url(name: &str) -> String {
    match BY_NAME.get(name) {
        Some((_, v)) => format!("/assets/{name}?v={v}"),
        None => {
            debug_assert!(false, "no asset {name}");
            format!("/assets/{name}")
        }
    }
}

/// `<script src>` of asset `name` (a `.js`).
pub fn script(name: &str) -> Markup {
    html! { script src=(url(name)) {} }
}

/// `<link rel=icon>` of the lab's icon.
pub fn icon() -> Markup {
    html! { link rel="icon" type=(SVG) href=(url(FAVICON)); }
}

/// `<link rel=stylesheet>` of asset `name` (a `.css`).
pub fn stylesheet(name: &str) -> Markup {
    html! { link rel="stylesheet" href=(url(name)); }
}

/// The text of every asset `page` links (tests check what a page's scripts do), after checking
/// that each `<script>` and `<link>` of the page loads one of these assets and nothing else.
#[cfg(test)]
pub(crate) fn linked(page: &str) -> String {
    for tag in ["<script", "<link"] {
        for (i, _) in page.match_indices(tag) {
            let end = page[i..].find('>').map_or(page.len(), |e| i + e);
            assert!(page[i..end].contains("=\"/assets/"), "loads only its own assets: {}", &page[i..end]);
        }
    }
    ASSETS.iter().filter(|a| page.contains(&url(a.name))).map(|a| a.body).collect::<Vec<_>>().join("\n")
}

async fn serve(Path(name): Path<String>) -> Response {
    serve_named(&name)
}

fn serve_named(name: &str) -> Response {
    match BY_NAME.get(name) {
        Some((a, _)) => (
            [(header::CONTENT_TYPE, a.content_type), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")],
            a.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "no such asset")
            .into_response(),
    }
}

/// `GET /assets/{name}`, and `GET /favicon.ico` (the icon).
pub fn routes() -> Router<AppState> {
    Router::new().route("/assets/{name}", get(serve)).route("/favicon.ico", get(|| async { serve_named(FAVICON) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_its_content_type_and_a_versioned_url() {
        for a in ASSETS {
            let want = match a.name.rsplit_once('.').map(|(_, ext)| ext) {
                Some("js") => JS,
                Some("svg") => SVG,
                _ => CSS,
            };
            assert_eq!(a.content_type, want, "{}", a.name);
            assert!(url(a.name).starts_with(&format!("/assets/{}?v=", a.name)));
            // An SVG names its XML namespace with a URL; that loads nothing.
            let body = a.body.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            assert!(!body.contains("http://") && !body.contains("https://"), "{} loads nothing external", a.name);
            assert!(!a.body.contains("innerHTML"), "{} inserts text only", a.name);
        }
        assert_eq!(script("zt.js").into_string(), format!("<script src=\"{}\"></script>", url("zt.js")));
    }
}
