//! No padding leakage: each utterance of a padded batch gets, on its valid frames, the hidden
//! states of running it alone (within 1e-5), for every front end and layer placement. The
//! fixtures fill the padding with loud noise, so any leak shows.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use ent_backbone::Backbone;

use crate::{fixture_dirs, fixtures_root};

#[test]
fn batched_equals_alone_on_valid_frames() {
    for dir in fixture_dirs(&fixtures_root()) {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let model = Backbone::load(&dir, &Device::Cpu).unwrap();
        let expected: HashMap<String, Tensor> =
            candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
        let waves = &expected["waveforms"];
        let lengths = expected["lengths"].to_dtype(DType::U32).unwrap();
        let batched = model.forward(waves, &lengths).unwrap();
        let mut worst = 0f64;
        for (b, &len) in lengths.to_vec1::<u32>().unwrap().iter().enumerate() {
            let alone_wave = waves
                .get(b)
                .unwrap()
                .narrow(0, 0, len as usize)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let alone = model
                .forward(&alone_wave, &Tensor::new(&[len], &Device::Cpu).unwrap())
                .unwrap();
            let frames = batched.frame_lens[b];
            assert_eq!(alone.frame_lens, [frames], "{name}");
            for (k, (hb, ha)) in batched
                .hidden_states
                .iter()
                .zip(&alone.hidden_states)
                .enumerate()
            {
                let hb = hb.get(b).unwrap();
                let valid = hb.narrow(0, 0, frames).unwrap();
                let diff = ent_testkit::max_abs_diff(&valid, &ha.get(0).unwrap());
                assert!(
                    diff <= 1e-5,
                    "{name}: utterance {b}, hidden state {k}: batched differs from alone by {diff:e}"
                );
                worst = worst.max(diff);
                let t = hb.dim(0).unwrap();
                if frames < t {
                    let pad = hb
                        .narrow(0, frames, t - frames)
                        .unwrap()
                        .abs()
                        .unwrap()
                        .max_all()
                        .unwrap();
                    assert_eq!(
                        pad.to_scalar::<f32>().unwrap(),
                        0.0,
                        "{name}: padded frames must be zero"
                    );
                }
            }
        }
        println!("{name:<22} batched vs alone: max |diff| = {worst:.2e}");
    }
}

#[test]
fn input_normalisation_is_per_utterance() {
    // With do_normalize, scaling and shifting an utterance changes nothing (up to rounding), and
    // its padding still does not matter.
    let dir = fixtures_root().join("wav2vec2-base");
    let mut model = Backbone::load(&dir, &Device::Cpu).unwrap();
    assert!(
        !model.normalizes_input(),
        "the fixture has no preprocessor_config.json"
    );
    model.set_normalize_input(true);
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let waves = &expected["waveforms"];
    let lengths = expected["lengths"].to_dtype(DType::U32).unwrap();
    let a = model.forward(waves, &lengths).unwrap();
    let b = model
        .forward(&((waves * 3.0).unwrap() + 0.25).unwrap(), &lengths)
        .unwrap();
    for (x, y) in a.hidden_states.iter().zip(&b.hidden_states) {
        let diff = ent_testkit::max_abs_diff(x, y);
        assert!(diff < 1e-4, "normalised inputs differ by {diff}");
    }
}
