//! Agreement with the peer library: costs and gradients of `torchaudio.functional.rnnt_loss`
//! (torchaudio 2.11, CPU, f32) on small random batches with shorter utterances, several blank
//! indices, a gradient clamp, a single frame and a 40-symbol vocabulary. The fixture is made
//! by `tests/fixtures/make_torchaudio_fixture.py`.

use ent_lattice::{LatticeBatch, LatticeDims, Reduction, RnntLossConfig, cpu};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn ints(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("integer") as u32)
        .collect()
}

/// One batch of the torchaudio fixture: inputs, configuration and torchaudio's results.
pub struct PeerCase {
    pub name: String,
    pub dims: LatticeDims,
    pub cfg: RnntLossConfig,
    /// f32 in torch (the f64 -> f32 conversion is exact).
    pub logits: Vec<f32>,
    pub targets: Vec<u32>,
    pub logit_lens: Vec<u32>,
    pub target_lens: Vec<u32>,
    costs: Vec<f64>,
    grads: Vec<f64>,
}

impl PeerCase {
    /// The batch of the fixture's logits.
    pub fn batch(&self) -> LatticeBatch<'_, f32> {
        self.batch_with(&self.logits)
    }

    /// The batch with the fixture's logits as `logits` (another type).
    pub fn batch_with<'a, E>(&'a self, logits: &'a [E]) -> LatticeBatch<'a, E> {
        LatticeBatch::new(
            logits,
            self.dims,
            &self.targets,
            &self.logit_lens,
            &self.target_lens,
        )
    }
}

pub fn peer_cases() -> Vec<PeerCase> {
    let fixture: Value =
        serde_json::from_str(include_str!("../fixtures/torchaudio_rnnt.json")).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    cases
        .iter()
        .map(|case| {
            let d = ints(&case["dims"]);
            let clamp = case["clamp"].as_f64().unwrap();
            PeerCase {
                name: case["name"].as_str().unwrap().to_string(),
                dims: LatticeDims::new(d[0] as usize, d[1] as usize, d[2] as usize, d[3] as usize),
                cfg: RnntLossConfig {
                    blank: case["blank"].as_u64().unwrap() as usize,
                    reduction: Reduction::None,
                    clamp: (clamp > 0.0).then_some(clamp as f32),
                    ..Default::default()
                },
                logits: floats(&case["logits"]).iter().map(|&v| v as f32).collect(),
                targets: ints(&case["targets"]),
                logit_lens: ints(&case["logit_lens"]),
                target_lens: ints(&case["target_lens"]),
                costs: floats(&case["costs"]),
                grads: floats(&case["grads"]),
            }
        })
        .collect()
}

impl PeerCase {
    /// torchaudio runs its lattice in f32: measured against the exact (f64) answer its costs
    /// are off by up to 1e-7 relative and its gradients by up to 5.3e-6 absolute on these
    /// cases, so agreement is asserted at 1e-6 relative and 1e-5 absolute.
    pub fn check(&self, costs: &[f64], grad: &[f32]) {
        let name = &self.name;
        assert_eq!(costs.len(), self.costs.len(), "{name}");
        assert_eq!(grad.len(), self.grads.len(), "{name}");
        for (b, (c, w)) in costs.iter().zip(&self.costs).enumerate() {
            assert!(
                (c - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{name}: cost[{b}] {c} vs torchaudio {w}"
            );
        }
        for (i, (g, w)) in grad.iter().zip(&self.grads).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= 1e-5,
                "{name}: grad[{i}] {g} vs torchaudio {w}"
            );
        }
    }
}

#[test]
fn matches_torchaudio() {
    for case in peer_cases() {
        let (name, cfg, logits) = (&case.name, &case.cfg, &case.logits);
        let mut grad = vec![0.0f32; logits.len()];
        let costs = cpu::rnnt_loss(case.batch(), cfg, Some(&mut grad)).unwrap();
        case.check(&costs, &grad);
        // Our f32 path against our f64 path (which matches brute force to 1e-13): an order of
        // magnitude tighter than torchaudio's own error (measured: at most 8.1e-8 on the
        // gradients, 1.6e-8 relative on the costs).
        let l64: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
        let mut g64 = vec![0.0f64; l64.len()];
        let c64 = cpu::rnnt_loss(case.batch_with(&l64), cfg, Some(&mut g64)).unwrap();
        for (c, e) in costs.iter().zip(&c64) {
            assert!(
                (c - e).abs() <= 1e-7 * e.abs(),
                "{name}: f32 cost {c} vs f64 {e}"
            );
        }
        for (g, e) in grad.iter().zip(&g64) {
            assert!(
                (*g as f64 - e).abs() <= 2e-7,
                "{name}: f32 grad {g} vs f64 {e}"
            );
        }
    }
}
