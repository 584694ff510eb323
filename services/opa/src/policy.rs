//! Rego policies and data from a directory, evaluated with regorus.
//!
//! Loading follows `opa run`/`opa eval -d <dir>`:
//! - every `*.rego` file under the directory is a module, except `*_test.rego` (tests are run
//!   by `opa test`, not served);
//! - every `*.json` file is data, placed at the path of its folder relative to the directory
//!   (`<dir>/data.json` at the root of `data`, `<dir>/a/b/x.json` at `data.a.b`);
//! - hidden files and folders (`.name`) are skipped.
//!
//! A [`Policy`] is one loaded, checked set. [`Policy::eval`] answers a Data API path: a rule is
//! compiled once into a regorus [`CompiledPolicy`] (shared, `Send + Sync`) and cached; any
//! other path (a package, a data document, the root) is answered with a query on a clone of
//! the prepared engine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use regorus::{CompiledPolicy, Engine, Value};

/// At most this many paths keep a compiled entry point.
const MAX_CACHED_PATHS: usize = 256;

/// Why policies could not be loaded or a path could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file or folder could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The policy directory holds no policy.
    #[error("no Rego policies (*.rego other than *_test.rego) in {0}")]
    NoPolicies(PathBuf),
    /// A Rego module does not parse.
    #[error("{path}: {message}")]
    Rego {
        /// The module.
        path: PathBuf,
        /// regorus's message, with line and column.
        message: String,
    },
    /// A data file is not a JSON object, or conflicts with other data.
    #[error("{path}: {message}")]
    Data {
        /// The data file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The modules parse but do not compile together (unknown functions, bad imports, ...).
    #[error("policies in {dir} do not compile: {message}")]
    Compile {
        /// The policy directory.
        dir: PathBuf,
        /// regorus's message.
        message: String,
    },
    /// Evaluation failed (for example a complete rule with several values).
    #[error("evaluating {path}: {message}")]
    Eval {
        /// The rule or document path.
        path: String,
        /// regorus's message.
        message: String,
    },
}

/// What a policy file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// A Rego module.
    Rego,
    /// A JSON data document.
    Data,
}

/// One file of a policy directory, as it was when scanned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyFile {
    /// Its path relative to the policy directory.
    pub rel: PathBuf,
    /// Module or data.
    pub kind: FileKind,
    /// Last modification time.
    pub modified: Option<SystemTime>,
    /// Size in bytes.
    pub len: u64,
}

/// The state of a policy directory: its files with their mtimes and sizes, sorted. Two equal
/// fingerprints mean nothing changed.
pub type Fingerprint = Vec<PolicyFile>;

/// Lists the policy and data files under `dir`, sorted by path.
pub fn scan(dir: &Path) -> Result<Fingerprint, PolicyError> {
    let mut files = Vec::new();
    walk(dir, Path::new(""), &mut files)?;
    files.sort();
    Ok(files)
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PolicyFile>) -> Result<(), PolicyError> {
    let dir = root.join(rel);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PolicyError::Io { path, source }
    };
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follow symlinks, like `opa` does.
        let meta = std::fs::metadata(&path).map_err(io(&path))?;
        let rel = rel.join(name);
        if meta.is_dir() {
            walk(root, &rel, out)?;
            continue;
        }
        let kind = if name.ends_with("_test.rego") {
            continue;
        } else if name.ends_with(".rego") {
            FileKind::Rego
        } else if name.ends_with(".json") {
            FileKind::Data
        } else {
            continue;
        };
        out.push(PolicyFile { rel, kind, modified: meta.modified().ok(), len: meta.len() });
    }
    Ok(())
}

/// A Data API path: `ztlab/documents/decision` is `data.ztlab.documents.decision`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataPath {
    segments: Vec<String>,
}

impl DataPath {
    /// From the URL path after `/v1/data/` (already percent-decoded). Empty segments are
    /// ignored, so `/v1/data` and `/v1/data/` are the whole data document.
    pub fn parse(path: &str) -> Self {
        Self { segments: path.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect() }
    }

