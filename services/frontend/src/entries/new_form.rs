//! `GET /entries/new`: the create form (checked as you type by `entry-form.js`, as hints; the
//! frontend and entry-manager check everything again) above the live list.

use maud::{Markup, html};
use zt_entry_api::pb;
use zt_entry_api::validate::{MAX_SELECTORS, MAX_TTL, MIN_TTL};

use super::client::Snapshot;
use super::views::entry_list;
use crate::assets;
use crate::error::Failure;
use crate::ui::{layout, live_lead};

/// A site the form offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteChoice {
    /// The site ID.
    pub id: String,
    /// Its trust domain.
    pub trust_domain: String,
}

/// What the create form offers: the sites, the parents (each site's node alias) and the
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewEntryForm {
    /// The sites, all checked.
    pub sites: Vec<SiteChoice>,
    /// The node aliases of the sites (the first is the default parent).
    pub parents: Vec<String>,
    /// The lab's trust domain, if known (for the placeholder and the as-you-type check).
    pub trust_domain: Option<String>,
    /// Why the lab spec could not be read, if it could not.
    pub lab_error: Option<String>,
}

impl NewEntryForm {
    /// From the sites entry-manager knows (`sites`, may be empty) and the lab spec (`lab`).
    pub fn new(sites: &[(pb::Site, pb::SiteHealth)], lab: Result<&zt_runtime::lab::LabSpec, String>) -> Self {
        let mut form = NewEntryForm::default();
        match lab {
            Ok(spec) => {
                for s in &spec.sites {
                    let alias = s.node_alias();
                    if !form.parents.contains(&alias) {
                        form.parents.push(alias);
                    }
                }
                form.trust_domain = spec.sites.first().map(|s| s.trust_domain.clone());
                if sites.is_empty() {
                    form.sites = spec
                        .sites
                        .iter()
                        .map(|s| SiteChoice { id: s.name.clone(), trust_domain: s.trust_domain.clone() })
                        .collect();
                }
            }
            Err(e) => form.lab_error = Some(e),
        }
        if !sites.is_empty() {
            form.sites = sites
                .iter()
                .map(|(s, _)| SiteChoice { id: s.id.clone(), trust_domain: s.trust_domain.clone() })
                .collect();
        }
        if form.trust_domain.is_none() {
            form.trust_domain = form.sites.first().map(|s| s.trust_domain.clone());
        }
        if form.parents.is_empty() {
            // Without the lab spec: the node alias every lab site's agent has by default.
            for s in &form.sites {
                let spec = zt_runtime::lab::SiteSpec { trust_domain: s.trust_domain.clone(), ..Default::default() };
                if !form.parents.contains(&spec.node_alias()) {
                    form.parents.push(spec.node_alias());
                }
            }
        }
        form
    }
}

/// One labelled field: `control` is the input; the hint and the error are tied to it.
fn field(id: &str, label: &str, hint: Markup, control: Markup, extra: Markup) -> Markup {
    html! {
        div class="field" {
            label for=(id) { (label) }
            p class="hint" id={ (id) "-hint" } { (hint) }
            (control)
            (extra)
            p id={ (id) "-error" } class="field-error" aria-live="polite" {}
        }
    }
}

/// `aria-describedby` of field `id`: its hint, `more`, its error.
fn described(id: &str, more: &str) -> String {
    format!("{id}-hint{more} {id}-error")
}

