//! Integration tests of ent-features (one binary, one module per concern).

mod audio;
mod cmvn;
mod fbank;
mod fuzz;
mod hostile;
mod resample;
mod specaug;
mod stream;

use std::path::PathBuf;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
