//! Where the pinned infrastructure binaries live.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::{Error, Result};

const VERSIONS: &str = include_str!("../../../../infrastructure/versions.env");

/// Pinned versions, from `infrastructure/versions.env`.
pub fn versions() -> HashMap<String, String> {
    parse_env(VERSIONS)
}

/// The `KEY=VALUE` lines of a pin file (`#` comments skipped), as the scripts source it.
pub fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The cache directory: `$ZT_CACHE`, else `$XDG_CACHE_HOME/ztlab`, else `~/.cache/ztlab`.
pub fn cache_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ZT_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache"));
    base.join("ztlab")
}

/// One installed infrastructure binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `spire-server`
    SpireServer,
    /// `spire-agent`
    SpireAgent,
    /// `oidc-discovery-provider`
    OidcDiscoveryProvider,
    /// `spiffe-helper`
    SpiffeHelper,
    /// `envoy`
    Envoy,
    /// `bao` (OpenBao)
    Bao,
    /// `opa` (tests only)
    Opa,
}

impl Tool {
    fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Tool::SpireServer => ("spire", "SPIRE_VERSION", "spire-server"),
            Tool::SpireAgent => ("spire", "SPIRE_VERSION", "spire-agent"),
            Tool::OidcDiscoveryProvider => ("spire", "SPIRE_VERSION", "oidc-discovery-provider"),
            Tool::SpiffeHelper => ("spiffe-helper", "SPIFFE_HELPER_VERSION", "spiffe-helper"),
            Tool::Envoy => ("envoy", "ENVOY_VERSION", "envoy"),
            Tool::Bao => ("openbao", "OPENBAO_VERSION", "bao"),
            Tool::Opa => ("opa", "OPA_VERSION", "opa"),
        }
    }

    /// The binary's path in the cache, whether or not it is there.
    pub fn path(self) -> PathBuf {
        let (dir, key, name) = self.parts();
        let version = versions().get(key).cloned().unwrap_or_default();
        cache_dir().join(format!("{dir}-{version}")).join("bin").join(name)
    }

    /// The binary's path, or an error that says how to install it.
    pub fn require(self) -> Result<PathBuf> {
        let path = self.path();
        if path.is_file() { Ok(path) } else { Err(Error::MissingBinary { name: self.parts().2.to_owned(), path }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_pinned() {
        let v = versions();
        assert!(v.get("SPIRE_VERSION").is_some_and(|s| s.starts_with("v1.15.")), "{v:?}");
        assert!(Tool::SpireServer.path().ends_with(format!("spire-{}/bin/spire-server", v["SPIRE_VERSION"])));
    }
}
