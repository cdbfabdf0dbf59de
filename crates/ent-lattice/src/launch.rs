//! Launch plans of the kernels in `kernels/`: for each operation, the device buffers it needs
//! and every kernel launch (entry point, grid, block, dynamic shared bytes, argument order),
//! computed in one place. Two executors run the same plans: the CUDA one (feature `cuda`,
//! through candle's cudarc) and the emulated one (feature `emulate`, the kernels' own source
//! compiled for the host), so the emulated tests exercise this launch code too.
//!
//! A plan names buffers by [`Role`]. Some are the caller's (the logits, costs, incoming
//! gradient and gradient: [`Role::is_external`]); the rest are uploads of the validated integer
//! inputs and scratch that [`prepare`] allocates. Only `O(B * T * (U+1))` scratch is allocated
//! besides the gradient.

use crate::config::{LatticePoolConfig, NeutralTerm, PoolMode, RnntLossConfig};
use crate::error::LatticeError;
use crate::problem::{LatticeDims, Lengths};

/// Threads per block of every row kernel: 8 warps, one lattice row per warp.
const ROW_BLOCK: u32 = 256;
const ROWS_PER_BLOCK: usize = (ROW_BLOCK / 32) as usize;
/// Threads per block of the per-utterance kernels (alpha/beta, pooling).
const UTT_BLOCK: u32 = 256;
/// The dynamic shared memory a block gets without opting in: 48 KiB.
pub const MAX_SHARED_BYTES: usize = 48 * 1024;
/// The largest `U + 1` of `rnnt_alpha_beta`: two diagonals of f64 in shared memory.
pub const MAX_POSITIONS: usize = MAX_SHARED_BYTES / (2 * 8);
/// The most emotion classes `pool_<dt>` holds in registers per node (`MAX_K` in pool.cu).
pub const MAX_POOL_CLASSES: usize = 64;
/// CUDA's limit on `gridDim.x`.
const MAX_GRID_X: usize = (1 << 31) - 1;

/// The element type of logits as the kernels see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelDType {
    F32,
    F64,
    F16,
    BF16,
}

impl KernelDType {
    /// The suffix of the entry points for this type (`rnnt_grad_f32`).
    pub fn suffix(self) -> &'static str {
        match self {
            KernelDType::F32 => "f32",
            KernelDType::F64 => "f64",
            KernelDType::F16 => "f16",
            KernelDType::BF16 => "bf16",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            KernelDType::F64 => 8,
            KernelDType::F32 => 4,
            KernelDType::F16 | KernelDType::BF16 => 2,
        }
    }

    /// The type the pooling kernel accumulates its gradient in: f64 for f64, else f32.
    pub fn pool_grad(self) -> Elem {
        match self {
            KernelDType::F64 => Elem::F64,
            _ => Elem::F32,
        }
    }
}

/// What a buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// `[B][T][U+1][V or K]`, the caller's logits.
    Logits,
    /// `[B][U]` u32 (RNN-T targets).
    Targets,
    /// `[B]` u32 (pooling labels).
    Labels,
    /// `[B]` u32.
    LogitLens,
    /// `[B]` u32.
    TargetLens,
    /// `[B][T][U+1][3]` f64: blank and label log-probabilities, normaliser.
    Lp,
    /// `[B][T][U+1]` f64.
    Alpha,
    /// `[B][T][U+1]` f64.
    Beta,
    /// `[B][2]` f64: log P from alpha and from beta.
    LogP,
    /// `[B]` f64, the per-utterance costs (the caller's).
    Costs,
    /// `[B]` f64, the incoming gradient of each cost (the caller's).
    GradCosts,
    /// The gradient (the caller's): logits-sized, of [`BufferSpec::elem`].
    Grad,
    /// `[B][T][4H]`, an LSTM's input projection with both biases (the caller's).
    LstmInput,
    /// `[4H][H]`, an LSTM's recurrent weight `W_hh` (the caller's).
    LstmWeight,
    /// `[B][T][H]`, an LSTM's hidden states (the caller's).
    LstmHidden,
    /// `[B][T][4H]`, an LSTM's gate activations, kept for the backward pass (the caller's).
    LstmGates,
    /// `[B][T][H]`, an LSTM's cell states, kept for the backward pass (the caller's).
    LstmCells,
    /// `[B][T][H]`, the incoming gradient of the hidden states (the caller's).
    LstmGradHidden,
    /// `[B][T][4H]`, the gradient of the input projection (the caller's).
    LstmGradInput,
}

