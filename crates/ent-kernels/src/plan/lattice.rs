//! The plans of the lattice losses (`kernels/rnnt.cu`, `kernels/pool.cu`).

use super::*;

/// Threads per block of every row kernel: 8 warps, one lattice row per warp.
const ROW_BLOCK: u32 = 256;
const ROWS_PER_BLOCK: usize = (ROW_BLOCK / 32) as usize;
/// Threads per block of the per-utterance kernels (alpha/beta, pooling).
const UTT_BLOCK: u32 = 256;
/// The largest `U + 1` of `rnnt_alpha_beta`: two diagonals of f64 in shared memory.
pub const MAX_POSITIONS: usize = MAX_SHARED_BYTES / (2 * 8);
/// The most emotion classes `pool_<dt>` holds in registers per node (`MAX_K` in pool.cu).
pub const MAX_POOL_CLASSES: usize = 64;

/// The sizes of a padded batch of lattices: logits are laid out row-major as
/// `[batch][frames][targets + 1][classes]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LatticeDims {
    /// `B`, the number of utterances.
    pub batch: usize,
    /// `T`, the padded number of encoder frames.
    pub frames: usize,
    /// `U`, the padded target length; the lattice has `U + 1` predictor positions.
    pub targets: usize,
    /// `V` (vocabulary size, blank included) for the RNN-T loss, `K` (emotion classes) for
    /// the pooling loss.
    pub classes: usize,
}

impl LatticeDims {
    /// The sizes `[B][T][U+1][classes]` of `(B, T, U, classes)`.
    pub const fn new(batch: usize, frames: usize, targets: usize, classes: usize) -> Self {
        LatticeDims {
            batch,
            frames,
            targets,
            classes,
        }
    }

    /// `U + 1`, the number of predictor positions.
    pub fn positions(&self) -> usize {
        self.targets + 1
    }

    /// `B * T * (U + 1)`, the number of lattice nodes (rows of `classes` logits).
    pub fn nodes(&self) -> Result<usize, KernelError> {
        [self.batch, self.frames, self.positions()]
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| self.too_large())
    }

    /// `B * T * (U + 1) * classes`, the number of logits, checked against overflow.
    pub fn numel(&self) -> Result<usize, KernelError> {
        self.nodes()?
            .checked_mul(self.classes)
            .ok_or_else(|| self.too_large())
    }

    fn too_large(&self) -> KernelError {
        KernelError::TooLarge {
            arg: "logits",
            dims: vec![self.batch, self.frames, self.positions(), self.classes],
        }
    }
}

fn lattice_limits(dims: &LatticeDims, kernel: &str) -> Result<usize, KernelError> {
    let nodes = dims.nodes()?;
    dims.numel()?;
    if dims.frames > u32::MAX as usize {
        return Err(KernelError::Limit {
            what: format!("{kernel}: T = {}", dims.frames),
            max: u32::MAX as usize,
        });
    }
    if dims.batch > MAX_GRID_X {
        return Err(KernelError::Limit {
            what: format!("{kernel}: B = {}", dims.batch),
            max: MAX_GRID_X,
        });
    }
    Ok(nodes)
}

fn row_launch(kernel: String, nodes: usize, args: Vec<Arg>) -> Result<Launch, KernelError> {
    let grid = grid_x(&kernel, nodes.div_ceil(ROWS_PER_BLOCK))?;
    Ok(Launch {
        kernel,
        grid: [grid, 1, 1],
        block: [ROW_BLOCK, 1, 1],
        shared_bytes: 0,
        args,
    })
}
/// The RNN-T loss's settings, as `kernels/rnnt.cu` takes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RnntParams {
    /// The blank symbol, in `0..V`.
    pub blank: usize,
    /// Infinite costs (unreachable targets) count as 0, with a zero gradient.
    pub zero_infinity: bool,
    /// FastEmit's lambda (0: off).
    pub fastemit_lambda: f32,
    /// Clamp of the gradient per logit, before the incoming gradient's scale (`None`: off).
    pub clamp: Option<f32>,
}

impl Default for RnntParams {
    fn default() -> Self {
        RnntParams {
            blank: 0,
            zero_infinity: false,
            fastemit_lambda: 0.0,
            clamp: None,
        }
    }
}

/// The lattice pooling loss's settings, as `kernels/pool.cu` takes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoolParams {
    /// The neutral class, in `0..K`.
    pub neutral: usize,
    /// Which nodes are pooled: 0 the one best node, 1 a node per frame (`full_t`), 2 a node
    /// per label position (`full_u`).
    pub mode: i32,
    /// The neutral term: 0 the least neutral node (`min`), 1 the most neutral (`max`), 2 none
    /// (`off`).
    pub neutral_term: i32,
    /// Probabilities are clamped below by this before their logarithm.
    pub prob_clamp: f32,
}

/// The RNN-T plan; `dims` and `cfg` as validated by the loss.
pub fn rnnt_plan(
    dims: LatticeDims,
    dtype: KernelDType,
    cfg: &RnntParams,
) -> Result<Plan, KernelError> {
    let nodes = lattice_limits(&dims, "rnnt")?;
    let u1 = dims.positions();
    if u1 > MAX_POSITIONS {
        return Err(KernelError::Limit {
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
) -> Result<Plan, KernelError> {
    let cfg = RnntParams {
        blank,
        ..Default::default()
    };
    rnnt_plan(dims, dtype, &cfg)
}

/// The pooling plan; `dims` and `cfg` as validated by the loss.
pub fn pool_plan(
    dims: LatticeDims,
    dtype: KernelDType,
    cfg: &PoolParams,
) -> Result<Plan, KernelError> {
    lattice_limits(&dims, "pool")?;
    if dims.classes > MAX_POOL_CLASSES {
        return Err(KernelError::Limit {
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
    let (mode, neutral_term) = (cfg.mode, cfg.neutral_term);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_params() -> PoolParams {
        PoolParams {
            neutral: 0,
            mode: 0,
            neutral_term: 0,
            prob_clamp: 1e-6,
        }
    }

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
            let p = rnnt_plan(d, KernelDType::F32, &RnntParams::default()).unwrap();
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
            &RnntParams {
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
        let p = pool_plan(dims(3, 4, 2, 4), KernelDType::F16, &pool_params()).unwrap();
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
            &RnntParams::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("U+1 = {}", MAX_POSITIONS + 1)),
            "{e}"
        );
        let e = pool_plan(dims(1, 2, 1, 65), KernelDType::F32, &pool_params()).unwrap_err();
        assert!(e.to_string().contains("K = 65"), "{e}");
    }
}
