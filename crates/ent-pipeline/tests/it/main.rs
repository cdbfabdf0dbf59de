//! Integration tests of ent-pipeline (one binary, one module per concern).

mod files;
mod hostile;
mod longform;
mod writes;

use std::path::{Path, PathBuf};

/// A file of the bundled demo corpus.
pub fn audio(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/demo/audio")
        .join(name)
}

/// A test fixture of ent-features (audio in every format the decoders read).
pub fn feature_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ent-features/tests/fixtures")
        .join(name)
}
