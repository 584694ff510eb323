//! The documents the service holds. Their departments come from the policy data
//! (`policies/rego/data.json`, `ztlab.directory.documents`), the same file opa decides with, so
//! that the department shown with a document is the one the policy checked. Titles and bodies
//! live here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The policy data this binary was built with.
const POLICY_DATA: &str = include_str!("../../../policies/rego/data.json");

/// Titles and bodies, by document ID.
const TEXTS: [(&str, &str, &str); 3] = [
    (
        "DOC-001",
        "Service mesh rollout plan",
        "Engineering plan for moving every service to SPIFFE identities: Envoy sidecars get their \
         certificates over SDS, native services use the Workload API, and plain-text listeners are \
         removed by the end of the quarter.",
    ),
    (
        "DOC-002",
        "Quarterly budget forecast",
        "Finance forecast for the next quarter: infrastructure spend grows 4 % with the second \
         SPIRE site, offset by retiring the shared database passwords and their audit overhead.",
    ),
    (
        "DOC-003",
        "Break-glass access procedure",
        "Admin procedure for emergency access: two administrators approve, a short-lived \
         credential is issued from OpenBao, every action is logged, and the credential is revoked \
         when the incident closes.",
    ),
];

/// One document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// `DOC-001`.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The department a reader needs (from the policy data).
    pub department: String,
    /// Its text.
    pub body: String,
}

/// The documents, by ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogue(BTreeMap<String, Document>);

impl Catalogue {
    /// The lab's documents: every document of the policy data this binary was built with, with
    /// its title and body. A document without a text here, or a text without a document there,
    /// is an error (the two are kept in step by a test).
    pub fn lab() -> Result<Self, Error> {
        let data: serde_json::Value = serde_json::from_str(POLICY_DATA)
            .map_err(|e| Error::Catalogue(format!("policies/rego/data.json is not JSON: {e}")))?;
        Self::from_policy_data(&data)
    }

    /// Joins the documents of `data` (`ztlab.directory.documents`) with the texts here.
    pub fn from_policy_data(data: &serde_json::Value) -> Result<Self, Error> {
        let documents = data
            .pointer("/ztlab/directory/documents")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| Error::Catalogue("the policy data has no ztlab.directory.documents".into()))?;
        let mut map = BTreeMap::new();
        for (id, entry) in documents {
            let department = entry
                .get("department")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| Error::Catalogue(format!("document {id} has no department in the policy data")))?;
            let (_, title, body) = TEXTS
                .iter()
                .find(|(t, ..)| t == id)
                .ok_or_else(|| Error::Catalogue(format!("document {id} of the policy data has no text")))?;
            map.insert(
                id.clone(),
                Document {
                    id: id.clone(),
                    title: (*title).into(),
                    department: department.into(),
                    body: (*body).into(),
                },
            );
        }
        if let Some((id, ..)) = TEXTS.iter().find(|(id, ..)| !map.contains_key(*id)) {
            return Err(Error::Catalogue(format!("document {id} has a text but is not in the policy data")));
        }
        Ok(Self(map))
    }

    /// The document `id`.
    pub fn get(&self, id: &str) -> Option<&Document> {
        self.0.get(id)
    }

    /// Every document ID.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_catalogue_matches_the_policy_data() {
        let c = Catalogue::lab().expect("catalogue");
        assert_eq!(c.ids().collect::<Vec<_>>(), ["DOC-001", "DOC-002", "DOC-003"]);
        let dept = |id: &str| c.get(id).expect(id).department.clone();
        assert_eq!([dept("DOC-001"), dept("DOC-002"), dept("DOC-003")], ["engineering", "finance", "admin"]);
        assert!(c.get("DOC-004").is_none());
    }

    #[test]
    fn mismatches_are_errors() {
        let missing_text = serde_json::json!({"ztlab": {"directory": {"documents": {
            "DOC-001": {"department": "engineering"}, "DOC-002": {"department": "finance"},
            "DOC-003": {"department": "admin"}, "DOC-009": {"department": "hr"}}}}});
        let err = Catalogue::from_policy_data(&missing_text).expect_err("no text").to_string();
        assert!(err.contains("DOC-009 of the policy data has no text"), "{err}");
        let missing_doc = serde_json::json!({"ztlab": {"directory": {"documents": {
            "DOC-001": {"department": "engineering"}, "DOC-002": {"department": "finance"}}}}});
        let err = Catalogue::from_policy_data(&missing_doc).expect_err("no doc").to_string();
        assert!(err.contains("DOC-003 has a text but is not in the policy data"), "{err}");
    }
}