impl Role {
    /// Buffers the caller provides rather than the plan allocating them.
    pub fn is_external(self) -> bool {
        matches!(
            self,
            Role::Logits
                | Role::Costs
                | Role::GradCosts
                | Role::Grad
                | Role::LstmInput
                | Role::LstmWeight
                | Role::LstmHidden
                | Role::LstmGates
                | Role::LstmCells
                | Role::LstmGradHidden
                | Role::LstmGradInput
        )
    }
}

/// A buffer's element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    U32,
    F32,
    F64,
    /// The logits' own type.
    Logit(KernelDType),
}

impl Elem {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Elem::U32 | Elem::F32 => 4,
            Elem::F64 => 8,
            Elem::Logit(d) => d.size(),
        }
    }
}

/// Whether a buffer must start zeroed; scratch that every reader's cell is written first is
/// left uninitialised (the emulated executor fills it with NaN to prove it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    Uninit,
    Zeroed,
}

/// A buffer of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferSpec {
    pub role: Role,
    pub elem: Elem,
    pub len: usize,
    pub init: Init,
}

impl BufferSpec {
    /// A buffer the kernels write before they read it.
    pub fn uninit(role: Role, elem: Elem, len: usize) -> Self {
        BufferSpec {
            role,
            elem,
            len,
            init: Init::Uninit,
        }
    }

    /// Bytes, at least one element (devices refuse empty allocations).
    pub fn bytes(&self) -> usize {
        self.len.max(1) * self.elem.size()
    }
}

/// One kernel argument, in the order of the entry point's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg {
    /// The device address of a buffer.
    Buffer(Role),
    /// A null pointer (an output the launch does not write).
    Null,
    I64(i64),
    I32(i32),
    F32(f32),
    F64(f64),
}

/// An argument's value as the driver passes it: 8-byte pointers and scalars.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArgValue {
    Ptr(u64),
    I64(i64),
    I32(i32),
    F32(f32),
    F64(f64),
}

/// One kernel launch.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    /// The entry point, `<op>_<dtype>` or a dtype-free name.
    pub kernel: String,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    /// Dynamic shared memory in bytes.
    pub shared_bytes: u32,
    pub args: Vec<Arg>,
}

impl Launch {
    /// The argument values, with each buffer's address looked up by `address`.
    pub fn marshal(
        &self,
        address: impl Fn(Role) -> Option<u64>,
    ) -> Result<Vec<ArgValue>, LatticeError> {
        self.args
            .iter()
            .map(|a| {
                Ok(match *a {
                    Arg::Buffer(role) => {
                        ArgValue::Ptr(address(role).ok_or_else(|| LatticeError::Launch {
                            kernel: self.kernel.clone(),
                            reason: format!("no buffer bound for {role:?}"),
                        })?)
                    }
                    Arg::Null => ArgValue::Ptr(0),
                    Arg::I64(v) => ArgValue::I64(v),
                    Arg::I32(v) => ArgValue::I32(v),
                    Arg::F32(v) => ArgValue::F32(v),
                    Arg::F64(v) => ArgValue::F64(v),
                })
            })
            .collect()
    }

    /// The buffers this launch reads or writes.
    pub fn roles(&self) -> impl Iterator<Item = Role> + '_ {
        self.args.iter().filter_map(|a| match a {
            Arg::Buffer(r) => Some(*r),
            _ => None,
        })
    }
}

