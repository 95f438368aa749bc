//! Configuration errors: each names the field path, the offending value and the reason.

use std::fmt;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where: `zones[2].origins.servers[0].address`.
    pub path: String,
    /// The value as written (empty when the field is missing).
    pub value: String,
    /// Why it is refused.
    pub reason: String,
}

impl FieldError {
    pub(crate) fn new(
        path: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        FieldError {
            path: path.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.path, self.reason)
        } else {
            write!(f, "{}: {:?} {}", self.path, self.value, self.reason)
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the configuration: {source}")]
    Read {
        /// The configuration file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The text is not valid TOML for the schema (syntax, unknown field, wrong type).
    #[error("{origin}: {path}: {reason}")]
    Syntax {
        /// The configuration file (or `<input>`).
        origin: String,
        /// The field path where parsing stopped.
        path: String,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// The configuration parsed but some values are invalid; every one is listed.
    #[error("{}", display_list(.origin, .errors))]
    Invalid {
        /// The configuration file (or `<input>`).
        origin: String,
        /// Every invalid value found.
        errors: Vec<FieldError>,
    },
}

impl ConfigError {
    /// Every problem as one line each, for `edgenet check` and reload logs.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { origin, errors } => {
                errors.iter().map(|e| format!("{origin}: {e}")).collect()
            }
            other => vec![other.to_string()],
        }
    }
}

fn display_list(origin: &str, errors: &[FieldError]) -> String {
    let mut out = format!("{origin}: {} invalid value(s)", errors.len());
    for e in errors {
        out.push_str("\n  ");
        out.push_str(&e.to_string());
    }
    out
}
