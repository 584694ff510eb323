//! Section 3 of the policies page: the CiliumNetworkPolicies of the kind runtime and the
//! who-may-reach-whom matrix they are checked against, read from the repository checkout.

use std::path::{Path, PathBuf};

use maud::{Markup, html};

use super::root_todo;
use crate::ui::error_box;

/// One `[[flow]]` of reachability.toml, expanded to names and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Flow {
    from: Vec<String>,
    to: Vec<String>,
    ports: Vec<i64>,
    protocol: String,
    allowed: bool,
    mutual_auth: bool,
}

fn names(v: Option<&toml::Value>, field: &str) -> Result<Vec<String>, String> {
    match v {
        Some(toml::Value::String(s)) => Ok(vec![s.clone()]),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or(format!("{field}: a list of names is expected")))
            .collect(),
        _ => Err(format!("{field} is missing")),
    }
}

pub(super) fn flows(text: &str) -> Result<Vec<Flow>, String> {
    let t: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let list = t.get("flow").and_then(toml::Value::as_array).ok_or("it has no [[flow]]")?;
    list.iter()
        .enumerate()
        .map(|(i, f)| {
            let f = f.as_table().ok_or(format!("flow[{i}] is not a table"))?;
            let ports = match f.get("port") {
                Some(toml::Value::Integer(p)) => vec![*p],
                Some(toml::Value::Array(a)) => a
                    .iter()
                    .map(|x| x.as_integer().ok_or(format!("flow[{i}].port: numbers are expected")))
                    .collect::<Result<_, _>>()?,
                _ => return Err(format!("flow[{i}].port is missing")),
            };
            Ok(Flow {
                from: names(f.get("from"), &format!("flow[{i}].from"))?,
                to: names(f.get("to"), &format!("flow[{i}].to"))?,
                ports,
                protocol: f.get("protocol").and_then(toml::Value::as_str).unwrap_or("TCP").to_owned(),
                allowed: f
                    .get("allowed")
                    .and_then(toml::Value::as_bool)
                    .ok_or(format!("flow[{i}].allowed is missing"))?,
                mutual_auth: f.get("mutual_auth").and_then(toml::Value::as_bool).unwrap_or(false),
            })
        })
        .collect()
}

/// How the flows of one matrix cell are grouped: allowed, mutual auth, protocol.
type FlowKey<'a> = (bool, bool, &'a str);

/// The flows from `s` to `d`, grouped by [`FlowKey`] with their ports, in file order.
fn cell<'a>(flows: &'a [Flow], s: &str, d: &str) -> Vec<(FlowKey<'a>, Vec<i64>)> {
    let mut groups: Vec<(FlowKey<'a>, Vec<i64>)> = Vec::new();
    for f in flows.iter().filter(|f| f.from.iter().any(|n| n == s) && f.to.iter().any(|n| n == d)) {
        let key = (f.allowed, f.mutual_auth, f.protocol.as_str());
        let at = match groups.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                groups.push((key, Vec::new()));
                groups.len() - 1
            }
        };
        for p in &f.ports {
            if !groups[at].1.contains(p) {
                groups[at].1.push(*p);
            }
        }
    }
    groups
}

/// The names in `lists`, each once, in order.
fn unique<'a>(lists: impl Iterator<Item = &'a Vec<String>>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for n in lists.flatten() {
        if !out.contains(&n.as_str()) {
            out.push(n);
        }
    }
    out
}