/// The launches of one loss for one batch shape and configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub dims: LatticeDims,
    pub dtype: KernelDType,
    /// Uploads and scratch, allocated by [`prepare`].
    pub buffers: Vec<BufferSpec>,
    /// The caller's buffers: the `[B]` f64 costs and the gradient (RNN-T: uninitialised, in the
    /// logits' type; pooling: zeroed f32, or f64 for f64 logits, cast by the caller).
    pub costs: BufferSpec,
    pub grad: BufferSpec,
    /// Writes `Costs` (RNN-T: normaliser, alpha/beta, costs; pooling: one launch with a null
    /// gradient).
    pub forward: Vec<Launch>,
    /// Writes `Grad`, scaled by `GradCosts` (RNN-T: from the forward pass's scratch; pooling:
    /// the forward launch again, with the gradient).
    pub gradient: Vec<Launch>,
}

impl Plan {
    /// The first launch of the forward pass: for RNN-T the normaliser, which writes the `Lp`
    /// that the Viterbi alignment reads.
    pub fn normalize(&self) -> &[Launch] {
        &self.forward[..1]
    }
}

fn i64_of(v: usize) -> i64 {
    // Every size here is bounded by an allocation's element count, far below i64::MAX.
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn grid_x(kernel: &str, blocks: usize) -> Result<u32, LatticeError> {
    if blocks > MAX_GRID_X {
        return Err(LatticeError::KernelLimit {
            what: format!("{kernel} grid of {blocks} blocks"),
            max: MAX_GRID_X,
        });
    }
    Ok(blocks.max(1) as u32)
}

fn lattice_limits(dims: &LatticeDims, kernel: &str) -> Result<usize, LatticeError> {
    let nodes = dims.nodes()?;
    dims.numel()?;
    if dims.frames > u32::MAX as usize {
        return Err(LatticeError::KernelLimit {
            what: format!("{kernel}: T = {}", dims.frames),
            max: u32::MAX as usize,
        });
    }
    if dims.batch > MAX_GRID_X {
        return Err(LatticeError::KernelLimit {
            what: format!("{kernel}: B = {}", dims.batch),
            max: MAX_GRID_X,
        });
    }
    Ok(nodes)
}

/// An argument list: the buffers of `roles`, then the scalars of `scalars` in order.
fn args(roles: &[Role], scalars: &[&[Arg]]) -> Vec<Arg> {
    roles
        .iter()
        .map(|&r| Arg::Buffer(r))
        .chain(scalars.iter().flat_map(|s| s.iter().copied()))
        .collect()
}

fn row_launch(kernel: String, nodes: usize, args: Vec<Arg>) -> Result<Launch, LatticeError> {
    let grid = grid_x(&kernel, nodes.div_ceil(ROWS_PER_BLOCK))?;
    Ok(Launch {
        kernel,
        grid: [grid, 1, 1],
        block: [ROW_BLOCK, 1, 1],
        shared_bytes: 0,
        args,
    })
}

/// The RNN-T plan; `dims` and `cfg` as validated by the loss.
pub fn rnnt_plan(
    dims: LatticeDims,
    dtype: KernelDType,
    cfg: &RnntLossConfig,
) -> Result<Plan, LatticeError> {
    let nodes = lattice_limits(&dims, "rnnt")?;
    let u1 = dims.positions();
    if u1 > MAX_POSITIONS {
        return Err(LatticeError::KernelLimit {
            what: format!("rnnt_alpha_beta: U+1 = {u1} (two f64 diagonals in shared memory)"),
            max: MAX_POSITIONS,
        });
    }
    let numel = dims.numel()?;
    let (b, t, v) = (
        i64_of(dims.batch),
        i64_of(dims.frames),
        i64_of(dims.classes),
    );
    let u1i = i64_of(u1);
    let sfx = dtype.suffix();
    let f64s = |role, len| BufferSpec::uninit(role, Elem::F64, len);
    let u32s = |role, len| BufferSpec::uninit(role, Elem::U32, len);
    let buffers = vec![
        u32s(Role::Targets, dims.batch * dims.targets),
        u32s(Role::LogitLens, dims.batch),
        u32s(Role::TargetLens, dims.batch),
        f64s(Role::Lp, nodes * 3),
        f64s(Role::Alpha, nodes),
        f64s(Role::Beta, nodes),
        f64s(Role::LogP, dims.batch * 2),
    ];
    use Role::*;
    let shape = [Arg::I64(b), Arg::I64(t), Arg::I64(u1i)];
    let blank = Arg::I64(i64_of(cfg.blank));
    let normalize = row_launch(
        format!("rnnt_normalize_{sfx}"),
        nodes,
        args(
            &[Logits, Targets, LogitLens, TargetLens, Lp],
            &[&shape[..], &[Arg::I64(v), blank]],
        ),
    )?;
    let alpha_beta = Launch {
        kernel: "rnnt_alpha_beta".into(),
        grid: [dims.batch as u32, 2, 1],
        block: [UTT_BLOCK, 1, 1],
        shared_bytes: (2 * u1 * 8) as u32,
        args: args(
            &[Lp, LogitLens, TargetLens, Alpha, Beta, LogP],
            &[&shape[..]],
        ),
    };
    let costs = Launch {
        kernel: "rnnt_costs".into(),
        grid: [grid_x("rnnt_costs", dims.batch.div_ceil(256))?, 1, 1],
        block: [256, 1, 1],
        shared_bytes: 0,
        args: args(
            &[LogP, Costs],
            &[&[Arg::I64(b), Arg::I32(cfg.zero_infinity as i32)]],
        ),
    };
    let grad = row_launch(
        format!("rnnt_grad_{sfx}"),
        nodes,
        args(
            &[
                Logits, Targets, LogitLens, TargetLens, Lp, Alpha, Beta, LogP, GradCosts, Grad,
            ],
            &[
                &shape[..],
                &[
                    Arg::I64(v),
                    blank,
                    Arg::F32(cfg.fastemit_lambda),
                    Arg::F32(cfg.clamp.unwrap_or(0.0)),
                ],
            ],
        ),
    )?;
    Ok(Plan {
        dims,
        dtype,
        buffers,
        costs: f64s(Role::Costs, dims.batch),
        grad: BufferSpec::uninit(Role::Grad, Elem::Logit(dtype), numel),
        forward: vec![normalize, alpha_beta, costs],
        gradient: vec![grad],
    })
}

/// The plan whose [`Plan::normalize`] launch gives `rnnt_best_path` its node
/// log-probabilities.
pub fn best_path_plan(
    dims: LatticeDims,
    dtype: KernelDType,
    blank: usize,
) -> Result<Plan, LatticeError> {
    let cfg = RnntLossConfig {
        blank,
        ..Default::default()
    };
    rnnt_plan(dims, dtype, &cfg)
}

/// The pooling plan; `dims` and `cfg` as validated by the loss.
pub fn pool_plan(
    dims: LatticeDims,
    dtype: KernelDType,
    cfg: &LatticePoolConfig,
) -> Result<Plan, LatticeError> {
    lattice_limits(&dims, "pool")?;
    if dims.classes > MAX_POOL_CLASSES {
        return Err(LatticeError::KernelLimit {
            what: format!(
                "pool_{}: K = {} emotion classes (held in registers per node)",
                dtype.suffix(),
                dims.classes
            ),
            max: MAX_POOL_CLASSES,
        });
    }
    let numel = dims.numel()?;
    let u32s = |role, len| BufferSpec::uninit(role, Elem::U32, len);
    let buffers = vec![
        u32s(Role::Labels, dims.batch),
        u32s(Role::LogitLens, dims.batch),
        u32s(Role::TargetLens, dims.batch),
    ];
    let mode = match cfg.mode {
        PoolMode::One => 0,
        PoolMode::FullT => 1,
        PoolMode::FullU => 2,
    };
    let neutral_term = match cfg.neutral_term {
        NeutralTerm::Min => 0,
        NeutralTerm::Max => 1,
        NeutralTerm::Off => 2,
    };
    let launch = |grad: Arg, grad_costs: Arg| Launch {
        kernel: format!("pool_{}", dtype.suffix()),
        grid: [dims.batch as u32, 1, 1],
        block: [UTT_BLOCK, 1, 1],
        // One 16-byte (value, index) pair per thread for the block reductions.
        shared_bytes: UTT_BLOCK * 16,
        args: [
            Role::Logits,
            Role::Labels,
            Role::LogitLens,
            Role::TargetLens,
            Role::Costs,
        ]
        .into_iter()
        .map(Arg::Buffer)
        .chain([
            grad_costs,
            grad,
            Arg::I64(i64_of(dims.frames)),
            Arg::I64(i64_of(dims.positions())),
            Arg::I32(dims.classes as i32),
            Arg::I32(cfg.neutral as i32),
            Arg::I32(mode),
            Arg::I32(neutral_term),
            Arg::F64(cfg.prob_clamp as f64),
        ])
        .collect(),
    };
    Ok(Plan {
        dims,
        dtype,
        buffers,
        costs: BufferSpec::uninit(Role::Costs, Elem::F64, dims.batch),
        grad: BufferSpec {
            init: Init::Zeroed,
            ..BufferSpec::uninit(Role::Grad, dtype.pool_grad(), numel)
        },
        forward: vec![launch(Arg::Null, Arg::Null)],
        gradient: vec![launch(
            Arg::Buffer(Role::Grad),
            Arg::Buffer(Role::GradCosts),
        )],
    })
}

/// The most threads per block of the LSTM kernels.
pub const LSTM_MAX_BLOCK: u32 = 1024;

/// One LSTM recurrence problem: `batch` utterances of at most `frames` frames, `hidden` units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmDims {
    pub batch: usize,
    pub frames: usize,
    pub hidden: usize,
}