    /// Whether this is the root (`data`).
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The slash-separated form, for logs and metrics.
    pub fn as_slashes(&self) -> String {
        self.segments.join("/")
    }

    /// The Rego reference: `data.a.b`, with `["…"]` for segments that are not identifiers.
    pub fn to_rego_ref(&self) -> String {
        let mut out = String::from("data");
        for s in &self.segments {
            let ident = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if ident {
                out.push('.');
                out.push_str(s);
            } else {
                out.push('[');
                out.push_str(&serde_json::Value::String(s.clone()).to_string());
                out.push(']');
            }
        }
        out
    }
}

/// How a path is evaluated, once it has been tried.
#[derive(Debug, Clone)]
enum Entry {
    /// A rule, compiled as an entry point.
    Rule(CompiledPolicy),
    /// Not a rule (a package, data, or nothing): answered by a query.
    Query,
}

/// One loaded and checked set of policies and data.
#[derive(Debug)]
pub struct Policy {
    dir: PathBuf,
    fingerprint: Fingerprint,
    /// Prepared engine (modules and data loaded, analysed). Cloned per query.
    engine: Engine,
    cache: Mutex<HashMap<String, Entry>>,
}

impl Policy {
    /// Loads and checks every policy and data file under `dir`.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        let fingerprint = scan(dir)?;
        Self::load_files(dir, fingerprint)
    }

    fn load_files(dir: &Path, fingerprint: Fingerprint) -> Result<Self, PolicyError> {
        if !fingerprint.iter().any(|f| f.kind == FileKind::Rego) {
            return Err(PolicyError::NoPolicies(dir.to_path_buf()));
        }
        let mut engine = Engine::new();
        for file in &fingerprint {
            let path = dir.join(&file.rel);
            let text =
                std::fs::read_to_string(&path).map_err(|source| PolicyError::Io { path: path.clone(), source })?;
            match file.kind {
                FileKind::Rego => {
                    engine
                        .add_policy(path.display().to_string(), text)
                        .map_err(|e| PolicyError::Rego { path: path.clone(), message: format!("{e:#}") })?;
                }
                FileKind::Data => {
                    let data = nested_data(&file.rel, &text)
                        .map_err(|message| PolicyError::Data { path: path.clone(), message })?;
                    engine
                        .add_data(data)
                        .map_err(|e| PolicyError::Data { path: path.clone(), message: format!("{e:#}") })?;
                }
            }
        }
        // Analyse the modules now (imports, rule schedule), so that a set that does not compile
        // is refused at load time rather than on the first request. The engine stays prepared,
        // so its clones are ready to evaluate.
        let compile_error =
            |e: anyhow::Error| PolicyError::Compile { dir: dir.to_path_buf(), message: format!("{e:#}") };
        engine.eval_query("true".to_owned(), false).map_err(compile_error)?;
        // regorus resolves function calls only when it evaluates them (OPA does it when it
        // compiles), so evaluate every rule once without input: an unknown function or a
        // conflict in a rule reached this way is refused here too. The store also replays
        // recent inputs against a new set before it serves (see `store`).
        engine.clone().eval_query("data".to_owned(), false).map_err(compile_error)?;
        Ok(Self { dir: dir.to_path_buf(), fingerprint, engine, cache: Mutex::new(HashMap::new()) })
    }

    /// Loads the directory again. The new set compiles the rules this one had compiled, so
    /// that the paths in use stay warm.
    pub fn reload(&self) -> Result<Self, PolicyError> {
        let next = Self::load(&self.dir)?;
        let paths: Vec<String> = self.cache().keys().cloned().collect();
        for path in paths {
            next.entry(&path);
        }
        Ok(next)
    }

    /// The directory it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files it was loaded from.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The files it was loaded from, relative to its directory.
    pub fn files(&self) -> Vec<String> {
        self.fingerprint.iter().map(|f| f.rel.display().to_string()).collect()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn entry(&self, rule: &str) -> Entry {
        if let Some(e) = self.cache().get(rule) {
            return e.clone();
        }
        let entry = match self.engine.clone().compile_with_entrypoint(&rule.into()) {
            Ok(compiled) => Entry::Rule(compiled),
            Err(_) => Entry::Query,
        };
        let mut cache = self.cache();
        if cache.len() < MAX_CACHED_PATHS {
            cache.insert(rule.to_owned(), entry.clone());
        }
        entry
    }

    /// Evaluates `path` with `input` (`None`: no input, so `input` is undefined in Rego).
    /// Returns `None` when the path is undefined, like OPA's Data API (which then answers
    /// `{}` without `result`).
    pub fn eval(
        &self,
        path: &DataPath,
        input: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, PolicyError> {
        let rego_ref = path.to_rego_ref();
        let err = |message: String| PolicyError::Eval { path: rego_ref.clone(), message };
        let input = match input {
            Some(v) => {
                serde_json::from_value::<Value>(v).map_err(|e| err(format!("input is not a Rego value: {e}")))?
            }
            None => Value::Undefined,
        };
        let entry = if path.is_root() { Entry::Query } else { self.entry(&rego_ref) };
        let value = match entry {
            Entry::Rule(compiled) => compiled.eval_with_input(input).map_err(|e| err(format!("{e:#}")))?,
            Entry::Query => {
                let mut engine = self.engine.clone();
                if input != Value::Undefined {
                    engine.set_input(input);
                }
                let results = engine.eval_query(rego_ref.clone(), false).map_err(|e| err(format!("{e:#}")))?;
                match results.result.into_iter().next().and_then(|r| r.expressions.into_iter().next()) {
                    Some(expr) => expr.value,
                    None => Value::Undefined,
                }
            }
        };
        if value == Value::Undefined {
            return Ok(None);
        }
        serde_json::to_value(&value).map(Some).map_err(|e| err(format!("result is not JSON: {e}")))
    }
}

/// A data file's content, nested under the folders of its relative path.
fn nested_data(rel: &Path, text: &str) -> Result<Value, String> {
    let mut json: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    if !json.is_object() {
        return Err("a data file must hold a JSON object".into());
    }
    let folders: Vec<String> = rel
        .parent()
        .map(|p| p.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    for folder in folders.into_iter().rev() {
        json = serde_json::Value::Object(serde_json::Map::from_iter([(folder, json)]));
    }
    serde_json::from_value(json).map_err(|e| format!("not a Rego value: {e}"))
}

/// A shared handle to the current policy.
pub type SharedPolicy = Arc<Policy>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_paths_become_rego_refs() {
        assert_eq!(DataPath::parse("ztlab/documents/decision").to_rego_ref(), "data.ztlab.documents.decision");
        assert_eq!(DataPath::parse("/a//b/").to_rego_ref(), "data.a.b");
        assert_eq!(DataPath::parse("docs/DOC-001").to_rego_ref(), r#"data.docs["DOC-001"]"#);
        assert_eq!(DataPath::parse("x/1a/\"q\"").to_rego_ref(), r#"data.x["1a"]["\"q\""]"#);
        assert!(DataPath::parse("").is_root());
        assert_eq!(DataPath::parse("").to_rego_ref(), "data");
    }

    #[test]
    fn data_files_nest_under_their_folders() {
        let v = nested_data(Path::new("a/b/x.json"), r#"{"k": 1}"#).expect("data");
        assert_eq!(serde_json::to_value(&v).expect("json"), serde_json::json!({"a": {"b": {"k": 1}}}));
        let v = nested_data(Path::new("data.json"), r#"{"k": 1}"#).expect("data");
        assert_eq!(serde_json::to_value(&v).expect("json"), serde_json::json!({"k": 1}));
        assert!(nested_data(Path::new("data.json"), "[1]").expect_err("array").contains("JSON object"));
        assert!(nested_data(Path::new("data.json"), "{").expect_err("bad").contains("invalid JSON"));
    }
}
