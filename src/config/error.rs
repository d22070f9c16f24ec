//! What can go wrong reading the configuration: the file cannot be read, or its
//! contents have problems. Every problem is collected (not just the first) so that
//! `pgweir check` can show the operator the whole list in one go.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// One thing wrong with the configuration file.
///
/// Messages never contain a secret's value: they name the key and say what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file; `None` when the problem is an absence (e.g. no
    /// `[databases]` table at all) and so has no place in the file.
    pub line: Option<usize>,
    /// Dotted key path such as `databases.app.pool_size`; empty when the problem is
    /// with the file as a whole (a TOML syntax error).
    pub key: String,
    /// What is wrong, phrased to follow the key (`must be at least 1`).
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but has problems; displayed one per line, in file order.
    #[error("{}", one_per_line(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The individual problems; empty for an I/O error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid(problems) => problems,
        }
    }
}

fn one_per_line(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