/// The launches of one LSTM direction (`kernels/lstm.cu`): the lengths upload and the two
/// kernels. Every other buffer is the caller's: the input projection and `W_hh`, the hidden
/// states, gates and cells the forward pass writes, and the gradients of the backward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmPlan {
    pub dims: LstmDims,
    pub dtype: KernelDType,
    /// `[B]` u32 lengths (uploaded).
    pub lens: BufferSpec,
    /// Reads `LstmInput`, `LstmWeight`; writes `LstmHidden`, `LstmGates`, `LstmCells`.
    pub forward: Launch,
    /// Reads `LstmGradHidden`, `LstmWeight`, `LstmGates`, `LstmCells`; writes `LstmGradInput`.
    pub backward: Launch,
}

impl LstmPlan {
    /// The caller's buffers of the plan, in the kernels' element type: `[B][T][4H]` for the
    /// input, gates and input gradient, `[4H][H]` for the weight, `[B][T][H]` for the rest.
    pub fn buffer(&self, role: Role) -> BufferSpec {
        let LstmDims {
            batch,
            frames,
            hidden,
        } = self.dims;
        let len = match role {
            Role::LstmWeight => 4 * hidden * hidden,
            Role::LstmInput | Role::LstmGates | Role::LstmGradInput => 4 * batch * frames * hidden,
            _ => batch * frames * hidden,
        };
        BufferSpec::uninit(role, Elem::Logit(self.dtype), len)
    }
}

