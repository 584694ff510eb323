//! The entry-management pages and actions, by concern: [`client`] (the gRPC client wrapper),
//! [`views`] and [`new_form`] (maud templates and the JSON the scripts read), [`form`] (form
//! validation with the API's validated types), [`errors`] (entry-manager's statuses as what the
//! pages and the JSON API say) and [`handlers`] (the routes).
//!
//! Pages (server-rendered, updated in place from `GET /events/entries`, a server-sent event
//! stream that pushes [`snapshot_json`] of each view the status task publishes, about every
//! second: [`crate::status`]):
//! - `GET /entries`: every entry with a badge per site, a Delete button per row (with a
//!   confirmation dialog) and links to the create form and the audit history.
//! - `GET /entries/new`: the create form (validated as you type) above the same live list.
//! - `GET /entries/audit` (`?entry=<id>` for one entry): entry-manager's audit trail, newest first.
//! - `GET /sites`: each site's health.
//!
//! Actions (JSON, behind the login like the pages; every write is logged with the signed-in user):
//! - `POST /api/entries`: `{"spiffe_id","parent_id","selectors":["type:value",…],
//!   "x509_svid_ttl","site_ids":[…],"hint"}`, validated here ([`validate_create`]) and then by
//!   entry-manager's `CreateEntry`; 201 `{"ok":true,"entry"}`, else `{"error","field","errors"}`
//!   with 400 (invalid), 403 (PermissionDenied), 409 (AlreadyExists), 5xx (entry-manager down).
//! - `DELETE /api/entries/{id}`: entry-manager's `DeleteEntry`, which marks the entry DELETING at
//!   every site; it disappears once every site's SPIRE server has removed it.
//! - `GET /api/entries/audit` (`?entry=<id>`): `{"ok":true,"events":[…]}` ([`audit_json`]).
//!
//! The data comes from entry-manager's mTLS listener (`entry_manager_url`), called with the
//! frontend's own SVID; the server must present entry-manager's SPIFFE ID. entry-manager grants
//! the frontend the `Developer` role with `path_prefixes = ["/demo"]` (config `[[identities]]`,
//! written by `zt_runtime::entrymgmt`): it reads everything but may create and delete only
//! `spiffe://<td>/demo/...` entries. Anything else comes back as PermissionDenied, which the
//! form shows next to the SPIFFE ID.

pub mod client;
pub mod errors;
pub mod form;
pub mod handlers;
pub mod new_form;
#[cfg(test)]
mod tests;
pub mod views;

pub use client::{EntryManager, Snapshot, authority};
pub use errors::{rpc_error, ui_field};
pub use form::{CreateRequest, Lines, validate_create};
pub use handlers::routes;
pub use new_form::{NewEntryForm, SiteChoice, new_entry_page};
pub use views::{
    audit_json, audit_outcome, audit_page, entries_page, entry_json, site_json, sites_page, snapshot_json, state_badge,
};
