//! Loss configurations.

/// How per-utterance losses are combined into the returned value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// One loss per utterance: the result has shape `[B]`.
    None,
    /// The sum over the batch: a scalar.
    Sum,
    /// The sum over the batch divided by the batch size `B` (not by the number of target
    /// tokens), as torchaudio and the ENT reference code do: a scalar.
    #[default]
    Mean,
}

/// Which lattice nodes the emotion-lattice max pooling loss trains (docs/method.md §3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum PoolMode {
    /// Only the selected node: `-log p` at the arg-max (emotion) or arg-min (neutral) node.
    #[default]
    One,
    /// The mean of `-log p` over every valid node of the selected node's frame `t`
    /// (all predictor positions `u <= U_i`).
    FullT,
    /// The mean of `-log p` over every valid node of the selected node's predictor position `u`
    /// (all frames `t < T_i`).
    FullU,
}

/// The second term of the lattice pooling loss, which acts on the neutral class.
///
/// The reference code adds `-log min_{t,u} P[t,u][neutral]` for every utterance; this is
/// the default (docs/method.md §8, open decision 1). The alternatives exist for ablations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum NeutralTerm {
    /// `-log clamp(min_{t,u} P[t,u][neutral])`: the least neutral node is pushed towards neutral.
    #[default]
    Min,
    /// `-log clamp(max_{t,u} P[t,u][neutral])`: the most neutral node is pushed towards neutral.
    Max,
    /// No neutral term: only the labelled class is pooled.
    Off,
}

/// Configuration of [`rnnt_loss`](crate::rnnt_loss).
#[derive(Clone, Debug, PartialEq)]
pub struct RnntLossConfig {
    /// Index of the blank symbol in the vocabulary (default 0).
    pub blank: usize,
    /// How the per-utterance losses are combined (default [`Reduction::Mean`]).
    pub reduction: Reduction,
    /// Clamp every element of the logit gradient to `[-c, c]` (default `None`: no clamp).
    /// The loss value is not affected.
    pub clamp: Option<f32>,
    /// FastEmit regularisation weight `lambda` (Yu et al., 2021; default 0). The gradient of
    /// the label-emission log-probabilities is scaled by `1 + lambda`; the loss value is the
    /// plain RNN-T loss, as in torchaudio.
    pub fastemit_lambda: f32,
    /// Report utterances whose target cannot be reached (all paths have probability zero,
    /// which only `-inf` logits can cause) with loss 0 instead of `+inf` (default false).
    /// Their gradient is zero either way.
    pub zero_infinity: bool,
}

impl Default for RnntLossConfig {
    fn default() -> Self {
        Self {
            blank: 0,
            reduction: Reduction::Mean,
            clamp: None,
            fastemit_lambda: 0.0,
            zero_infinity: false,
        }
    }
}

/// Configuration of [`lattice_max_pool_loss`](crate::lattice_max_pool_loss).
#[derive(Clone, Debug, PartialEq)]
pub struct LatticePoolConfig {
    /// Index of the neutral ("non-emotional") class (default 3, as in the ENT label set
    /// happy 0, angry 1, sad 2, neutral 3).
    pub neutral: usize,
    /// Which nodes are trained (default [`PoolMode::One`]).
    pub mode: PoolMode,
    /// How the per-utterance losses are combined (default [`Reduction::Mean`]).
    pub reduction: Reduction,
    /// Probabilities are clamped to `[prob_clamp, 1]` before the logarithm (default `1e-8`);
    /// a node whose probability is below the clamp receives no gradient.
    pub prob_clamp: f32,
    /// The neutral term (default [`NeutralTerm::Min`], the reference behaviour).
    pub neutral_term: NeutralTerm,
}

impl Default for LatticePoolConfig {
    fn default() -> Self {
        Self {
            neutral: 3,
            mode: PoolMode::One,
            reduction: Reduction::Mean,
            prob_clamp: 1e-8,
            neutral_term: NeutralTerm::Min,
        }
    }
}

#[cfg(any(feature = "cuda", feature = "emulate"))]
impl RnntLossConfig {
    /// The settings the kernels take.
    pub(crate) fn kernel_params(&self) -> ent_kernels::plan::RnntParams {
        ent_kernels::plan::RnntParams {
            blank: self.blank,
            zero_infinity: self.zero_infinity,
            fastemit_lambda: self.fastemit_lambda,
            clamp: self.clamp,
        }
    }
}

#[cfg(any(feature = "cuda", feature = "emulate"))]
impl LatticePoolConfig {
    /// The settings the kernels take, with the modes encoded as `kernels/pool.cu` reads them.
    pub(crate) fn kernel_params(&self) -> ent_kernels::plan::PoolParams {
        ent_kernels::plan::PoolParams {
            neutral: self.neutral,
            mode: match self.mode {
                PoolMode::One => 0,
                PoolMode::FullT => 1,
                PoolMode::FullU => 2,
            },
            neutral_term: match self.neutral_term {
                NeutralTerm::Min => 0,
                NeutralTerm::Max => 1,
                NeutralTerm::Off => 2,
            },
            prob_clamp: self.prob_clamp,
        }
    }
}
