//! Clear errors for bad checkpoints and bad inputs.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use ent_backbone::{Backbone, BackboneError};

use crate::fixtures_root;

/// A scratch copy of a fixture folder, removed on drop.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn copy_of(name: &str, tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ent-backbone-{tag}-"))
            .tempdir()
            .unwrap();
        for entry in std::fs::read_dir(fixtures_root().join(name)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
        Self(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

fn err(dir: &Path) -> String {
    Backbone::load(dir, &Device::Cpu).unwrap_err().to_string()
}

#[test]
fn missing_files_are_named() {
    let s = Scratch::copy_of("wavlm-large", "missing");
    std::fs::remove_file(s.path().join("model.safetensors")).unwrap();
    let msg = err(s.path());
    assert!(
        msg.contains("no weights") && msg.contains("pytorch_model.bin"),
        "{msg}"
    );
    std::fs::remove_file(s.path().join("config.json")).unwrap();
    let msg = err(s.path());
    assert!(msg.contains("config.json"), "{msg}");
}

#[test]
fn a_missing_tensor_is_named() {
    let s = Scratch::copy_of("wavlm-large", "tensor");
    let path = s.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    tensors
        .remove("wavlm.encoder.layers.1.feed_forward.output_dense.bias")
        .unwrap();
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let msg = err(s.path());
    assert!(
        msg.contains("missing tensor `wavlm.encoder.layers.1.feed_forward.output_dense.bias`"),
        "{msg}"
    );
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn a_wrong_shape_is_named() {
    let s = Scratch::copy_of("wavlm-large", "shape");
    let config = std::fs::read_to_string(s.path().join("config.json")).unwrap();
    let config = config.replace("\"intermediate_size\": 64", "\"intermediate_size\": 65");
    std::fs::write(s.path().join("config.json"), config).unwrap();
    let msg = err(s.path());
    assert!(
        msg.contains("intermediate_dense.weight")
            && msg.contains("[64, 32]")
            && msg.contains("[65, 32]"),
        "{msg}"
    );
}

#[test]
fn unsupported_and_malformed_configurations() {
    let s = Scratch::copy_of("hubert-large", "config");
    let path = s.path().join("config.json");
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        original.replace("\"model_type\": \"hubert\"", "\"model_type\": \"whisper\""),
    )
    .unwrap();
    let msg = err(s.path());
    assert!(
        msg.contains("unsupported") && msg.contains("whisper"),
        "{msg}"
    );
    std::fs::write(&path, "{ not json").unwrap();
    let msg = err(s.path());
    assert!(
        msg.contains("config.json") && msg.contains("not a valid configuration"),
        "{msg}"
    );
    std::fs::write(
        &path,
        original.replace(
            "\"feat_extract_norm\": \"layer\"",
            "\"feat_extract_norm\": \"batch\"",
        ),
    )
    .unwrap();
    let msg = err(s.path());
    assert!(msg.contains("feat_extract_norm \"batch\""), "{msg}");
}

#[test]
fn not_a_checkpoint() {
    let s = Scratch::copy_of("hubert-large", "garbage");
    std::fs::write(
        s.path().join("model.safetensors"),
        b"certainly not safetensors",
    )
    .unwrap();
    let msg = err(s.path());
    assert!(msg.contains("not a valid safetensors file"), "{msg}");
    std::fs::remove_file(s.path().join("model.safetensors")).unwrap();
    std::fs::write(
        s.path().join("pytorch_model.bin"),
        b"PK\x03\x04 truncated zip",
    )
    .unwrap();
    let msg = err(s.path());
    assert!(
        msg.contains("pytorch_model.bin") && msg.contains("not a readable PyTorch checkpoint"),
        "{msg}"
    );
}

#[test]
fn a_checkpoint_of_another_architecture() {
    // wavlm weights under a wav2vec2 configuration: the key probe fails with both names.
    let s = Scratch::copy_of("wavlm-base-plus", "arch");
    let path = s.path().join("config.json");
    let config = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"model_type\": \"wavlm\"", "\"model_type\": \"wav2vec2\"");
    std::fs::write(&path, config).unwrap();
    // wavlm-base-plus has no key prefix, so every tensor wav2vec2 needs is there; the gates and
    // the position embedding are not, and they must not be ignored silently.
    let msg = err(s.path());
    assert!(
        msg.contains("encoder.layers.0.attention.gru_rel_pos_const")
            && msg.contains("does not match"),
        "{msg}"
    );
    // Likewise a configuration that leaves out the convolution biases a checkpoint has.
    let s = Scratch::copy_of("wav2vec2-large-lv60", "bias");
    let path = s.path().join("config.json");
    let config = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"conv_bias\": true", "\"conv_bias\": false");
    std::fs::write(&path, config).unwrap();
    let msg = err(s.path());
    assert!(
        msg.contains("feature_extractor.conv_layers.0.conv.bias") && msg.contains("and 6 more"),
        "{msg}"
    );
}

#[test]
fn bad_inputs() {
    let model = Backbone::load(&fixtures_root().join("wav2vec2-base"), &Device::Cpu).unwrap();
    let dev = Device::Cpu;
    let waves = Tensor::zeros((2, 1000), DType::F32, &dev).unwrap();
    let run = |w: &Tensor, l: &Tensor| model.forward(w, l).unwrap_err().to_string();
    let msg = run(&waves, &Tensor::new(&[1000u32, 1001], &dev).unwrap());
    assert!(
        msg.contains("lengths[1] = 1001 exceeds the 1000 samples"),
        "{msg}"
    );
    let msg = run(&waves, &Tensor::new(&[1000u32, 399], &dev).unwrap());
    assert!(
        msg.contains("lengths[1] = 399") && msg.contains("receptive field of 400"),
        "{msg}"
    );
    let msg = run(&waves, &Tensor::new(&[1000u32], &dev).unwrap());
    assert!(msg.contains("lengths must be [B] = [2] u32"), "{msg}");
    let msg = run(&waves, &Tensor::new(&[1000i64, 1000], &dev).unwrap());
    assert!(msg.contains("I64"), "{msg}");
    let msg = run(
        &waves.to_dtype(DType::F64).unwrap(),
        &Tensor::new(&[1000u32, 1000], &dev).unwrap(),
    );
    assert!(msg.contains("must be f32"), "{msg}");
    let msg = run(
        &waves.flatten_all().unwrap(),
        &Tensor::new(&[1000u32], &dev).unwrap(),
    );
    assert!(msg.contains("[B, S]"), "{msg}");
    let mut data = vec![0f32; 2000];
    data[1500] = f32::NAN;
    let nan = Tensor::from_vec(data, (2, 1000), &dev).unwrap();
    let msg = run(&nan, &Tensor::new(&[1000u32, 1000], &dev).unwrap());
    assert!(msg.contains("waveforms[1]"), "{msg}");
    // NaN in the padding is ignored, like any padding.
    model
        .forward(&nan, &Tensor::new(&[1000u32, 400], &dev).unwrap())
        .unwrap();
    assert!(matches!(
        model.forward(&nan, &Tensor::new(&[1000u32, 1000], &dev).unwrap()),
        Err(BackboneError::Input(_))
    ));
}