/// The LSTM plan: one block of `min(round_up(H, 32), max_block)` threads per utterance
/// (`max_block` a multiple of 32, at most [`LSTM_MAX_BLOCK`]); f32 and f64 only, and `H` small
/// enough for the backward pass's `6H` elements of shared memory.
pub fn lstm_plan(
    dims: LstmDims,
    dtype: KernelDType,
    reverse: bool,
    max_block: u32,
) -> Result<LstmPlan, LatticeError> {
    let LstmDims {
        batch,
        frames,
        hidden,
    } = dims;
    if !matches!(dtype, KernelDType::F32 | KernelDType::F64) {
        return Err(LatticeError::DType {
            arg: "lstm input",
            dtype: format!("{dtype:?}"),
            expected: "f32, f64",
        });
    }
    if batch == 0 {
        // A grid needs a block, and the block would zero rows of a buffer with none.
        return Err(LatticeError::EmptyBatch { arg: "lstm input" });
    }
    if max_block == 0 || !max_block.is_multiple_of(32) || max_block > LSTM_MAX_BLOCK {
        return Err(LatticeError::KernelLimit {
            what: format!("lstm block of {max_block} threads (a multiple of 32)"),
            max: LSTM_MAX_BLOCK as usize,
        });
    }
    let shared = 6 * hidden * dtype.size();
    if hidden == 0 || shared > MAX_SHARED_BYTES {
        return Err(LatticeError::KernelLimit {
            what: format!("lstm_backward: H = {hidden} ({shared} bytes of shared memory)"),
            max: MAX_SHARED_BYTES / (6 * dtype.size()),
        });
    }
    let elems = batch
        .checked_mul(frames)
        .and_then(|n| n.checked_mul(4 * hidden));
    if !matches!(elems, Some(n) if n <= i64::MAX as usize) || frames > u32::MAX as usize {
        return Err(LatticeError::KernelLimit {
            what: format!("lstm: B * T * 4H for B = {batch}, T = {frames}, H = {hidden}"),
            max: i64::MAX as usize,
        });
    }
    let grid = grid_x("lstm", batch)?;
    let block = (hidden.div_ceil(32) * 32).min(max_block as usize) as u32;
    let sfx = dtype.suffix();
    let scalars = [
        Arg::I64(i64_of(frames)),
        Arg::I64(i64_of(hidden)),
        Arg::I32(reverse as i32),
    ];
    use Role::*;
    let launch = |kernel: String, roles: &[Role], elems: usize| Launch {
        kernel,
        grid: [grid, 1, 1],
        block: [block, 1, 1],
        shared_bytes: (elems * hidden * dtype.size()) as u32,
        args: args(roles, &[&scalars[..]]),
    };
    Ok(LstmPlan {
        dims,
        dtype,
        lens: BufferSpec::uninit(LogitLens, Elem::U32, batch),
        forward: launch(
            format!("lstm_forward_{sfx}"),
            &[
                LstmInput, LstmWeight, LogitLens, LstmHidden, LstmGates, LstmCells,
            ],
            5,
        ),
        backward: launch(
            format!("lstm_backward_{sfx}"),
            &[
                LstmGradHidden,
                LstmWeight,
                LstmGates,
                LstmCells,
                LogitLens,
                LstmGradInput,
            ],
            6,
        ),
    })
}

