//! Secrets given by reference (`{ env = "NAME" }` or `{ file = "/path" }`), never inline, and a
//! value type whose `Debug` never shows them. Pure but for reading a referenced file.

use super::{invalid, ConfigError};
use crate::token::Keyring;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// A secret value. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(value)
    }
    /// The secret itself, for the one place that needs it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretRef {
    /// The value of this environment variable.
    Env(String),
    /// The contents of this file, surrounding white space removed.
    File(PathBuf),
}

impl SecretRef {
    fn read(&self, key: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
        match self {
            SecretRef::Env(name) => env(name)
                .ok_or_else(|| invalid(key, format!("environment variable {name} is not set"))),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display()))),
        }
    }

    pub(super) fn resolve(
        &self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Secret, ConfigError> {
        let value = self.read(key, env)?.trim().to_owned();
        if value.len() < 16 {
            return Err(invalid(key, "the secret must be at least 16 characters"));
        }
        Ok(Secret(value))
    }

    pub(super) fn keyring(
        &self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Keyring, ConfigError> {
        Keyring::parse(&self.read(key, env)?).map_err(|e| invalid(key, e))
    }
}