/// `GET /entries/new`: the create form above the live list.
pub fn new_entry_page(user: Option<&str>, form: &NewEntryForm, r: Result<&Snapshot, &Failure>) -> String {
    let td = form.trust_domain.as_deref().unwrap_or("ztlab.test");
    let example = format!("spiffe://{td}/demo/my-app");
    let default_parent = form.parents.first().map(String::as_str).unwrap_or_default();
    let parent_hint = match &form.lab_error {
        None => "The SPIRE agent that may issue it: by default the first site's node alias (every site's agent has \
                 one)."
            .to_owned(),
        Some(e) => format!(
            "The SPIRE agent that may issue it. The lab spec could not be read ({e}), so the default is the node \
             alias a lab site's agent has unless lab.toml changes it."
        ),
    };
    let body = html! {
        h1 { "New entry" }
        p class="lead" {
            "Register a workload with entry-manager; each chosen site's agent puts it on its SPIRE server (PENDING, then \
             SYNCED). The UI calls entry-manager as "
            span class="mono" { "spiffe://" (td) "/ns/demo/sa/frontend" }
            ", a Developer that may write only under " span class="mono" { "/demo" }
            ": least privilege for the UI itself. " a href="/entries" { "Back to the entries" } "."
        }
        form id="entry-form" class="panel form" novalidate aria-describedby="entry-form-hint" data-trust-domain=(td)
            data-path-prefix="/demo" data-min-ttl=(MIN_TTL) data-max-ttl=(MAX_TTL) data-max-selectors=(MAX_SELECTORS) {
            p id="entry-form-hint" class="muted" {
                "Every field is checked as you type and again by the frontend and entry-manager; nothing is written \
                 unless all of it is valid."
            }
            (field("entry-spiffe-id", "SPIFFE ID",
                html! { "spiffe://<trust domain>/<path>, for example " span class="mono" { (example) } ". The UI may write only under /demo." },
                html! {
                    input id="entry-spiffe-id" name="spiffe_id" type="text" class="mono" required autocomplete="off"
                        spellcheck="false" autocapitalize="off" placeholder=(example)
                        aria-describedby=(described("entry-spiffe-id", " entry-spiffe-id-scope"));
                },
                html! { p id="entry-spiffe-id-scope" class="field-note" aria-live="polite" {} }))
            (field("entry-parent-id", "Parent ID", html! { (parent_hint) },
                html! {
                    input id="entry-parent-id" name="parent_id" type="text" class="mono" required autocomplete="off"
                        spellcheck="false" autocapitalize="off" list="entry-parent-choices" value=(default_parent)
                        aria-describedby=(described("entry-parent-id", ""));
                    datalist id="entry-parent-choices" { @for p in &form.parents { option value=(p) {} } }
                },
                html! {}))
            (field("entry-selectors", "Selectors",
                html! {
                    "One per line, as type:value, for example " span class="mono" { "unix:uid:4242" }
                    ". A workload gets the SVID only if it matches every selector."
                },
                html! {
                    textarea id="entry-selectors" name="selectors" rows="3" required spellcheck="false"
                        autocapitalize="off" placeholder="unix:uid:4242"
                        aria-describedby=(described("entry-selectors", "")) {}
                },
                html! {}))
            (field("entry-ttl", "X.509 SVID TTL (seconds)",
                html! { "How long each X.509-SVID is valid: a whole number of seconds, " (MIN_TTL) " to " (MAX_TTL) "." },
                html! {
                    input id="entry-ttl" name="x509_svid_ttl" type="text" inputmode="numeric" required autocomplete="off"
                        value="300" aria-describedby=(described("entry-ttl", ""));
                },
                html! {}))
            fieldset id="entry-sites" class="field" aria-describedby="entry-sites-hint entry-sites-error" {
                legend { "Sites" }
                p class="hint" id="entry-sites-hint" { "The SPIRE servers that get the entry." }
                div class="checks" {
                    @for s in &form.sites {
                        label for={ "entry-site-" (s.id) } {
                            input type="checkbox" id={ "entry-site-" (s.id) } name="site_ids" value=(s.id) checked;
                            " " (s.id) " " span class="muted" { "(" (s.trust_domain) ")" }
                        }
                    }
                    @if form.sites.is_empty() {
                        span class="muted" { "No sites are known yet (entry-manager does not answer)." }
                    }
                }
                p id="entry-sites-error" class="field-error" aria-live="polite" {}
            }
            (field("entry-hint", "Hint (optional)",
                html! { "A label SPIRE passes to the workload with its SVID, to tell several identities apart." },
                html! {
                    input id="entry-hint" name="hint" type="text" autocomplete="off" value="demo"
                        aria-describedby=(described("entry-hint", ""));
                },
                html! {}))
            button id="entry-create" type="submit" class="primary" { "Create entry" }
            p id="entry-form-status" role="status" aria-live="polite" {}
        }
        noscript { p class="error-box" { "This form needs JavaScript." } }
        h2 { "Entries" }
        (live_lead("The list updates by itself: a new entry turns from PENDING to SYNCED at each site."))
        div id="error" { @if let Err(f) = r { (f) } }
        (entry_list(r))
        (assets::script("entry-form.js"))
    };
    layout("New entry", "entries", user, &["entries.css"], body)
}
