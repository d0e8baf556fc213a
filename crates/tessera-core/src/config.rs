//! TOML configs mapped onto serde structs, with `--set a.b=c` overrides.
//!
//! Every config struct in Tessera derives `Deserialize` with `#[serde(default, deny_unknown_fields)]`,
//! so a missing key takes the paper's default and an unknown key is an error that names the valid
//! ones (serde's "unknown field `x`, expected one of `a`, `b`").
//!
//! Resolution order: struct defaults, then the TOML file, then each `--set` in the order given.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use toml::{Table, Value};

use crate::validate::Validate;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid config ({origin}): {message}")]
    Invalid { origin: String, message: String },
    #[error("bad --set `{0}`: expected key.path=value, e.g. data.seed=3")]
    BadOverride(String),
}

/// Where a config comes from: an optional TOML file plus `--set` overrides.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    pub path: Option<PathBuf>,
    pub overrides: Vec<String>,
}

impl ConfigSource {
    pub fn new(path: Option<PathBuf>, overrides: Vec<String>) -> Self {
        Self { path, overrides }
    }

    /// Read the file (if any), apply the overrides and deserialize into `T`.
    pub fn load<T: DeserializeOwned + Validate>(&self) -> Result<T, ConfigError> {
        let text = match &self.path {
            Some(p) => {
                std::fs::read_to_string(p).map_err(|source| ConfigError::Io { path: p.clone(), source })?
            }
            None => String::new(),
        };
        let origin = self.path.as_ref().map_or("defaults".to_string(), |p| p.display().to_string());
        load_str(&text, &self.overrides, &origin)
    }
}

/// Deserialize `text` (TOML) into `T` after applying `overrides`, then check every value's range
/// ([`Validate`]); `origin` names the source in errors.
pub fn load_str<T: DeserializeOwned + Validate>(
    text: &str,
    overrides: &[String],
    origin: &str,
) -> Result<T, ConfigError> {
    let config: T = parse(text, overrides, origin)?;
    config
        .validate()
        .map_err(|message| ConfigError::Invalid { origin: describe(origin, overrides), message })?;
    Ok(config)
}

fn describe(origin: &str, overrides: &[String]) -> String {
    if overrides.is_empty() {
        origin.to_string()
    } else {
        format!("{origin} with --set {}", overrides.join(" --set "))
    }
}

fn parse<T: DeserializeOwned>(text: &str, overrides: &[String], origin: &str) -> Result<T, ConfigError> {
    let invalid =
        |e: toml::de::Error| ConfigError::Invalid { origin: origin.to_string(), message: e.to_string() };
    if overrides.is_empty() {
        // Parse the original text so error messages point at the user's own lines.
        return toml::from_str(text).map_err(invalid);
    }
    let mut table: Table = toml::from_str(text).map_err(invalid)?;
    for o in overrides {
        apply_override(&mut table, o)?;
    }
    let merged = toml::to_string(&table).expect("a toml::Table always serializes");
    toml::from_str(&merged)
        .map_err(|e| ConfigError::Invalid { origin: describe(origin, overrides), message: e.to_string() })
}

/// Apply one `a.b.c=value` override. The value is read as a TOML value (`3`, `1e-4`, `true`,
/// `[1, 2]`, `"x"`); anything that does not parse as one is taken as a string.
pub fn apply_override(table: &mut Table, spec: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::BadOverride(spec.to_string());
    let (key, raw) = spec.split_once('=').ok_or_else(bad)?;
    let path: Vec<&str> = key.trim().split('.').collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(bad());
    }
    let value = toml::from_str::<Table>(&format!("v = {}", raw.trim()))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.trim().to_string()));
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut node = table;
    for p in parents {
        let entry = node.entry(p.to_string()).or_insert_with(|| Value::Table(Table::new()));
        node = entry.as_table_mut().ok_or_else(bad)?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

/// The resolved config as TOML text, the form stored in every run directory.
pub fn to_toml<T: Serialize>(config: &T) -> String {
    toml::to_string_pretty(config).expect("config structs serialize to TOML")
}

/// Write the resolved config to `path` atomically.
pub fn save_resolved<T: Serialize>(config: &T, path: &Path) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, to_toml(config).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Inner {
        seed: u64,
        lr: f64,
    }
    impl Validate for Inner {
        fn check(&self, c: &mut crate::validate::Check) {
            c.float_above("lr", self.lr, 0.0, 10.0, "");
        }
    }
    impl Validate for Outer {
        fn check(&self, c: &mut crate::validate::Check) {
            c.section("inner", &self.inner);
        }
    }
    impl Default for Inner {
        fn default() -> Self {
            Self { seed: 23, lr: 1e-3 }
        }
    }
    #[derive(Debug, Deserialize, Serialize, PartialEq, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Outer {
        name: String,
        inner: Inner,
    }

    #[test]
    fn defaults_file_then_overrides() {
        let c: Outer = load_str("", &[], "t").unwrap();
        assert_eq!(c, Outer::default());
        let c: Outer =
            load_str("[inner]\nseed = 5\n", &["inner.lr=0.5".into(), "name=run a".into()], "t").unwrap();
        assert_eq!(c.inner, Inner { seed: 5, lr: 0.5 });
        assert_eq!(c.name, "run a");
    }

    #[test]
    fn unknown_key_lists_valid_ones() {
        let err = load_str::<Outer>("[inner]\nsed = 5\n", &[], "t.toml").unwrap_err().to_string();
        assert!(err.contains("unknown field `sed`"), "{err}");
        assert!(err.contains("`seed`") && err.contains("`lr`"), "{err}");
        assert!(err.contains("t.toml"), "{err}");
        let err = load_str::<Outer>("", &["inner.sed=1".into()], "t").unwrap_err().to_string();
        assert!(err.contains("unknown field `sed`") && err.contains("--set inner.sed=1"), "{err}");
    }

    #[test]
    fn wrong_type_and_bad_override_are_errors() {
        let err = load_str::<Outer>("", &["inner.seed=abc".into()], "t").unwrap_err().to_string();
        assert!(err.contains("seed"), "{err}");
        assert!(matches!(load_str::<Outer>("", &["noequals".into()], "t"), Err(ConfigError::BadOverride(_))));
        assert!(matches!(load_str::<Outer>("", &["a..b=1".into()], "t"), Err(ConfigError::BadOverride(_))));
    }

    #[test]
    fn values_out_of_range_are_refused_at_resolution_naming_key_and_origin() {
        let err = load_str::<Outer>("", &["inner.lr=nan".into()], "t.toml").unwrap_err().to_string();
        assert!(err.contains("[inner] lr = NaN: allowed above 0"), "{err}");
        assert!(err.contains("t.toml with --set inner.lr=nan"), "{err}");
        let err = load_str::<Outer>("[inner]\nlr = -1.0\n", &[], "t.toml").unwrap_err().to_string();
        assert!(err.contains("lr = -1") && err.contains("(t.toml)"), "{err}");
    }

    #[test]
    fn resolved_config_round_trips() {
        let c = Outer { name: "x".into(), inner: Inner { seed: 1, lr: 2.5 } };
        let back: Outer = load_str(&to_toml(&c), &[], "t").unwrap();
        assert_eq!(back, c);
    }
}
