//! A typed reader over one TOML table that records every problem it meets,
//! with the file and the dotted field, instead of stopping at the first.

use super::PolicyError;
use super::units::{parse_duration, parse_size};
use std::collections::BTreeSet;
use std::path::Path;

/// Reads the keys of one table; unknown keys are reported by [`Fields::finish`].
pub(crate) struct Fields<'a> {
    file: &'a Path,
    prefix: String,
    table: &'a toml::Table,
    read: BTreeSet<String>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(file: &'a Path, prefix: impl Into<String>, table: &'a toml::Table) -> Self {
        Fields {
            file,
            prefix: prefix.into(),
            table,
            read: BTreeSet::new(),
        }
    }

    /// The policy file.
    pub(crate) fn file(&self) -> &'a Path {
        self.file
    }

    /// A raw value, marked as read.
    pub(crate) fn opt_value(&mut self, key: &str) -> Option<&'a toml::Value> {
        self.get(key)
    }

    /// The dotted name of `key` in this table.
    pub(crate) fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// Record a problem with `key`.
    pub(crate) fn error(&self, errs: &mut Vec<PolicyError>, key: &str, problem: impl Into<String>) {
        errs.push(PolicyError::new(self.file, self.path(key), problem));
    }

    fn get(&mut self, key: &str) -> Option<&'a toml::Value> {
        self.read.insert(key.to_string());
        self.table.get(key)
    }

    fn type_error(&self, errs: &mut Vec<PolicyError>, key: &str, want: &str, got: &toml::Value) {
        self.error(
            errs,
            key,
            format!("expected {want}, found {} `{got}`", got.type_str()),
        );
    }

    pub(crate) fn opt_str(&mut self, errs: &mut Vec<PolicyError>, key: &str) -> Option<&'a str> {
        match self.get(key)? {
            toml::Value::String(s) => Some(s.as_str()),
            other => {
                self.type_error(errs, key, "a string", other);
                None
            }
        }
    }

    pub(crate) fn req_str(
        &mut self,
        errs: &mut Vec<PolicyError>,
        key: &str,
        hint: &str,
    ) -> Option<&'a str> {
        if !self.table.contains_key(key) {
            self.read.insert(key.to_string());
            self.error(errs, key, format!("missing (add {hint})"));
            return None;
        }
        self.opt_str(errs, key)
    }

    pub(crate) fn opt_u32(&mut self, errs: &mut Vec<PolicyError>, key: &str) -> Option<u32> {
        match self.get(key)? {
            toml::Value::Integer(i) if (0..=i64::from(u32::MAX)).contains(i) => Some(*i as u32),
            other => {
                self.type_error(errs, key, "a whole number >= 0", other);
                None
            }
        }
    }

    pub(crate) fn opt_duration(
        &mut self,
        errs: &mut Vec<PolicyError>,
        key: &str,
    ) -> Option<chrono::Duration> {
        let s = self.opt_str(errs, key)?;
        match parse_duration(s) {
            Ok(d) if d > chrono::Duration::zero() => Some(d),
            Ok(_) => {
                self.error(errs, key, format!("`{s}`: must be longer than zero"));
                None
            }
            Err(e) => {
                self.error(errs, key, e);
                None
            }
        }
    }

    pub(crate) fn opt_size(&mut self, errs: &mut Vec<PolicyError>, key: &str) -> Option<u64> {
        let s = match self.get(key)? {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) if *i > 0 => i.to_string(),
            other => {
                self.type_error(errs, key, "a size such as \"16MiB\"", other);
                return None;
            }
        };
        match parse_size(&s) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(errs, key, e);
                None
            }
        }
    }

    pub(crate) fn str_list(
        &mut self,
        errs: &mut Vec<PolicyError>,
        key: &str,
    ) -> Option<Vec<&'a str>> {
        match self.get(key)? {
            toml::Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        toml::Value::String(s) => out.push(s.as_str()),
                        other => self.type_error(errs, &format!("{key}[{i}]"), "a string", other),
                    }
                }
                Some(out)
            }
            other => {
                self.type_error(errs, key, "a list of strings, e.g. [\"local\"]", other);
                None
            }
        }
    }

    pub(crate) fn opt_table(
        &mut self,
        errs: &mut Vec<PolicyError>,
        key: &str,
    ) -> Option<&'a toml::Table> {
        match self.get(key)? {
            toml::Value::Table(t) => Some(t),
            other => {
                self.type_error(errs, key, "a table", other);
                None
            }
        }
    }

    /// Report every key of the table that no reader asked for.
    pub(crate) fn finish(self, errs: &mut Vec<PolicyError>, allowed: &[&str]) {
        for key in self.table.keys() {
            if !self.read.contains(key) {
                let suggestion = allowed
                    .iter()
                    .filter(|a| strsim::jaro_winkler(a, key) > 0.8)
                    .max_by(|a, b| {
                        strsim::jaro_winkler(a, key).total_cmp(&strsim::jaro_winkler(b, key))
                    })
                    .map(|a| format!("did you mean `{a}`? "))
                    .unwrap_or_default();
                self.error(
                    errs,
                    key,
                    format!(
                        "unknown key ({suggestion}valid keys here: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }
}
