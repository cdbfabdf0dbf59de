//! Shared inputs for the benchmarks: the shapes, deterministic random problems and the
//! plain read-and-write pass that serves as each group's floor.

use ent_lattice::LatticeDims;
use rayon::prelude::*;

/// A benchmark shape, named `B8_T200_U50_V512` (or `..._K4` for emotion classes).
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub dims: LatticeDims,
    /// `'V'` for a vocabulary, `'K'` for emotion classes.
    pub class_letter: char,
}

impl Shape {
    pub const fn new(
        batch: usize,
        frames: usize,
        targets: usize,
        classes: usize,
        class_letter: char,
    ) -> Self {
        Shape {
            dims: LatticeDims::new(batch, frames, targets, classes),
            class_letter,
        }
    }

    pub fn name(&self) -> String {
        let d = self.dims;
        format!(
            "B{}_T{}_U{}_{}{}",
            d.batch, d.frames, d.targets, self.class_letter, d.classes
        )
    }

    /// `B * T * (U+1) * classes`.
    pub fn numel(&self) -> usize {
        self.dims.numel().expect("benchmark shapes fit in memory")
    }
}

/// The RNN-T shapes: two large ASR vocabularies and the ENT character model.
pub const RNNT_SHAPES: [Shape; 3] = [
    Shape::new(8, 200, 50, 512, 'V'),
    Shape::new(4, 500, 100, 1000, 'V'),
    Shape::new(8, 250, 60, 31, 'V'),
];

/// The emotion-lattice pooling shape of ENT (K = 4 classes).
pub const POOL_SHAPES: [Shape; 1] = [Shape::new(8, 250, 60, 4, 'K')];

/// The RNN-T shapes of the GPU benchmark (`cuda/rnnt_loss`): an ASR vocabulary at a large
/// batch, the ENT character model, and a large vocabulary (1.9 G logits).
pub const CUDA_RNNT_SHAPES: [Shape; 3] = [
    Shape::new(32, 500, 100, 1000, 'V'),
    Shape::new(8, 250, 60, 31, 'V'),
    Shape::new(16, 300, 80, 5000, 'V'),
];

/// The pooling shapes of the GPU benchmark (`cuda/lattice_pool`).
pub const CUDA_POOL_SHAPES: [Shape; 2] = [
    Shape::new(8, 250, 60, 4, 'K'),
    Shape::new(32, 500, 100, 4, 'K'),
];

/// SplitMix64: a small deterministic generator, so runs are comparable.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

/// A full-length batch (every utterance uses all `T` frames and `U` targets), blank 0.
#[derive(Debug)]
pub struct Problem {
    pub shape: Shape,
    pub logits: Vec<f32>,
    /// Non-blank labels in `1..classes` (for pooling: utterance labels in `0..classes`).
    pub targets: Vec<u32>,
    pub logit_lens: Vec<u32>,
    pub target_lens: Vec<u32>,
}

impl Problem {
    pub fn new(shape: Shape, seed: u64) -> Self {
        let d = shape.dims;
        let mut rng = Rng::new(seed);
        let n = shape.numel();
        // Filled in parallel from per-chunk generators: the large shapes hold 200 M values.
        let mut logits = vec![0.0f32; n];
        logits
            .par_chunks_mut(1 << 20)
            .enumerate()
            .for_each(|(i, c)| {
                let mut r = Rng::new(seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
                c.iter_mut().for_each(|v| *v = r.uniform(-3.0, 3.0));
            });
        let pool = shape.class_letter == 'K';
        let count = if pool { d.batch } else { d.batch * d.targets };
        let targets = (0..count)
            .map(|_| {
                let r = rng.next_u64() as usize;
                if pool {
                    (r % d.classes) as u32
                } else {
                    1 + (r % (d.classes - 1)) as u32
                }
            })
            .collect();
        Problem {
            shape,
            logits,
            targets,
            logit_lens: vec![d.frames as u32; d.batch],
            target_lens: vec![d.targets as u32; d.batch],
        }
    }
}

impl Problem {
    /// The batch the slice entry points take.
    pub fn batch(&self) -> ent_lattice::LatticeBatch<'_, f32> {
        ent_lattice::LatticeBatch::new(
            &self.logits,
            self.shape.dims,
            &self.targets,
            &self.logit_lens,
            &self.target_lens,
        )
    }
}

/// The floor: read every logit once and write a tensor of the same size, in parallel over the
/// same threads the loss uses. Any loss with a gradient must do at least this much.
pub fn plain_pass(src: &[f32], dst: &mut [f32]) {
    dst.par_chunks_mut(1 << 16)
        .zip(src.par_chunks(1 << 16))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// The committed test sentence (16 kHz, 16-bit) repeated to `seconds` seconds: the audio of the
/// `cpu/fbank` benchmark. `benches/kaldi_native_fbank.py` builds the same samples.
pub fn bench_speech(seconds: usize) -> Result<Vec<f32>, ent_features::FeatureError> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/ent-features/tests/fixtures/sentence.wav");
    let one = ent_features::load(path)?.samples;
    Ok(one.iter().copied().cycle().take(seconds * 16000).collect())
}

