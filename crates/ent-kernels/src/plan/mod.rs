//! Launch plans of the kernels in `kernels/`: for each operation, the device buffers it needs
//! and every kernel launch (entry point, grid, block, dynamic shared bytes, argument order),
//! computed in one place. Two executors run the same plans: the CUDA one ([`crate::cuda`],
//! feature `cuda`, through candle's cudarc) and the emulated one ([`crate::emulated`], feature
//! `emulate`, the kernels' own source compiled for the host), so the emulated tests exercise
//! this launch code too.
//!
//! A plan names buffers by [`Role`]. Some are the caller's (the logits, costs, incoming
//! gradient and gradient: [`Role::is_external`]); the rest are uploads of the validated integer
//! inputs and scratch that [`prepare`] allocates. Only `O(B * T * (U+1))` scratch is allocated
//! besides the gradient.

mod lattice;
mod lstm;

pub use lattice::{
    LatticeDims, MAX_POOL_CLASSES, MAX_POSITIONS, PoolParams, RnntParams, best_path_plan,
    pool_plan, rnnt_plan,
};
pub use lstm::{LSTM_MAX_BLOCK, LstmDims, LstmPlan, lstm_plan, lstm_uploads};

use crate::error::KernelError;

/// The dynamic shared memory a block gets without opting in: 48 KiB.
pub const MAX_SHARED_BYTES: usize = 48 * 1024;
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
    /// The kernels' name for a candle dtype: f32, f64, f16 or bf16.
    pub fn of(dtype: candle_core::DType) -> Result<KernelDType, KernelError> {
        use candle_core::DType;
        Ok(match dtype {
            DType::F32 => KernelDType::F32,
            DType::F64 => KernelDType::F64,
            DType::F16 => KernelDType::F16,
            DType::BF16 => KernelDType::BF16,
            d => {
                return Err(KernelError::DType {
                    arg: "logits",
                    dtype: format!("{d:?}"),
                    expected: "f32, f16, bf16, f64",
                });
            }
        })
    }

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

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
    impl Sealed for u32 {}
}

/// The element types a [`HostMem`] is read as: plain numbers without padding, valid for every
/// bit pattern (f32, f64, f16, bf16, u32).
pub trait Plain: Copy + Send + Sync + 'static + sealed::Sealed {}

impl<T: Copy + Send + Sync + 'static + sealed::Sealed> Plain for T {}

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
    ) -> Result<Vec<ArgValue>, KernelError> {
        self.args
            .iter()
            .map(|a| {
                Ok(match *a {
                    Arg::Buffer(role) => {
                        ArgValue::Ptr(address(role).ok_or_else(|| KernelError::Launch {
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

pub(crate) fn i64_of(v: usize) -> i64 {
    // Every size here is bounded by an allocation's element count, far below i64::MAX.
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn grid_x(kernel: &str, blocks: usize) -> Result<u32, KernelError> {
    if blocks > MAX_GRID_X {
        return Err(KernelError::Limit {
            what: format!("{kernel} grid of {blocks} blocks"),
            max: MAX_GRID_X,
        });
    }
    Ok(blocks.max(1) as u32)
}

/// An argument list: the buffers of `roles`, then the scalars of `scalars` in order.
pub(crate) fn args(roles: &[Role], scalars: &[&[Arg]]) -> Vec<Arg> {
    roles
        .iter()
        .map(|&r| Arg::Buffer(r))
        .chain(scalars.iter().flat_map(|s| s.iter().copied()))
        .collect()
}

/// The host values of the upload buffers, by role.
#[derive(Debug)]
pub struct Uploads {
    /// Each upload's values, by role.
    pub values: Vec<(Role, Vec<u32>)>,
}

impl Uploads {
    /// The RNN-T uploads: targets (`[B][U]`, zero past each length) and both lengths (each at
    /// most its dimension, which the plans bound by `u32::MAX`).
    pub fn rnnt(targets: &[u32], frames: &[usize], target_lens: &[usize]) -> Self {
        Uploads {
            values: vec![
                (Role::Targets, targets.to_vec()),
                (Role::LogitLens, u32s(frames)),
                (Role::TargetLens, u32s(target_lens)),
            ],
        }
    }

    /// The pooling uploads: labels and both lengths.
    pub fn pool(labels: &[usize], frames: &[usize], target_lens: &[usize]) -> Self {
        Uploads {
            values: vec![
                (Role::Labels, u32s(labels)),
                (Role::LogitLens, u32s(frames)),
                (Role::TargetLens, u32s(target_lens)),
            ],
        }
    }
}

fn u32s(v: &[usize]) -> Vec<u32> {
    v.iter().map(|&x| x as u32).collect()
}

/// What runs a plan: device memory, uploads and launches.
pub trait Executor {
    /// Owned device memory.
    type Mem;
    /// What the executor's own failures are; plan errors convert into it.
    type Error: From<KernelError>;

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
#[derive(Debug)]
pub struct Prepared<M> {
    /// Each buffer with its role.
    pub buffers: Vec<(Role, M)>,
}

impl<M> Prepared<M> {
    pub fn get(&self, role: Role) -> Option<&M> {
        self.buffers
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, m)| m)
    }
}

/// Native-endian bytes of `values` (what an upload copies).
pub fn u32_bytes(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// Native-endian bytes of `values`.
pub fn f64_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// Uploads the integer inputs and allocates the scratch of `specs`.
pub fn prepare<X: Executor>(
    x: &mut X,
    specs: &[BufferSpec],
    uploads: &Uploads,
) -> Result<Prepared<X::Mem>, X::Error> {
    let mut buffers = Vec::with_capacity(specs.len());
    for spec in specs {
        let mem = match uploads.values.iter().find(|(r, _)| *r == spec.role) {
            Some((_, data)) => {
                if data.len() != spec.len {
                    Err(KernelError::Launch {
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
pub fn run<X: Executor>(
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
    use crate::plan::lattice::{RnntParams, rnnt_plan};

    #[test]
    fn unbound_buffers_are_errors() {
        let p = rnnt_plan(
            LatticeDims {
                batch: 1,
                frames: 1,
                targets: 0,
                classes: 2,
            },
            KernelDType::F32,
            &RnntParams::default(),
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
