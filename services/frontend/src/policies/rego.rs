//! Section 2 of the policies page: the OPA/Rego delegation policy and its data, read from the
//! repository checkout (`policies/rego`), with the departments of users and agents as a table.

use std::collections::BTreeSet;
use std::path::Path;

use maud::{Markup, html};

use super::root_todo;
use crate::error::Failure;
use crate::ui::error_box;

/// Every `*.rego` under `dir` except `*_test.rego`, as (path relative to `dir`, text), sorted.
fn rego_files(root: &Path, dir: &Path) -> Result<Vec<(String, String)>, Failure> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if path.is_dir() {
                walk(&path, base, out)?;
            } else if name.ends_with(".rego") && !name.ends_with("_test.rego") {
                let rel = path.strip_prefix(base).unwrap_or(&path).display().to_string();
                out.push((rel, std::fs::read_to_string(&path)?));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out).map_err(|e| {
        Failure::new(format!("cannot read the Rego policies in {}: {e}", dir.display()), root_todo(root))
    })?;
    if out.is_empty() {
        return Err(Failure::new(
            format!("no Rego policy (*.rego other than *_test.rego) in {}", dir.display()),
            root_todo(root),
        ));
    }
    out.sort();
    Ok(out)
}

/// A user or agent and the departments it has.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    name: String,
    agent: bool,
    departments: BTreeSet<String>,
}

/// `data.ztlab.directory` of `data.json`, as far as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Directory {
    trust_domain: String,
    direct_callers: Vec<String>,
    members: Vec<Member>,
    documents: Vec<(String, String)>,
}

/// The strings of a JSON array (nothing if it is not one).
fn strings(v: Option<&serde_json::Value>) -> impl Iterator<Item = String> + '_ {
    v.and_then(serde_json::Value::as_array).into_iter().flatten().filter_map(|x| x.as_str().map(str::to_owned))
}

pub(super) fn directory(text: &str) -> Result<Directory, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("it is not JSON: {e}"))?;
    let d = v
        .pointer("/ztlab/directory")
        .and_then(serde_json::Value::as_object)
        .ok_or("it has no ztlab.directory object")?;
    let members = |key: &str, agent: bool| -> Result<Vec<Member>, String> {
        let map =
            d.get(key).and_then(serde_json::Value::as_object).ok_or(format!("ztlab.directory.{key} is missing"))?;
        Ok(map
            .iter()
            .map(|(name, m)| Member { name: name.clone(), agent, departments: strings(m.get("departments")).collect() })
            .collect())
    };
    let mut all = members("users", false)?;
    all.extend(members("agents", true)?);
    let documents = d
        .get("documents")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flatten()
        .map(|(id, doc)| {
            (id.clone(), doc.get("department").and_then(serde_json::Value::as_str).unwrap_or("—").to_owned())
        })
        .collect();
    Ok(Directory {
        trust_domain: d.get("trust_domain").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned(),
        direct_callers: strings(d.get("direct_callers")).collect(),
        members: all,
        documents,
    })
}

pub(super) fn departments_table(d: &Directory) -> Markup {
    let mut depts: BTreeSet<String> = d.members.iter().flat_map(|m| m.departments.iter().cloned()).collect();
    depts.extend(d.documents.iter().map(|(_, dep)| dep.clone()));
    html! {
        table id="departments" aria-label="Departments of users and agents" {
            thead { tr {
                th scope="col" { "Who" } th scope="col" { "Kind" } th scope="col" { "SPIFFE ID" }
                @for dep in &depts { th scope="col" { (dep) } }
            } }
            tbody {
                @for m in &d.members {
                    tr {
                        th scope="row" { (m.name) }
                        @if m.agent {
                            td { "AI agent" } td class="mono" { "spiffe://" (d.trust_domain) "/agent/" (m.name) }
                        } @else {
                            td { "user" } td class="mono" { "— (signs in; no SVID)" }
                        }
                        @for dep in &depts {
                            @if m.departments.contains(dep) { td class="cell-yes" { "✓ yes" } }
                            @else { td class="cell-no" { "✗ no" } }
                        }
                    }
                }
            }
        }
        @if !d.documents.is_empty() {
            h3 { "Documents and the department each needs" }
            table id="documents" aria-label="Documents" {
                thead { tr { th scope="col" { "Document" } th scope="col" { "Needs department" } } }
                tbody { @for (id, dep) in &d.documents { tr { td class="mono" { (id) } td { (dep) } } } }
            }
        }
    }
}

/// Section 2, from the repository checkout `root`.
pub fn rego_section(root: &Path) -> Markup {
    let dir = root.join("policies/rego");
    let data_file = dir.join("data.json");
    let data = std::fs::read_to_string(&data_file);
    let directory = data.as_ref().map(|text| directory(text));
    html! {
        section id="rego" class="panel" aria-labelledby="rego-h" {
            h2 id="rego-h" { "2. Rego (OPA): who may read which document" }
            p class="explain" {
                "Before every read, the document service asks OPA. A user reading directly, through the frontend, \
                 needs the document's department. When an AI agent acts for a user, " strong { "both" }
                " the user and the agent need it. OPA knows the agent by the SPIFFE ID it authenticated with over mTLS ("
                span class="mono" { "spiffe://…/agent/<name>" } "), never by what the request claims."
            }
            p class="muted" {
                "Read now from " span class="mono" { (dir.display()) } ": the same files the opa service loads."
            }
            h3 { "Who has which department (data.json)" }
            @match &directory {
                Ok(Ok(d)) => {
                    @if !d.direct_callers.is_empty() {
                        @let callers: Vec<String> =
                            d.direct_callers.iter().map(|p| format!("spiffe://{}{p}", d.trust_domain)).collect();
                        p { "Direct callers (a user reads without an agent): " span class="mono" { (callers.join(", ")) } }
                    }
                    (departments_table(d))
                }
                Ok(Err(e)) => (error_box(
                    &format!("{} does not give the directory: {e}", data_file.display()),
                    "Fix policies/rego/data.json (opa test policies/rego checks it).",
                )),
                Err(e) => (error_box(&format!("cannot read {}: {e}", data_file.display()), &root_todo(root))),
            }
            h3 { "The policy" }
            @match rego_files(root, &dir) {
                Ok(files) => {
                    @for (name, text) in files {
                        details class="file" open {
                            summary class="mono" { "policies/rego/" (name) }
                            pre class="code" { (text) }
                        }
                    }
                }
                Err(f) => (f),
            }
            // A missing data.json is reported above.
            @if let Ok(text) = &data {
                details class="file" {
                    summary class="mono" { "policies/rego/data.json" }
                    pre class="code" { (text) }
                }
            }
        }
    }
}
