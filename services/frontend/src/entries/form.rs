//! Form validation of `POST /api/entries`, on the server: the API's own validated types
//! (`zt_entry_api::validate`, over `zt_identity`'s SPIFFE ID parser) with each problem named by
//! its form field. The page's script checks the same things as you type, as hints only.

use serde::Deserialize;
use serde_json::Value;
use zt_entry_api::pb;
use zt_entry_api::validate::{self, MAX_SELECTORS, MAX_TTL, MIN_TTL};

use crate::error::Problem;

/// `POST /api/entries`'s body. Selectors may be a list of `type:value` lines or one text with a
/// line each; the TTL may be a number or a string of digits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreateRequest {
    /// The SPIFFE ID.
    pub spiffe_id: String,
    /// The parent ID (an agent's node alias).
    pub parent_id: String,
    /// `type:value` selectors.
    pub selectors: Lines,
    /// The X.509-SVID TTL, seconds.
    pub x509_svid_ttl: Value,
    /// The sites.
    pub site_ids: Vec<String>,
    /// The hint.
    pub hint: String,
}

/// Lines given as a list or as one text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Lines {
    /// One line each.
    List(Vec<String>),
    /// A text with a line each.
    Text(String),
}

impl Default for Lines {
    fn default() -> Self {
        Lines::List(Vec::new())
    }
}

impl Lines {
    fn lines(&self) -> Vec<String> {
        match self {
            Lines::List(v) => v.iter().flat_map(|l| l.split('\n')).map(str::to_owned).collect(),
            Lines::Text(t) => t.split('\n').map(str::to_owned).collect(),
        }
    }
}

fn check_id(field: &'static str, value: &str) -> Result<zt_identity::SpiffeId, Problem> {
    if value.is_empty() {
        return Err(Problem::new(
            field,
            "is required: spiffe://<trust domain>/<path>, for example spiffe://ztlab.test/demo/my-app",
        ));
    }
    let id = validate::spiffe_id(field, value).map_err(|e| Problem::new(field, e.message))?;
    if id.path().is_empty() {
        return Err(Problem::new(
            field,
            format!("{value:?} needs a path after the trust domain, for example {value}/demo/my-app"),
        ));
    }
    Ok(id)
}

fn check_selectors(lines: &[String]) -> Result<Vec<pb::Selector>, Problem> {
    let mut out: Vec<pb::Selector> = Vec::new();
    let mut line_of = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // The API's own parser (the CLI's too), with the line it is on.
        let s = validate::selector_str("selectors", line).map_err(|e| {
            let what = e.field.trim_start_matches("selectors").trim_start_matches('.');
            let what = if what.is_empty() { String::new() } else { format!("{what} ") };
            Problem::new("selectors", format!("line {}: {what}{}", i + 1, e.message))
        })?;
        // The API refuses a repeated selector; say which lines, as the page does.
        if let Some(first) = out.iter().position(|o| *o == s) {
            return Err(Problem::new("selectors", format!("line {}: duplicate of line {}", i + 1, line_of[first])));
        }
        out.push(s);
        line_of.push(i + 1);
    }
    if out.is_empty() {
        return Err(Problem::new(
            "selectors",
            "enter at least one selector, one per line, as type:value (for example unix:uid:4242)",
        ));
    }
    if out.len() > MAX_SELECTORS {
        return Err(Problem::new("selectors", format!("at most {MAX_SELECTORS} selectors, not {}", out.len())));
    }
    Ok(out)
}

fn check_ttl(v: &Value) -> Result<i32, Problem> {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    };
    if text.is_empty() {
        return Err(Problem::new("x509_svid_ttl", "is required: a whole number of seconds, for example 300"));
    }
    if !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(Problem::new("x509_svid_ttl", format!("{text:?} is not a whole number of seconds (digits only)")));
    }
    let n: i64 = text.parse().unwrap_or(i64::MAX);
    if n == 0 {
        return Err(Problem::new("x509_svid_ttl", "must be more than 0 seconds"));
    }
    match i32::try_from(n) {
        Ok(n) if (MIN_TTL..=MAX_TTL).contains(&n) => Ok(n),
        _ => {
            Err(Problem::new("x509_svid_ttl", format!("{text} s is out of range: use {MIN_TTL} to {MAX_TTL} seconds")))
        }
    }
}

/// Checks the create form on the server (as the page did while typing): every problem, each
/// naming its field, or the entry to send to entry-manager. The Developer's path prefix is
/// left to entry-manager, whose refusal is the point to show.
pub fn validate_create(req: &CreateRequest) -> Result<pb::EntrySpec, Vec<Problem>> {
    let mut problems = Vec::new();
    let id = check_id("spiffe_id", req.spiffe_id.trim()).map_err(|p| problems.push(p)).ok();
    let parent = check_id("parent_id", req.parent_id.trim()).map_err(|p| problems.push(p)).ok();
    if let (Some(id), Some(parent)) = (&id, &parent)
        && id.trust_domain_name() != parent.trust_domain_name()
    {
        problems.push(Problem::new(
            "parent_id",
            format!("{parent} is not in the entry's trust domain {}", id.trust_domain_name()),
        ));
    } else if let (Some(id), Some(parent)) = (&id, &parent)
        && id == parent
    {
        problems.push(Problem::new("parent_id", "is the entry's own SPIFFE ID: an entry cannot be its own parent"));
    }
    let selectors = check_selectors(&req.selectors.lines()).map_err(|p| problems.push(p)).ok();
    let ttl = check_ttl(&req.x509_svid_ttl).map_err(|p| problems.push(p)).ok();
    let mut sites: Vec<String> = Vec::new();
    if req.site_ids.is_empty() {
        problems.push(Problem::new("site_ids", "choose at least one site"));
    }
    for s in &req.site_ids {
        match validate::site_id("site_ids", s) {
            Ok(s) if !sites.contains(&s) => sites.push(s),
            Ok(_) => {}
            Err(e) => {
                problems.push(Problem::new("site_ids", e.message));
                break;
            }
        }
    }
    if req.hint.len() > 1024 || req.hint.chars().any(char::is_control) {
        problems.push(Problem::new("hint", "must be at most 1024 printable characters"));
    }
    let (Some(id), Some(parent), Some(selectors), Some(ttl), true) = (id, parent, selectors, ttl, problems.is_empty())
    else {
        return Err(problems);
    };
    let spec = pb::EntrySpec {
        spiffe_id: id.to_string(),
        parent_id: parent.to_string(),
        selectors,
        x509_svid_ttl: ttl,
        jwt_svid_ttl: 0,
        dns_names: Vec::new(),
        admin: false,
        downstream: false,
        hint: req.hint.clone(),
        site_ids: sites,
    };
    // The API's own rules, so that the page hears of anything they add before entry-manager does.
    validate::ValidEntry::parse("entry", &spec).map(|v| v.spec().clone()).map_err(|e| {
        vec![Problem::new(super::ui_field(&e.field).unwrap_or("spiffe_id"), format!("{}: {}", e.field, e.message))]
    })
}
