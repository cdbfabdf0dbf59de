//! Integration tests of ent-backbone (one binary, modules by topic).

mod errors;
#[cfg(feature = "hub")]
mod hub;
mod padding;
mod parity;

use std::path::{Path, PathBuf};

/// The committed fixtures, one folder per model (made by `tests/fixtures/make_fixtures.py`).
pub fn fixture_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.join("expected.safetensors").is_file())
        .collect();
    dirs.sort();
    dirs
}

pub fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}
