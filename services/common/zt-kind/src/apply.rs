//! Server-side apply of the lab's objects: typed ones, and multi-document YAML whose kinds are
//! resolved through the API server's discovery.

use anyhow::{Context as _, anyhow, bail};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use serde::Deserialize as _;

use crate::Result;

/// The field manager of everything the lab applies.
pub const FIELD_MANAGER: &str = "ztlab";

/// The objects of a multi-document YAML text, in order (empty documents skipped). A document
/// that is not an object with `apiVersion`, `kind` and `metadata.name` is an error naming its
/// position in `source`.
pub fn parse_documents(source: &str, yaml: &str) -> Result<Vec<DynamicObject>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = serde_yaml::Value::deserialize(doc).with_context(|| format!("{source}: document {}", i + 1))?;
        if value.is_null() {
            continue;
        }
        let json = serde_json::to_value(&value).with_context(|| format!("{source}: document {}", i + 1))?;
        let obj: DynamicObject = serde_json::from_value(json)
            .with_context(|| format!("{source}: document {}: not a Kubernetes object", i + 1))?;
        if obj.types.is_none() {
            bail!("{source}: document {}: apiVersion and kind are required", i + 1);
        }
        if obj.metadata.name.as_deref().unwrap_or("").is_empty() {
            bail!("{source}: document {}: metadata.name is required", i + 1);
        }
        out.push(obj);
    }
    Ok(out)
}

/// `kind/name` (and the namespace), for messages.
pub fn describe(obj: &DynamicObject) -> String {
    let kind = obj.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("?");
    let name = obj.metadata.name.as_deref().unwrap_or("?");
    match &obj.metadata.namespace {
        Some(ns) => format!("{kind}/{name} in {ns}"),
        None => format!("{kind}/{name}"),
    }
}

/// Applies `objects` in order with server-side apply. Namespaced objects without a namespace
/// are an error (the templates always say where things go).
pub async fn apply_all(client: &Client, objects: &[DynamicObject]) -> Result<()> {
    for obj in objects {
        let types = obj.types.as_ref().ok_or_else(|| anyhow!("{}: no apiVersion/kind", describe(obj)))?;
        let gvk = GroupVersionKind::try_from(types).map_err(|e| anyhow!("{}: {e}", describe(obj)))?;
        let (resource, caps) = discovery::pinned_kind(client, &gvk)
            .await
            .with_context(|| format!("{}: the API server does not serve {}", describe(obj), types.api_version))?;
        let name = obj.metadata.name.as_deref().unwrap_or_default();
        let api: Api<DynamicObject> = match (caps.scope, obj.metadata.namespace.as_deref()) {
            (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
            (Scope::Namespaced, None) => bail!("{}: metadata.namespace is required", describe(obj)),
        };
        api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj))
            .await
            .with_context(|| format!("applying {}", describe(obj)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_parse_in_order_and_bad_ones_are_named() {
        let objs = parse_documents(
            "t.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: s, namespace: a}\n",
        )
        .expect("test value");
        assert_eq!(objs.iter().map(describe).collect::<Vec<_>>(), ["Namespace/a", "ServiceAccount/s in a"]);

        let err = parse_documents("t.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {}\n").expect_err("must fail");
        assert!(format!("{err:#}").contains("t.yaml: document 1: metadata.name is required"), "{err:#}");
        let err = parse_documents("t.yaml", "metadata: {name: x}\n").expect_err("must fail");
        assert!(format!("{err:#}").contains("t.yaml: document 1"), "{err:#}");
    }
}
