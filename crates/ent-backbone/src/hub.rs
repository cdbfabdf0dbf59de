//! Loading by model id through the Hugging Face cache (feature `hub`).
//!
//! Files are taken from the local cache (`HF_HUB_CACHE`, `HF_HOME`, default
//! `~/.cache/huggingface/hub`, or [`HubOptions::cache_dir`]) when they are there, without
//! touching the network; missing ones are downloaded unless offline ([`HubOptions::offline`],
//! by default from `HF_HUB_OFFLINE`).

use std::path::PathBuf;

use candle_core::Device;
use hf_hub::{HFClient, HFError};

use crate::weights::{WEIGHT_FILES, shard_files};
use crate::{Backbone, BackboneError};

/// Where and how [`Backbone::from_hub`] looks for a model.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Branch, tag or commit; `None` for `main`.
    pub revision: Option<String>,
    /// The cache folder; `None` for hf-hub's default (`HF_HUB_CACHE`, `$HF_HOME/hub`,
    /// `~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    /// Use the cache only, never the network.
    pub offline: bool,
}

impl Default for HubOptions {
    /// `main`, the default cache, and offline if `HF_HUB_OFFLINE` is `1`, `true`, `yes` or `on`.
    fn default() -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false);
        Self {
            revision: None,
            cache_dir: None,
            offline,
        }
    }
}

impl Backbone {
    /// Loads `model_id` (`owner/name`, e.g. `facebook/wav2vec2-base`) through the Hugging Face
    /// cache: files already cached are used without touching the network; missing ones are
    /// downloaded unless `options.offline`.
    ///
    /// Needs `config.json` and one weights file (`model.safetensors`, then
    /// `model.safetensors.index.json` with its shards, then `pytorch_model.bin`); reads
    /// `preprocessor_config.json` if the repository has one. Errors name the repository and file.
    pub fn from_hub(
        model_id: &str,
        options: &HubOptions,
        device: &Device,
    ) -> Result<Backbone, BackboneError> {
        let revision = options.revision.as_deref();
        let offline = options.offline;
        let hub_err = |detail: String| BackboneError::Hub {
            repo: model_id.to_owned(),
            detail,
        };
        let Some((owner, name)) = model_id.split_once('/') else {
            return Err(hub_err("a model id is `owner/name`".into()));
        };
        let mut builder = HFClient::builder();
        if let Some(dir) = &options.cache_dir {
            builder = builder.cache_dir(dir);
        }
        let client = builder
            .build_sync()
            .map_err(|e| hub_err(format!("cannot set up the client: {e}")))?;
        let repo = client.model(owner, name);
        // Ok(None): the file is not in the repository (or not in the cache, when offline).
        let fetch = |file: &str| -> Result<Option<PathBuf>, BackboneError> {
            let cached = repo
                .download_file()
                .filename(file)
                .maybe_revision(revision.map(str::to_owned))
                .local_files_only(true)
                .send();
            match cached {
                Ok(path) => return Ok(Some(path)),
                Err(HFError::LocalEntryNotFound { .. }) if !offline => {}
                Err(HFError::LocalEntryNotFound { .. }) => return Ok(None),
                Err(e) => return Err(hub_err(format!("{file}: {e}"))),
            }
            match repo
                .download_file()
                .filename(file)
                .maybe_revision(revision.map(str::to_owned))
                .send()
            {
                Ok(path) => Ok(Some(path)),
                Err(HFError::EntryNotFound { .. }) => Ok(None),
                Err(e) => Err(hub_err(format!("{file}: {e}"))),
            }
        };
        let where_ = if offline {
            "in the local cache (offline)"
        } else {
            "in the repository"
        };
        let config =
            fetch("config.json")?.ok_or_else(|| hub_err(format!("no config.json {where_}")))?;
        let dir = config
            .parent()
            .ok_or_else(|| hub_err("the cache path of config.json has no folder".into()))?
            .to_owned();
        fetch("preprocessor_config.json")?;
        let mut found = false;
        for file in WEIGHT_FILES {
            if let Some(path) = fetch(file)? {
                if file.ends_with(".index.json") {
                    for shard in shard_files(&path)? {
                        fetch(&shard)?.ok_or_else(|| {
                            hub_err(format!(
                                "no {shard} {where_}, though the shard index names it"
                            ))
                        })?;
                    }
                }
                found = true;
                break;
            }
        }
        if !found {
            return Err(hub_err(format!(
                "no weights {where_} (looked for {})",
                WEIGHT_FILES.join(", ")
            )));
        }
        Backbone::load(&dir, device)
    }
}