/// A base-size wav2vec2 checkpoint (`facebook/wav2vec2-base`'s architecture, 94 M parameters)
/// with seeded random weights, written once to `bench-data/wav2vec2-base-random/` in the target
/// folder (`$CARGO_TARGET_DIR`, else the workspace's `target/`) as
/// `config.json` + `model.safetensors` in transformers' own layout, so that transformers loads
/// the very same weights (`benches/backbone_transformers.py`). Speed does not depend on the
/// values; they are scaled like trained weights (unit-variance activations, no denormals).
///
/// `ENT_BACKBONE_BENCH_MODEL=/path/to/checkpoint` benchmarks a real checkpoint folder instead.
pub fn backbone_checkpoint() -> std::io::Result<std::path::PathBuf> {
    use candle_core::{Device, Tensor};
    if let Some(dir) = std::env::var_os("ENT_BACKBONE_BENCH_MODEL") {
        return Ok(dir.into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("bench-data/wav2vec2-base-random");
    let weights = dir.join("model.safetensors");
    if weights.is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir)?;
    let (d, ff, c) = (768usize, 3072usize, 512usize);
    let mut rng = Rng::new(0xBAC4_B0AE);
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut add = |name: String, shape: &[usize], fan_in: usize, kind: Init| {
        let n: usize = shape.iter().product();
        let a = (3.0 / fan_in.max(1) as f32).sqrt();
        let data: Vec<f32> = (0..n)
            .map(|_| match kind {
                Init::Weight => rng.uniform(-a, a),
                Init::Gain => 1.0 + rng.uniform(-0.1, 0.1),
                Init::Bias => rng.uniform(-0.05, 0.05),
            })
            .collect();
        let t = Tensor::from_vec(data, shape, &Device::Cpu).expect("shape matches data");
        tensors.push((name, t));
    };
    use Init::{Bias, Gain, Weight};
    let kernels = [10usize, 3, 3, 3, 3, 2, 2];
    for (i, &k) in kernels.iter().enumerate() {
        let inp = if i == 0 { 1 } else { c };
        let p = format!("feature_extractor.conv_layers.{i}");
        add(format!("{p}.conv.weight"), &[c, inp, k], inp * k, Weight);
        if i == 0 {
            add(format!("{p}.layer_norm.weight"), &[c], 1, Gain);
            add(format!("{p}.layer_norm.bias"), &[c], 1, Bias);
        }
    }
    add("feature_projection.layer_norm.weight".into(), &[c], 1, Gain);
    add("feature_projection.layer_norm.bias".into(), &[c], 1, Bias);
    add(
        "feature_projection.projection.weight".into(),
        &[d, c],
        c,
        Weight,
    );
    add("feature_projection.projection.bias".into(), &[d], 1, Bias);
    let pc = "encoder.pos_conv_embed.conv";
    add(
        format!("{pc}.parametrizations.weight.original0"),
        &[1, 1, 128],
        1,
        Gain,
    );
    add(
        format!("{pc}.parametrizations.weight.original1"),
        &[d, d / 16, 128],
        1,
        Weight,
    );
    add(format!("{pc}.bias"), &[d], 1, Bias);
    add("encoder.layer_norm.weight".into(), &[d], 1, Gain);
    add("encoder.layer_norm.bias".into(), &[d], 1, Bias);
    add("masked_spec_embed".into(), &[d], 1, Bias);
    for l in 0..12 {
        let p = format!("encoder.layers.{l}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            add(format!("{p}.attention.{proj}.weight"), &[d, d], d, Weight);
            add(format!("{p}.attention.{proj}.bias"), &[d], 1, Bias);
        }
        for norm in ["layer_norm", "final_layer_norm"] {
            add(format!("{p}.{norm}.weight"), &[d], 1, Gain);
            add(format!("{p}.{norm}.bias"), &[d], 1, Bias);
        }
        add(
            format!("{p}.feed_forward.intermediate_dense.weight"),
            &[ff, d],
            d,
            Weight,
        );
        add(
            format!("{p}.feed_forward.intermediate_dense.bias"),
            &[ff],
            1,
            Bias,
        );
        add(
            format!("{p}.feed_forward.output_dense.weight"),
            &[d, ff],
            ff,
            Weight,
        );
        add(format!("{p}.feed_forward.output_dense.bias"), &[d], 1, Bias);
    }
    let map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
    let tmp = dir.join("model.safetensors.partial");
    candle_core::safetensors::save(&map, &tmp).map_err(std::io::Error::other)?;
    std::fs::write(
        dir.join("config.json"),
        r#"{
  "model_type": "wav2vec2",
  "architectures": ["Wav2Vec2Model"],
  "hidden_size": 768,
  "num_hidden_layers": 12,
  "num_attention_heads": 12,
  "intermediate_size": 3072,
  "feat_extract_norm": "group",
  "do_stable_layer_norm": false,
  "conv_bias": false
}
"#,
    )?;
    std::fs::rename(tmp, weights)?;
    Ok(dir)
}

#[derive(Clone, Copy)]
enum Init {
    Weight,
    Gain,
    Bias,
}

/// `seconds` of 16 kHz speech-like audio for the backbone benchmark: the committed sentence.
pub fn backbone_input(seconds: usize) -> Vec<f32> {
    bench_speech(seconds).expect("speech fixture")
}
