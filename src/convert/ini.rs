//! Reads a pgbouncer.ini as PgBouncer does: `[section]` headers, `key = value` lines,
//! comment lines starting with `;` or `#`, and `%include FILE` lines that splice another
//! file in at their place (a relative path is taken from the including file's directory).
//! Keys are case-insensitive in PgBouncer's own sections, so they are lowercased; database
//! and user names keep their case. Values keep everything after the `=`, trimmed.

use std::path::{Path, PathBuf};

use super::ConvertError;

/// How deep `%include` may nest before a file is taken to include itself.
const MAX_DEPTH: usize = 10;

/// One `key = value` line, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The section, lowercased (`pgbouncer`, `databases`, `users`, `peers`).
    pub section: String,
    pub key: String,
    pub value: String,
    pub file: PathBuf,
    pub line: usize,
}

/// Every entry of the file at `path` and the files it includes, in file order.
pub fn read(path: &Path) -> Result<Vec<Entry>, ConvertError> {
    let mut entries = Vec::new();
    let mut section = String::new();
    read_into(path, 0, &mut section, &mut entries)?;
    Ok(entries)
}

fn read_into(
    path: &Path,
    depth: usize,
    section: &mut String,
    out: &mut Vec<Entry>,
) -> Result<(), ConvertError> {
    if depth > MAX_DEPTH {
        return Err(ConvertError::IncludeDepth(path.to_owned()));
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConvertError::Read {
        path: path.to_owned(),
        source,
    })?;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = |message: String| ConvertError::Syntax {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(file) = line.strip_prefix("%include") {
            let file = Path::new(file.trim());
            let base = path.parent().unwrap_or(Path::new("."));
            read_into(&base.join(file), depth + 1, section, out)?;
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| at(format!("a section header needs a closing ]: {line}")))?;
            *section = name.trim().to_ascii_lowercase();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| at(format!("expected key = value: {line}")))?;
        let key = key.trim();
        let key = match section.as_str() {
            "databases" | "users" | "peers" => key.to_owned(),
            _ => key.to_ascii_lowercase(),
        };
        out.push(Entry {
            section: section.clone(),
            key,
            value: value.trim().to_owned(),
            file: path.to_owned(),
            line: i + 1,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sections_comments_and_includes_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("more.ini"), "[databases]\nb = host=h2\n").unwrap();
        std::fs::write(
            dir.join("main.ini"),
            "; a comment\n# another\n[databases]\nA = host=h1 dbname=x\n%include more.ini\n\
             [PgBouncer]\nListen_Port = 6433\n",
        )
        .unwrap();
        let got: Vec<_> = read(&dir.join("main.ini"))
            .unwrap()
            .into_iter()
            .map(|e| (e.section, e.key, e.value, e.line))
            .collect();
        let want = [
            ("databases", "A", "host=h1 dbname=x", 4),
            ("databases", "b", "host=h2", 2),
            ("pgbouncer", "listen_port", "6433", 7),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(s, k, v, l)| (s.to_string(), k.to_string(), v.to_string(), *l))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_file_that_includes_itself_is_an_error_not_a_hang() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("loop.ini"), "%include loop.ini\n").unwrap();
        assert!(matches!(
            read(&dir.join("loop.ini")),
            Err(ConvertError::IncludeDepth(_))
        ));
    }

    #[test]
    fn a_line_without_equals_names_its_line() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("bad.ini"), "[pgbouncer]\nlisten_port\n").unwrap();
        match read(&dir.join("bad.ini")) {
            Err(ConvertError::Syntax { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }
}