// What follows runs plans; only the executors (features `cuda`, `emulate`) use it.

/// The lengths upload of an LSTM plan, checked against its batch and `T`: what both executors
/// upload before launching it.
#[cfg_attr(not(any(feature = "cuda", feature = "emulate")), allow(dead_code))]
pub(crate) fn lstm_uploads(plan: &LstmPlan, lens: &[usize]) -> Result<Uploads, LatticeError> {
    crate::problem::check_len("lens", lens.len(), plan.dims.batch)?;
    if let Some((index, &l)) = lens
        .iter()
        .enumerate()
        .find(|(_, l)| **l > plan.dims.frames)
    {
        return Err(LatticeError::LengthTooLarge {
            arg: "lens",
            index,
            value: l as i64,
            dim: "time",
            max: plan.dims.frames,
        });
    }
    Ok(Uploads {
        values: vec![(Role::LogitLens, lens.iter().map(|&l| l as u32).collect())],
    })
}

/// The host values of the upload buffers, by role.
#[cfg_attr(not(any(feature = "cuda", feature = "emulate")), allow(dead_code))]
pub(crate) struct Uploads {
    pub values: Vec<(Role, Vec<u32>)>,
}

#[cfg_attr(not(any(feature = "cuda", feature = "emulate")), allow(dead_code))]
fn lens_u32(lens: &Lengths) -> (Vec<u32>, Vec<u32>) {
    // Lengths are validated against T and U, which the plans bound by u32::MAX.
    let c = |v: &[usize]| v.iter().map(|&x| x as u32).collect();
    (c(&lens.frames), c(&lens.targets))
}

