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
            dims: LatticeDims {
                batch,
                frames,
                targets,
                classes,
            },
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
