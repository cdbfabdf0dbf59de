//! Loading by model id from a Hugging Face cache, offline (`--features hub`).

use std::path::Path;

use candle_core::Device;
use ent_backbone::{Backbone, HubOptions};

use crate::fixtures_root;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Lays out `fixture` in the hub cache format: `models--owner--name/refs/main` holds the commit,
/// `snapshots/<commit>/` the files.
fn fake_cache(root: &Path, repo: &str, fixture: &str) {
    let folder = root.join(format!("models--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::write(folder.join("refs/main"), COMMIT).unwrap();
    let snap = folder.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snap).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures_root().join(fixture).join(f), snap.join(f)).unwrap();
    }
}

#[test]
fn loads_from_the_cache_offline() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    fake_cache(&root, "someone/tiny-wavlm", "wavlm-large");
    let options = HubOptions {
        revision: None,
        cache_dir: Some(root.clone()),
        offline: true,
    };
    let from_hub = Backbone::from_hub("someone/tiny-wavlm", &options, &Device::Cpu).unwrap();
    let local = Backbone::load(&fixtures_root().join("wavlm-large"), &Device::Cpu).unwrap();
    assert_eq!(from_hub.config(), local.config());

    let err = Backbone::from_hub("someone/absent", &options, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("someone/absent") && err.contains("config.json") && err.contains("offline"),
        "{err}"
    );
    let pinned = HubOptions {
        revision: Some(COMMIT.into()),
        ..options.clone()
    };
    Backbone::from_hub("someone/tiny-wavlm", &pinned, &Device::Cpu).unwrap();
    let err = Backbone::from_hub("no-owner", &options, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("owner/name"), "{err}");

    // A cached repository without weights names what it looked for.
    let snap = root
        .join("models--someone--tiny-wavlm/snapshots")
        .join(COMMIT);
    std::fs::remove_file(snap.join("model.safetensors")).unwrap();
    let err = Backbone::from_hub("someone/tiny-wavlm", &options, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no weights") && err.contains("pytorch_model.bin"),
        "{err}"
    );
}