#[cfg_attr(not(any(feature = "cuda", feature = "emulate")), allow(dead_code))]
impl Uploads {
    /// The RNN-T uploads: targets (`[B][U]`, zero past each length) and both lengths.
    pub fn rnnt(targets: &[u32], lens: &Lengths) -> Self {
        let (f, t) = lens_u32(lens);
        Uploads {
            values: vec![
                (Role::Targets, targets.to_vec()),
                (Role::LogitLens, f),
                (Role::TargetLens, t),
            ],
        }
    }

    /// The pooling uploads: labels and both lengths.
    pub fn pool(labels: &[usize], lens: &Lengths) -> Self {
        let (f, t) = lens_u32(lens);
        Uploads {
            values: vec![
                (Role::Labels, labels.iter().map(|&l| l as u32).collect()),
                (Role::LogitLens, f),
                (Role::TargetLens, t),
            ],
        }
    }
}

/// What runs a plan: device memory, uploads and launches.
pub(crate) trait Executor {
    /// Owned device memory.
    type Mem;
    type Error: From<LatticeError>;

    /// `spec.bytes()` bytes; zeroed when `spec.init` says so.
    fn alloc(&mut self, spec: &BufferSpec) -> Result<Self::Mem, Self::Error>;
    /// A copy of `bytes` for `role` (at least 8 bytes of room, so empty inputs have an
    /// address).
    fn upload(&mut self, role: Role, bytes: &[u8]) -> Result<Self::Mem, Self::Error>;
    /// The device address of `mem`.
    fn address(&self, mem: &Self::Mem) -> u64;
    /// Launches `launch` with its marshalled arguments.
    fn launch(&mut self, launch: &Launch, args: &[ArgValue]) -> Result<(), Self::Error>;
}

/// A plan's uploads and scratch on a device, by role.
pub(crate) struct Prepared<M> {
    pub buffers: Vec<(Role, M)>,
}

#[cfg_attr(not(any(feature = "cuda", feature = "emulate")), allow(dead_code))]
impl<M> Prepared<M> {
    pub fn get(&self, role: Role) -> Option<&M> {
        self.buffers
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, m)| m)
    }
}

