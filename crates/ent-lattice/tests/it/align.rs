//! The best alignment (Viterbi) against the enumeration of every alignment path.

use candle_core::{Device, Tensor};
use ent_lattice::{LatticeBatch, LatticeDims, cpu, rnnt_best_path};
use proptest::prelude::*;

use crate::reference::{self, Utt};
use crate::rnnt::arbitrary_problem;

/// Blank positions of an enumerated path: the `u` of each frame-advancing or final blank.
fn blank_positions(path: &[(usize, usize, usize)], blank: usize) -> Vec<usize> {
    path.iter()
        .filter(|&&(_, _, s)| s == blank)
        .map(|&(_, u, _)| u)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The returned path is a valid alignment whose log-probability (recomputed in f64 from
    /// the logits along the path) equals the best over all enumerated alignments, and the
    /// reported `log_prob` is that value. Tolerance 1e-5 relative, as for the loss: f32
    /// logits are normalised in f32 (error ~1e-7 per node, over at most 9 nodes), so a
    /// near-tie may be resolved either way.
    #[test]
    fn viterbi_is_the_best_enumerated_path(p in arbitrary_problem()) {
        let got = cpu::rnnt_best_path(p.batch(), p.blank).unwrap();
        prop_assert_eq!(got.len(), p.dims.batch);
        let logits: Vec<f64> = p.logits.iter().map(|&v| v as f64).collect();
        let per = p.dims.frames * p.dims.positions() * p.dims.classes;
        for (b, a) in got.iter().enumerate() {
            let frames = p.logit_lens[b] as usize;
            let labels: Vec<usize> = (0..p.target_lens[b] as usize)
                .map(|u| p.targets[b * p.dims.targets + u] as usize)
                .collect();
            let utt = Utt {
                logits: &logits[b * per..(b + 1) * per],
                frames,
                targets: &labels,
                positions: p.dims.positions(),
                classes: p.dims.classes,
            };
            let score = |path: &[(usize, usize, usize)]| -> f64 {
                path.iter().map(|&(t, u, s)| reference::log_softmax(utt.row(t, u))[s]).sum()
            };
            let paths = reference::alignments(frames, &labels, p.blank);
            let best = paths.iter().map(|q| score(q)).fold(f64::NEG_INFINITY, f64::max);
            let mine = paths
                .iter()
                .find(|q| blank_positions(q, p.blank) == a.blank_positions)
                .expect("the returned path is one of the alignments");
            let tol = 1e-5 * best.abs().max(1.0);
            prop_assert!((score(mine) - best).abs() <= tol, "path {} vs best {best}", score(mine));
            prop_assert!((a.log_prob - best).abs() <= tol, "log_prob {} vs {best}", a.log_prob);
        }
    }
}

/// A lattice where the labels are certain at frame 1 only: the path waits one frame, emits
/// both labels there, and leaves the last frame from `U`.
#[test]
fn path_follows_the_confident_nodes() {
    let (t_n, u_n, v) = (3, 3, 3); // T = 3, U = 2, V = 3 (blank 0), labels [1, 2]
    let mut z = vec![0f32; t_n * u_n * v];
    let mut set = |t: usize, u: usize, k: usize, x: f32| z[(t * u_n + u) * v + k] = x;
    for t in 0..t_n {
        for u in 0..u_n {
            set(t, u, 0, 5.0); // blank likely everywhere ...
        }
    }
    set(1, 0, 1, 10.0); // ... but label 1 at (1, 0)
    set(1, 1, 2, 10.0); // and label 2 at (1, 1)
    let dims = LatticeDims::new(1, t_n, 2, v);
    let got =
        cpu::rnnt_best_path(LatticeBatch::new(&z, dims, &[1u32, 2], &[3u32], &[2u32]), 0).unwrap();
    assert_eq!(got[0].blank_positions, vec![0, 2, 2]);

    // The tensor entry point agrees, for f64 logits as well.
    let dev = Device::Cpu;
    let logits = Tensor::from_vec(z, (1, t_n, u_n, v), &dev).unwrap();
    let tok = Tensor::new(&[[1u32, 2]], &dev).unwrap();
    let (fl, tl) = (
        Tensor::new(&[3u32], &dev).unwrap(),
        Tensor::new(&[2u32], &dev).unwrap(),
    );
    for l in [
        logits.clone(),
        logits.to_dtype(candle_core::DType::F64).unwrap(),
    ] {
        let a = rnnt_best_path(&l, &tok, &fl, &tl, 0).unwrap();
        assert_eq!(a[0].blank_positions, vec![0, 2, 2]);
        // f32 logits are normalised in f32, f64 logits in f64.
        assert!((a[0].log_prob - got[0].log_prob).abs() < 1e-6);
    }
    // Bad input is an error, not a panic.
    assert!(rnnt_best_path(&logits, &tok, &fl, &tl, 3).is_err());
    assert!(rnnt_best_path(&logits, &tok, &Tensor::new(&[4u32], &dev).unwrap(), &tl, 0).is_err());
}
