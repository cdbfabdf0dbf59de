//! Independent brute-force references, in f64. They share no code with the crate: the RNN-T
//! reference enumerates every alignment path instead of running a dynamic programme, and the
//! pooling reference scores every node.

/// One utterance, `[T][U+1][V]` with the batch's padded strides.
pub struct Utt<'a> {
    pub logits: &'a [f64],
    pub frames: usize,
    pub targets: &'a [usize],
    /// Padded `U + 1` and `V` of the surrounding batch (row strides).
    pub positions: usize,
    pub classes: usize,
}

impl Utt<'_> {
    pub fn row(&self, t: usize, u: usize) -> &[f64] {
        let o = (t * self.positions + u) * self.classes;
        &self.logits[o..o + self.classes]
    }
}

pub fn log_softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    z.iter().map(|v| v - lse).collect()
}

/// Every alignment as its list of transitions `(t, u, symbol)`: `T - 1` blanks that advance
/// the frame and `U` labels in any order, then the final blank at `(T-1, U)`.
pub fn alignments(
    frames: usize,
    labels: &[usize],
    blank: usize,
) -> Vec<Vec<(usize, usize, usize)>> {
    fn rec(
        t: usize,
        u: usize,
        frames: usize,
        labels: &[usize],
        blank: usize,
        path: &mut Vec<(usize, usize, usize)>,
        out: &mut Vec<Vec<(usize, usize, usize)>>,
    ) {
        if t == frames - 1 && u == labels.len() {
            path.push((t, u, blank));
            out.push(path.clone());
            path.pop();
            return;
        }
        if t + 1 < frames {
            path.push((t, u, blank));
            rec(t + 1, u, frames, labels, blank, path, out);
            path.pop();
        }
        if u < labels.len() {
            path.push((t, u, labels[u]));
            rec(t, u + 1, frames, labels, blank, path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    rec(0, 0, frames, labels, blank, &mut Vec::new(), &mut out);
    out
}

/// Cost `-log sum_paths P(path)` and its gradient with respect to the logits (laid out like
/// `utt.logits`, zero outside the utterance). FastEmit scales the label-transition part of
/// the gradient by `1 + lambda`.
pub fn rnnt(utt: &Utt, blank: usize, lambda: f64) -> (f64, Vec<f64>) {
    let paths = alignments(utt.frames, utt.targets, blank);
    let lp = |t: usize, u: usize| log_softmax(utt.row(t, u));
    let scores: Vec<f64> = paths
        .iter()
        .map(|p| p.iter().map(|&(t, u, k)| lp(t, u)[k]).sum())
        .collect();
    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let log_p = m + scores.iter().map(|s| (s - m).exp()).sum::<f64>().ln();
    // d cost / d lp[t,u,k] = -(posterior mass of paths using that transition).
    let mut dlp = vec![0.0; utt.logits.len()];
    for (path, s) in paths.iter().zip(&scores) {
        let post = (s - log_p).exp();
        for &(t, u, k) in path {
            let w = if k == blank { 1.0 } else { 1.0 + lambda };
            dlp[(t * utt.positions + u) * utt.classes + k] -= w * post;
        }
    }
    // Chain through the log-softmax: dz_j = sum_k dlp_k (delta_kj - p_j).
    let mut grad = vec![0.0; utt.logits.len()];
    for t in 0..utt.frames {
        for u in 0..=utt.targets.len() {
            let o = (t * utt.positions + u) * utt.classes;
            let p: Vec<f64> = lp(t, u).iter().map(|l| l.exp()).collect();
            let total: f64 = dlp[o..o + utt.classes].iter().sum();
            for j in 0..utt.classes {
                grad[o + j] = dlp[o + j] - total * p[j];
            }
        }
    }
    (-log_p, grad)
}

/// Pooling modes mirrored here so the reference does not import the crate's enums.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    One,
    FullT,
    FullU,
}

/// Neutral term: `Some(true)` min, `Some(false)` max, `None` off.
pub fn pool(
    utt: &Utt,
    label: usize,
    neutral: usize,
    mode: Mode,
    neutral_min: Option<bool>,
    clamp: f64,
) -> (f64, Vec<f64>) {
    let ub = utt.targets.len();
    let nodes: Vec<(usize, usize)> = (0..utt.frames)
        .flat_map(|t| (0..=ub).map(move |u| (t, u)))
        .collect();
    let prob = |t: usize, u: usize| -> Vec<f64> {
        log_softmax(utt.row(t, u)).iter().map(|l| l.exp()).collect()
    };
    // First node attaining the extreme value, in row-major order.
    let pick = |class: usize, want_max: bool| -> (usize, usize) {
        let vals: Vec<f64> = nodes.iter().map(|&(t, u)| prob(t, u)[class]).collect();
        let best = if want_max {
            vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
        } else {
            vals.iter().cloned().fold(f64::INFINITY, f64::min)
        };
        nodes[vals.iter().position(|&v| v == best).unwrap()]
    };
    let mut terms = vec![(label, pick(label, true))];
    if let Some(min) = neutral_min {
        terms.push((neutral, pick(neutral, !min)));
    }
    let mut cost = 0.0;
    let mut grad = vec![0.0; utt.logits.len()];
    for (class, (ts, us)) in terms {
        let set: Vec<(usize, usize)> = match mode {
            Mode::One => vec![(ts, us)],
            Mode::FullT => (0..=ub).map(|u| (ts, u)).collect(),
            Mode::FullU => (0..utt.frames).map(|t| (t, us)).collect(),
        };
        let n = set.len() as f64;
        for (t, u) in set {
            let p = prob(t, u);
            cost += -p[class].clamp(clamp, 1.0).ln() / n;
            if p[class] >= clamp {
                let o = (t * utt.positions + u) * utt.classes;
                for j in 0..utt.classes {
                    grad[o + j] += (p[j] - if j == class { 1.0 } else { 0.0 }) / n;
                }
            }
        }
    }
    (cost, grad)
}