/// Native-endian bytes of `values` (what an upload copies).
#[cfg_attr(not(any(feature = "cuda", feature = "emulate")), allow(dead_code))]
pub(crate) fn u32_bytes(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// Native-endian bytes of `values`.
#[cfg(feature = "emulate")]
pub(crate) fn f64_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// Uploads the integer inputs and allocates the scratch of `specs`.
#[cfg_attr(not(any(feature = "cuda", feature = "emulate")), allow(dead_code))]
pub(crate) fn prepare<X: Executor>(
    x: &mut X,
    specs: &[BufferSpec],
    uploads: &Uploads,
) -> Result<Prepared<X::Mem>, X::Error> {
    let mut buffers = Vec::with_capacity(specs.len());
    for spec in specs {
        let mem = match uploads.values.iter().find(|(r, _)| *r == spec.role) {
            Some((_, data)) => {
                if data.len() != spec.len {
                    Err(LatticeError::Launch {
                        kernel: "upload".into(),
                        reason: format!(
                            "{:?} has {} values, the plan expects {}",
                            spec.role,
                            data.len(),
                            spec.len
                        ),
                    })?;
                }
                x.upload(spec.role, &u32_bytes(data))?
            }
            None => x.alloc(spec)?,
        };
        buffers.push((spec.role, mem));
    }
    Ok(Prepared { buffers })
}

/// Runs `launches` in order; `external` gives the addresses of the caller's buffers.
#[cfg_attr(not(any(feature = "cuda", feature = "emulate")), allow(dead_code))]
pub(crate) fn run<X: Executor>(
    x: &mut X,
    launches: &[Launch],
    prepared: &Prepared<X::Mem>,
    external: &[(Role, u64)],
) -> Result<(), X::Error> {
    for launch in launches {
        let args = launch.marshal(|role| {
            external
                .iter()
                .find(|(r, _)| *r == role)
                .map(|(_, a)| *a)
                .or_else(|| prepared.get(role).map(|m| x.address(m)))
        })?;
        x.launch(launch, &args)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(batch: usize, frames: usize, targets: usize, classes: usize) -> LatticeDims {
        LatticeDims {
            batch,
            frames,
            targets,
            classes,
        }
    }

    #[test]
    fn row_grids_cover_every_node_once() {
        for (b, t, u) in [(1, 1, 0), (3, 5, 2), (7, 13, 4), (8, 200, 50)] {
            let d = dims(b, t, u, 31);
            let p = rnnt_plan(d, KernelDType::F32, &RnntLossConfig::default()).unwrap();
            let nodes = b * t * (u + 1);
            for l in [&p.forward[0], &p.gradient[0]] {
                let rows = l.grid[0] as usize * ROWS_PER_BLOCK;
                assert!(rows >= nodes && rows < nodes + ROWS_PER_BLOCK, "{l:?}");
            }
            assert_eq!(p.forward[1].grid, [b as u32, 2, 1]);
            assert_eq!(p.forward[1].shared_bytes as usize, 2 * (u + 1) * 8);
            assert_eq!(p.forward[2].grid[0] as usize, b.div_ceil(256));
        }
    }

    #[test]
    fn argument_lists_follow_the_entry_points() {
        let p = rnnt_plan(
            dims(2, 3, 1, 5),
            KernelDType::BF16,
            &RnntLossConfig {
                blank: 4,
                clamp: Some(0.5),
                fastemit_lambda: 0.25,
                ..Default::default()
            },
        )
        .unwrap();
        let names: Vec<&str> = p.forward.iter().map(|l| l.kernel.as_str()).collect();
        assert_eq!(
            names,
            ["rnnt_normalize_bf16", "rnnt_alpha_beta", "rnnt_costs"]
        );
        let g = &p.gradient[0];
        assert_eq!(g.kernel, "rnnt_grad_bf16");
        assert_eq!(g.args.len(), 17);
        assert_eq!(
            &g.args[10..],
            &[
                Arg::I64(2),
                Arg::I64(3),
                Arg::I64(2),
                Arg::I64(5),
                Arg::I64(4),
                Arg::F32(0.25),
                Arg::F32(0.5)
            ]
        );
        assert_eq!(p.grad.elem, Elem::Logit(KernelDType::BF16));
        assert_eq!(p.grad.len, 2 * 3 * 2 * 5);
    }

    #[test]
    fn pool_forward_writes_no_gradient() {
        let p = pool_plan(
            dims(3, 4, 2, 4),
            KernelDType::F16,
            &LatticePoolConfig::default(),
        )
        .unwrap();
        assert!(!p.forward[0].roles().any(|r| r == Role::Grad));
        assert!(p.gradient[0].roles().any(|r| r == Role::Grad));
        assert_eq!(p.grad.elem, Elem::F32);
        assert_eq!(p.grad.init, Init::Zeroed);
        assert_eq!(p.forward[0].grid, [3, 1, 1]);
    }

    #[test]
    fn limits_are_errors_naming_the_value() {
        let e = rnnt_plan(
            dims(1, 2, MAX_POSITIONS, 3),
            KernelDType::F32,
            &RnntLossConfig::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("U+1 = {}", MAX_POSITIONS + 1)),
            "{e}"
        );
        let e = pool_plan(
            dims(1, 2, 1, 65),
            KernelDType::F32,
            &LatticePoolConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("K = 65"), "{e}");
    }

    #[test]
    fn unbound_buffers_are_errors() {
        let p = rnnt_plan(
            dims(1, 1, 0, 2),
            KernelDType::F32,
            &RnntLossConfig::default(),
        )
        .unwrap();
        let e = p.forward[0]
            .marshal(|r| (r != Role::Lp).then_some(64))
            .unwrap_err();
        assert!(e.to_string().contains("Lp"), "{e}");
        let ok = p.forward[0].marshal(|_| Some(64)).unwrap();
        assert_eq!(ok.len(), p.forward[0].args.len());
    }
}
