//! Layered configuration: defaults < TOML file < `ZT_` environment variables.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A configuration that could not be loaded. The message names the field and the source.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// An error about one field.
    pub fn field(field: &str, message: impl std::fmt::Display) -> Self {
        Self(format!("{field}: {message}"))
    }
}

/// Loads `T`: its `Default`, then `file` (if given; it must exist), then `ZT_*` variables.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigError(format!("config file {} does not exist", file.display())));
        }
        figment = figment.merge(Toml::file(file));
    }
    figment = figment.merge(Env::prefixed("ZT_").split("__"));
    figment.extract().map_err(|e| {
        let mut msgs = Vec::new();
        for err in e {
            let path = err.path.join(".");
            let source = err.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
            msgs.push(format!("{path}: {} (from {source})", err.kind));
        }
        ConfigError(msgs.join("; "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Cfg {
        listen_addr: String,
        port: u16,
    }
    impl Default for Cfg {
        fn default() -> Self {
            Self { listen_addr: "127.0.0.1:1".into(), port: 1 }
        }
    }

    #[test]
    fn layers_and_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "port = 7\n").expect("write");
        let cfg: Cfg = load(Some(&file)).expect("load");
        assert_eq!(cfg, Cfg { listen_addr: "127.0.0.1:1".into(), port: 7 });

        std::fs::write(&file, "port = \"seven\"\n").expect("write");
        let err = load::<Cfg>(Some(&file)).expect_err("bad type");
        assert!(err.to_string().contains("port"), "{err}");

        let err = load::<Cfg>(Some(&dir.path().join("missing.toml"))).expect_err("missing file");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}

/// `#[serde(with = "zt_service::config::duration")]`: a `Duration` as a humantime string (`5s`,
/// `250ms`, `1h`); a plain integer is seconds.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `5s`, `1h 30m`, ….
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }

    /// Reads `5s`, `250ms`, `1h` or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => humantime::parse_duration(t.trim())
                .map_err(|e| serde::de::Error::custom(format!("{t:?} is not a duration like 5s or 1h: {e}"))),
        }
    }
}