/// The who-may-reach-whom matrix: sources down, destinations across, each cell the ports with
/// ✓ (allowed) or ✗ (denied); a pair the file does not list is denied by default.
pub(super) fn reachability_table(flows: &[Flow]) -> Markup {
    let from = unique(flows.iter().map(|f| &f.from));
    let to = unique(flows.iter().map(|f| &f.to));
    html! {
        div class="scroll" {
            table id="reachability" aria-label="Who may reach whom" {
                thead { tr { th scope="col" { "from ↓ to →" } @for t in &to { th scope="col" { (t) } } } }
                tbody {
                    @for s in &from {
                        tr {
                            th scope="row" { (s) }
                            @for d in &to {
                                @let groups = cell(flows, s, d);
                                @let cls = if groups.is_empty() { "cell-none" }
                                    else if groups.iter().any(|((a, _, _), _)| *a) { "cell-yes" } else { "cell-no" };
                                td class=(cls) data-from=(s) data-to=(d) {
                                    @if groups.is_empty() { span class="flow none" { "✗ not listed: denied" } }
                                    @for ((allowed, mutual, proto), ports) in &groups {
                                        @let ports = ports.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
                                        div class={ "flow " (if *allowed { "yes" } else { "no" }) } {
                                            (if *allowed { "✓" } else { "✗" }) " " (proto) " " (ports)
                                            @if *allowed && *mutual { " · mutual auth" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The `description:` of a CiliumNetworkPolicy YAML, if it has one on one line.
fn description(yaml: &str) -> Option<String> {
    yaml.lines().find_map(|l| {
        let d = l.trim_start().strip_prefix("description:")?.trim();
        Some(d.trim_matches('"').to_owned()).filter(|d| !d.is_empty())
    })
}

/// The policy files (`*.yaml`, `*.yml`) in `dir`, sorted.
fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Section 3, from the repository checkout `root`.
pub fn cilium_section(root: &Path) -> Markup {
    let dir = root.join("infrastructure/kind/policies");
    let matrix = root.join("infrastructure/kind/reachability.toml");
    html! {
        section id="cilium" class="panel" aria-labelledby="cilium-h" {
            h2 id="cilium-h" { "3. Cilium: which pod may open a connection to which (kind only)" }
            p class="notice" id="cilium-note" {
                strong {
                    "Enforced only on kind (Cilium with SPIRE mutual auth); the local runtime does not enforce these — it \
                     shows them."
                }
            }
            p class="explain" {
                "Below the identity layer, the network itself is default-deny. Each pod may open only the connections \
                 listed here; for the app's own traffic Cilium also requires both ends to prove their SPIFFE identity \
                 (mutual authentication). Everything not allowed is dropped before it reaches the pod."
            }
            h3 { "Who may reach whom" }
            p class="muted" {
                "From " span class="mono" { (matrix.display()) } ", the matrix "
                span class="mono" { "scripts/validate-kind.sh" } " checks the policies against. ✓ allowed, ✗ denied."
            }
            @match std::fs::read_to_string(&matrix) {
                Ok(text) => @match flows(&text) {
                    Ok(f) => (reachability_table(&f)),
                    Err(e) => (error_box(
                        &format!("{} does not parse: {e}", matrix.display()),
                        "Fix infrastructure/kind/reachability.toml (scripts/validate-kind.sh checks it).",
                    )),
                },
                Err(e) => (error_box(&format!("cannot read {}: {e}", matrix.display()), &root_todo(root))),
            }
            h3 { "The CiliumNetworkPolicies" }
            p class="muted" { "From " span class="mono" { (dir.display()) } "." }
            @match policy_files(&dir) {
                Ok(files) if files.is_empty() => (error_box(
                    &format!("no CiliumNetworkPolicy (*.yaml) in {}", dir.display()),
                    &root_todo(root),
                )),
                Ok(files) => {
                    @for f in &files {
                        @match std::fs::read_to_string(f) {
                            Ok(text) => details class="file" {
                                summary {
                                    span class="mono" { (f.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()) }
                                    @if let Some(d) = description(&text) { ": " (d) }
                                }
                                pre class="code" { (text) }
                            },
                            Err(e) => (error_box(&format!("cannot read {}: {e}", f.display()), &root_todo(root))),
                        }
                    }
                }
                Err(e) => (error_box(&format!("cannot read {}: {e}", dir.display()), &root_todo(root))),
            }
        }
    }
}
