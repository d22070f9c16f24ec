//! Helpers shared by the targets (each target includes this file with `mod common;`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

/// The bytes as text, invalid UTF-8 replaced, as pgweir reads files and query text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Up to `n` pieces of `data` split at NUL bytes (the last piece keeps any further NULs):
/// several inputs in one fuzz input, the NUL being a byte none of the text formats need.
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |&b| b == 0).collect();
    out.resize(n, &[]);
    out
}

/// A directory of this process's own for the targets that read files (hba, pgbouncer.ini):
/// under `$PGWEIR_FUZZ_SCRATCH` (run.sh points it at tmpfs and removes it afterwards), else
/// under the temporary directory.
pub fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("PGWEIR_FUZZ_SCRATCH")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("pgweir-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        dir
    })
}
