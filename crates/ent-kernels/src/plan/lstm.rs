//! The plan of one LSTM direction's recurrence (`kernels/lstm.cu`).

use super::*;
use crate::error::check_len;

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
) -> Result<LstmPlan, KernelError> {
    let LstmDims {
        batch,
        frames,
        hidden,
    } = dims;
    if !matches!(dtype, KernelDType::F32 | KernelDType::F64) {
        return Err(KernelError::DType {
            arg: "lstm input",
            dtype: format!("{dtype:?}"),
            expected: "f32, f64",
        });
    }
    if batch == 0 {
        // A grid needs a block, and the block would zero rows of a buffer with none.
        return Err(KernelError::EmptyBatch { arg: "lstm input" });
    }
    if max_block == 0 || !max_block.is_multiple_of(32) || max_block > LSTM_MAX_BLOCK {
        return Err(KernelError::Limit {
            what: format!("lstm block of {max_block} threads (a multiple of 32)"),
            max: LSTM_MAX_BLOCK as usize,
        });
    }
    let shared = 6 * hidden * dtype.size();
    if hidden == 0 || shared > MAX_SHARED_BYTES {
        return Err(KernelError::Limit {
            what: format!("lstm_backward: H = {hidden} ({shared} bytes of shared memory)"),
            max: MAX_SHARED_BYTES / (6 * dtype.size()),
        });
    }
    let elems = batch
        .checked_mul(frames)
        .and_then(|n| n.checked_mul(4 * hidden));
    if !matches!(elems, Some(n) if n <= i64::MAX as usize) || frames > u32::MAX as usize {
        return Err(KernelError::Limit {
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

/// The lengths upload of an LSTM plan, checked against its batch and `T`: what both executors
/// upload before launching it.
pub fn lstm_uploads(plan: &LstmPlan, lens: &[usize]) -> Result<Uploads, KernelError> {
    check_len("lens", lens.len(), plan.dims.batch)?;
    if let Some((index, &l)) = lens
        .iter()
        .enumerate()
        .find(|(_, l)| **l > plan.dims.frames)
    {
        return Err(KernelError::LengthTooLarge {
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
