//! The CUDA kernels of `kernels/` run on the CPU, for testing them without a GPU.
//!
//! With the feature `emulate`, the build compiles the kernels' own `.cu` sources as host C++
//! over `kernels/emu/emu.h`, an implementation of the CUDA built-ins they use with CUDA's
//! semantics (a thread per CUDA thread, warps of 32 with `__shfl_xor_sync`, block barriers
//! that release exited threads, `__syncthreads_or`, dynamic shared memory). The functions here
//! run the same [launch plans](crate::launch) as the CUDA executor, on host buffers that stand
//! in for device memory:
//!
//! - every buffer sits between guard bytes, checked after each launch (a write out of bounds is
//!   an error naming the buffer);
//! - scratch and the RNN-T gradient start as NaN (`0xff` bytes), never zeros, so a cell the
//!   kernels fail to write shows;
//! - [`Options::misalign_logits`] places the logits off 16-byte alignment, which takes the
//!   kernels' element-wise load path instead of the vector one;
//! - launches are checked against the entry points' real parameter lists.
//!
//! With `ENT_EMU_SANITIZE=thread` in the environment of the build, the kernels are compiled
//! with ThreadSanitizer (`cargo xtask test-kernels` runs both builds); run the tests with the
//! sanitizer runtime preloaded. `ENT_EMU_GROUPS` (default 2) sets how many blocks run at
//! once.

use std::ffi::{CStr, CString, c_char, c_void};

use crate::align::{self, Alignment};
use crate::config::{LatticePoolConfig, RnntLossConfig};
use crate::elem::Logit;
use crate::error::LatticeError;
use crate::launch::{
    self, ArgValue, BufferSpec, Executor, Init, Launch, LstmDims, LstmPlan, Prepared, Role,
    Uploads, f64_bytes,
};
use crate::pool;
use crate::problem::{Index, LatticeDims};
use crate::rnnt::{self, check_buffer};

// SAFETY (for the declarations): these are the functions of kernels/emu/runtime.cpp, compiled
// and linked by build.rs with exactly these C signatures.
unsafe extern "C" {
    fn ent_emu_launch(
        name: *const c_char,
        grid: *const u32,
        block: *const u32,
        shared_bytes: u32,
        args: *mut *mut c_void,
        params: *const u8,
        nargs: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn ent_emu_kernel_count() -> usize;
    fn ent_emu_kernel_name(i: usize) -> *const c_char;
}

/// How the emulated executor lays out its inputs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Place the logits one element past a 16-byte boundary (the kernels' unaligned path).
    pub misalign_logits: bool,
}

/// The results of [`rnnt_loss`].
#[derive(Clone, Debug)]
pub struct RnntRun<E> {
    /// `-log P` per utterance (0 for `+inf` with `zero_infinity`).
    pub costs: Vec<f64>,
    /// `log P` from alpha and from beta, per utterance.
    pub log_p: Vec<[f64; 2]>,
    /// The gradient in the logits' type, when incoming gradients were given.
    pub grad: Option<Vec<E>>,
}

/// The results of [`lattice_max_pool_loss`].
#[derive(Clone, Debug)]
pub struct PoolRun {
    pub costs: Vec<f64>,
    /// The gradient as the kernel accumulates it (f32, or f64 for f64 logits), widened.
    pub grad: Option<Vec<f64>>,
}

/// The entry points compiled into the emulation (every `extern "C" __global__` kernel).
pub fn kernel_names() -> Vec<String> {
    // SAFETY: the count and the names come from the static table of kernels.cpp; each name
    // is a NUL-terminated string literal, valid for the whole program.
    unsafe {
        (0..ent_emu_kernel_count())
            .map(|i| {
                CStr::from_ptr(ent_emu_kernel_name(i))
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }
}

const GUARD_BYTES: usize = 64;
const GUARD: u8 = 0xa5;
/// `0xff` bytes: NaN as f32 and f64, `u32::MAX` as an index.
const POISON: u8 = 0xff;

/// Host memory standing in for a device buffer: 16-byte aligned, between guard bytes.
pub(crate) struct HostMem {
    words: Vec<u128>,
    start: usize,
    len: usize,
    role: Role,
}

impl HostMem {
    fn new(role: Role, len: usize, fill: u8, offset: usize) -> Self {
        let room = len.max(8);
        let total = GUARD_BYTES + offset + room + GUARD_BYTES;
        let mut m = HostMem {
            words: vec![0; total.div_ceil(16)],
            start: GUARD_BYTES + offset,
            len,
            role,
        };
        let bytes = m.all_mut();
        bytes.fill(GUARD);
        bytes[GUARD_BYTES + offset..GUARD_BYTES + offset + room].fill(fill);
        m
    }

    fn from_bytes(role: Role, data: &[u8], offset: usize) -> Self {
        let mut m = HostMem::new(role, data.len(), 0, offset);
        let start = m.start;
        m.all_mut()[start..start + data.len()].copy_from_slice(data);
        m
    }

    fn all(&self) -> &[u8] {
        // SAFETY: `words` owns `16 * words.len()` initialised bytes; u8 has no alignment or
        // validity requirements.
        unsafe {
            std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.words.len() * 16)
        }
    }

    fn all_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `all`, and `&mut self` makes the view unique.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.words.as_mut_ptr().cast::<u8>(),
                self.words.len() * 16,
            )
        }
    }

    fn address(&self) -> u64 {
        self.all()[self.start..].as_ptr() as u64
    }

    fn read<T: Logit>(&self) -> Vec<T> {
        let n = self.len / std::mem::size_of::<T>();
        let base = self.all()[self.start..self.start + self.len].as_ptr();
        (0..n)
            .map(|i| {
                // SAFETY: element i lies inside the buffer's `len` bytes; `Logit` is sealed to
                // f32, f64, f16 and bf16, which accept every bit pattern; the read is
                // unaligned-safe.
                unsafe { base.cast::<T>().add(i).read_unaligned() }
            })
            .collect()
    }

    /// An error if a kernel wrote outside the buffer.
    fn check(&self, after: &str) -> Result<(), LatticeError> {
        let bytes = self.all();
        let end = self.start + self.len.max(8);
        let bad = bytes[..self.start]
            .iter()
            .position(|&b| b != GUARD)
            .or_else(|| {
                bytes[end..]
                    .iter()
                    .position(|&b| b != GUARD)
                    .map(|i| i + end)
            });
        match bad {
            None => Ok(()),
            Some(i) => Err(LatticeError::Launch {
                kernel: after.to_string(),
                reason: format!(
                    "wrote outside the {:?} buffer ({} bytes), at byte {} of its allocation",
                    self.role, self.len, i
                ),
            }),
        }
    }
}

fn as_bytes<E: Logit>(values: &[E]) -> &[u8] {
    // SAFETY: `Logit` is sealed to f32, f64, f16 and bf16, plain floats without padding, so
    // their memory is initialised bytes.
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
}

/// The emulated executor.
struct Emu;

impl Executor for Emu {
    type Mem = HostMem;
    type Error = LatticeError;

    fn alloc(&mut self, spec: &BufferSpec) -> Result<HostMem, LatticeError> {
        let fill = match spec.init {
            Init::Zeroed => 0,
            Init::Uninit => POISON,
        };
        Ok(HostMem::new(spec.role, spec.bytes(), fill, 0))
    }

    fn upload(&mut self, role: Role, bytes: &[u8]) -> Result<HostMem, LatticeError> {
        Ok(HostMem::from_bytes(role, bytes, 0))
    }

    fn address(&self, mem: &HostMem) -> u64 {
        mem.address()
    }

    fn launch(&mut self, l: &Launch, args: &[ArgValue]) -> Result<(), LatticeError> {
        // Each value in an 8-byte slot; 4-byte values in the low bytes (little-endian x86-64
        // and aarch64 read them there).
        let mut slots: Vec<u64> = args
            .iter()
            .map(|a| match *a {
                ArgValue::Ptr(p) => p,
                ArgValue::I64(v) => v as u64,
                ArgValue::I32(v) => v as u32 as u64,
                ArgValue::F32(v) => v.to_bits() as u64,
                ArgValue::F64(v) => v.to_bits(),
            })
            .collect();
        let params: Vec<u8> = args
            .iter()
            .flat_map(|a| match a {
                ArgValue::Ptr(_) => [b'p', 8],
                ArgValue::I64(_) => [b'i', 8],
                ArgValue::I32(_) => [b'i', 4],
                ArgValue::F32(_) => [b'f', 4],
                ArgValue::F64(_) => [b'f', 8],
            })
            .collect();
        let mut ptrs: Vec<*mut c_void> = slots
            .iter_mut()
            .map(|s| (s as *mut u64).cast::<c_void>())
            .collect();
        let name = CString::new(l.kernel.as_str()).map_err(|_| LatticeError::Launch {
            kernel: l.kernel.clone(),
            reason: "kernel name holds a NUL byte".into(),
        })?;
        let mut err = vec![0 as c_char; 512];
        // SAFETY: every pointer is valid for the call: the name is NUL-terminated, grid and
        // block hold three u32 each, `ptrs[i]` points at an 8-byte slot holding argument i,
        // `params` has two bytes per argument and `err` has `err.len()` bytes. The runtime
        // checks the argument count and kinds against the kernel before calling it; the
        // buffers the pointer arguments name are alive (owned by the caller) until it returns.
        let rc = unsafe {
            ent_emu_launch(
                name.as_ptr(),
                l.grid.as_ptr(),
                l.block.as_ptr(),
                l.shared_bytes,
                ptrs.as_mut_ptr(),
                params.as_ptr(),
                ptrs.len(),
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if rc != 0 {
            // SAFETY: the runtime wrote a NUL-terminated message into `err`.
            let msg = unsafe { CStr::from_ptr(err.as_ptr()) };
            return Err(LatticeError::Launch {
                kernel: l.kernel.clone(),
                reason: msg.to_string_lossy().into_owned(),
            });
        }
        Ok(())
    }
}

/// Runs `launches` and checks every buffer's guards afterwards.
fn run_checked(
    launches: &[Launch],
    prepared: &Prepared<HostMem>,
    external: &[&HostMem],
) -> Result<(), LatticeError> {
    let addresses: Vec<(Role, u64)> = external.iter().map(|m| (m.role, m.address())).collect();
    launch::run(&mut Emu, launches, prepared, &addresses)?;
    let after = launches
        .iter()
        .map(|l| l.kernel.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    for m in prepared
        .buffers
        .iter()
        .map(|(_, m)| m)
        .chain(external.iter().copied())
    {
        m.check(&after)?;
    }
    Ok(())
}

fn logits_mem<E: Logit>(logits: &[E], opts: &Options) -> HostMem {
    let offset = if opts.misalign_logits {
        std::mem::size_of::<E>()
    } else {
        0
    };
    HostMem::from_bytes(Role::Logits, as_bytes(logits), offset)
}

/// A caller-side buffer of the plan (costs, gradient), as the executor allocates scratch.
fn external(spec: &BufferSpec) -> Result<HostMem, LatticeError> {
    Emu.alloc(spec)
}

fn grad_costs_mem(grad_costs: &[f64], batch: usize) -> Result<HostMem, LatticeError> {
    crate::problem::check_len("grad_costs", grad_costs.len(), batch)?;
    Ok(HostMem::from_bytes(
        Role::GradCosts,
        &f64_bytes(grad_costs),
        0,
    ))
}

/// The RNN-T loss through the emulated kernels; arguments as for [`crate::cpu::rnnt_loss`],
/// with `grad_costs` the incoming gradient of each utterance's cost (the gradient is computed
/// only when it is given).
#[allow(clippy::too_many_arguments)]
pub fn rnnt_loss<E: Logit, I: Index>(
    logits: &[E],
    dims: LatticeDims,
    targets: &[I],
    logit_lens: &[I],
    target_lens: &[I],
    cfg: &RnntLossConfig,
    grad_costs: Option<&[f64]>,
    opts: &Options,
) -> Result<RnntRun<E>, LatticeError> {
    let p = rnnt::validate(dims, targets, logit_lens, target_lens, cfg)?;
    check_buffer("logits", logits.len(), &dims)?;
    let plan = launch::rnnt_plan(dims, E::KERNEL, cfg)?;
    let prepared = launch::prepare(&mut Emu, &plan.buffers, &Uploads::rnnt(&p.targets, &p.lens))?;
    let z = logits_mem(logits, opts);
    let costs = external(&plan.costs)?;
    run_checked(&plan.forward, &prepared, &[&z, &costs])?;
    let log_p: Vec<f64> = prepared
        .get(Role::LogP)
        .map(HostMem::read)
        .unwrap_or_default();
    let grad = match grad_costs {
        None => None,
        Some(g) => {
            let gc = grad_costs_mem(g, dims.batch)?;
            let grad = external(&plan.grad)?;
            run_checked(&plan.gradient, &prepared, &[&z, &gc, &grad])?;
            Some(grad.read::<E>())
        }
    };
    Ok(RnntRun {
        costs: costs.read(),
        log_p: log_p.chunks_exact(2).map(|c| [c[0], c[1]]).collect(),
        grad,
    })
}

/// Lattice max pooling through the emulated kernel; arguments as for
/// [`crate::cpu::lattice_max_pool_loss`], with `grad_costs` as for [`rnnt_loss`].
#[allow(clippy::too_many_arguments)]
pub fn lattice_max_pool_loss<E: Logit, I: Index>(
    logits: &[E],
    dims: LatticeDims,
    labels: &[I],
    logit_lens: &[I],
    target_lens: &[I],
    cfg: &LatticePoolConfig,
    grad_costs: Option<&[f64]>,
    opts: &Options,
) -> Result<PoolRun, LatticeError> {
    let p = pool::validate(dims, labels, logit_lens, target_lens, cfg)?;
    check_buffer("emotion_logits", logits.len(), &dims)?;
    let plan = launch::pool_plan(dims, E::KERNEL, cfg)?;
    let prepared = launch::prepare(&mut Emu, &plan.buffers, &Uploads::pool(&p.labels, &p.lens))?;
    let z = logits_mem(logits, opts);
    let costs = external(&plan.costs)?;
    run_checked(&plan.forward, &prepared, &[&z, &costs])?;
    let grad = match grad_costs {
        None => None,
        Some(g) => {
            let gc = grad_costs_mem(g, dims.batch)?;
            let grad = external(&plan.grad)?;
            let again = external(&plan.costs)?;
            run_checked(&plan.gradient, &prepared, &[&z, &again, &gc, &grad])?;
            // The gradient launch recomputes the costs: they must not change.
            let (first, second) = (costs.read::<f64>(), again.read::<f64>());
            if first
                .iter()
                .zip(&second)
                .any(|(a, b)| a.to_bits() != b.to_bits())
            {
                return Err(LatticeError::Launch {
                    kernel: plan.gradient[0].kernel.clone(),
                    reason: format!("costs {first:?} became {second:?} in the gradient launch"),
                });
            }
            Some(match plan.grad.elem {
                launch::Elem::F64 => grad.read::<f64>(),
                _ => grad.read::<f32>().into_iter().map(f64::from).collect(),
            })
        }
    };
    Ok(PoolRun {
        costs: costs.read(),
        grad,
    })
}

/// The best alignments through the emulated normaliser kernel (the Viterbi pass runs on the
/// host, as with a GPU); arguments as for [`crate::cpu::rnnt_best_path`].
#[allow(clippy::too_many_arguments)]
pub fn rnnt_best_path<E: Logit, I: Index>(
    logits: &[E],
    dims: LatticeDims,
    targets: &[I],
    logit_lens: &[I],
    target_lens: &[I],
    blank: usize,
    opts: &Options,
) -> Result<Vec<Alignment>, LatticeError> {
    let p = align::validate(dims, targets, logit_lens, target_lens, blank)?;
    check_buffer("logits", logits.len(), &dims)?;
    let plan = launch::best_path_plan(dims, E::KERNEL, blank)?;
    let prepared = launch::prepare(&mut Emu, &plan.buffers, &Uploads::rnnt(&p.targets, &p.lens))?;
    let z = logits_mem(logits, opts);
    run_checked(plan.normalize(), &prepared, &[&z])?;
    let lp: Vec<f64> = prepared
        .get(Role::Lp)
        .map(HostMem::read)
        .unwrap_or_default();
    let (blank_lp, label_lp) = align::split_node_log_probs(&lp);
    Ok(align::best_paths(&blank_lp, &label_lp, &p))
}

/// The results of [`lstm_forward`]: the caller's buffers the forward kernel writes.
#[derive(Clone, Debug)]
pub struct LstmRun<F> {
    /// `[B][T][H]` hidden states, zero at padded frames.
    pub hidden: Vec<F>,
    /// `[B][T][4H]` gate activations `i, f, g, o` at valid frames (padded frames keep the
    /// buffer's NaN fill: the backward kernel never reads them).
    pub gates: Vec<F>,
    /// `[B][T][H]` cell states at valid frames (NaN at padded ones, likewise).
    pub cells: Vec<F>,
}

/// The lengths upload of an LSTM plan, checked ([`launch::lstm_uploads`]).
fn lstm_lens(plan: &LstmPlan, lens: &[usize]) -> Result<Prepared<HostMem>, LatticeError> {
    let uploads = launch::lstm_uploads(plan, lens)?;
    launch::prepare(&mut Emu, std::slice::from_ref(&plan.lens), &uploads)
}

/// A caller's input buffer of an LSTM plan, its length checked.
fn lstm_input<F: Logit>(
    plan: &LstmPlan,
    role: Role,
    arg: &'static str,
    values: &[F],
) -> Result<HostMem, LatticeError> {
    crate::problem::check_len(arg, values.len(), plan.buffer(role).len)?;
    Ok(HostMem::from_bytes(role, as_bytes(values), 0))
}

/// One LSTM direction's forward kernel (`kernels/lstm.cu`) over the input projection `gx`
/// (`[B][T][4H]`, both biases added) with recurrent weight `w_hh` (`[4H][H]`), utterance `b`
/// over its first `lens[b]` frames; `max_block` caps the threads per block (see
/// [`launch::lstm_plan`]).
pub fn lstm_forward<F: Logit>(
    gx: &[F],
    w_hh: &[F],
    lens: &[usize],
    dims: LstmDims,
    reverse: bool,
    max_block: u32,
) -> Result<LstmRun<F>, LatticeError> {
    let plan = launch::lstm_plan(dims, F::KERNEL, reverse, max_block)?;
    let prepared = lstm_lens(&plan, lens)?;
    let x = lstm_input(&plan, Role::LstmInput, "gx", gx)?;
    let w = lstm_input(&plan, Role::LstmWeight, "w_hh", w_hh)?;
    let hidden = external(&plan.buffer(Role::LstmHidden))?;
    let gates = external(&plan.buffer(Role::LstmGates))?;
    let cells = external(&plan.buffer(Role::LstmCells))?;
    run_checked(
        std::slice::from_ref(&plan.forward),
        &prepared,
        &[&x, &w, &hidden, &gates, &cells],
    )?;
    Ok(LstmRun {
        hidden: hidden.read(),
        gates: gates.read(),
        cells: cells.read(),
    })
}

/// One LSTM direction's backward kernel: the gradient of the input projection (`[B][T][4H]`,
/// zero at padded frames) from the incoming gradient of the hidden states and the forward
/// pass's gates and cells ([`lstm_forward`]); arguments otherwise as there.
#[allow(clippy::too_many_arguments)]
pub fn lstm_backward<F: Logit>(
    grad_hidden: &[F],
    w_hh: &[F],
    gates: &[F],
    cells: &[F],
    lens: &[usize],
    dims: LstmDims,
    reverse: bool,
    max_block: u32,
) -> Result<Vec<F>, LatticeError> {
    let plan = launch::lstm_plan(dims, F::KERNEL, reverse, max_block)?;
    let prepared = lstm_lens(&plan, lens)?;
    let dh = lstm_input(&plan, Role::LstmGradHidden, "grad_hidden", grad_hidden)?;
    let w = lstm_input(&plan, Role::LstmWeight, "w_hh", w_hh)?;
    let g = lstm_input(&plan, Role::LstmGates, "gates", gates)?;
    let c = lstm_input(&plan, Role::LstmCells, "cells", cells)?;
    let dgx = external(&plan.buffer(Role::LstmGradInput))?;
    run_checked(
        std::slice::from_ref(&plan.backward),
        &prepared,
        &[&dh, &w, &g, &c, &dgx],
    )?;
    Ok(dgx.read())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs_launch(batch: usize) -> (Launch, HostMem, HostMem) {
        let dims = LatticeDims {
            batch,
            frames: 1,
            targets: 0,
            classes: 2,
        };
        let plan = launch::rnnt_plan(dims, crate::launch::KernelDType::F32, &Default::default())
            .expect("small plan");
        let log_p = HostMem::from_bytes(Role::LogP, &f64_bytes(&vec![-1.5; 2 * batch]), 0);
        (
            plan.forward[2].clone(),
            log_p,
            external(&plan.costs).unwrap(),
        )
    }

    fn run_one(l: &Launch, bufs: &[&HostMem]) -> Result<(), LatticeError> {
        let prepared = Prepared { buffers: vec![] };
        run_checked(std::slice::from_ref(l), &prepared, bufs)
    }

    #[test]
    fn a_launch_runs_and_writes_its_output() {
        let (l, log_p, costs) = costs_launch(300);
        run_one(&l, &[&log_p, &costs]).unwrap();
        assert_eq!(costs.read::<f64>(), vec![1.5; 300]);
    }

    #[test]
    fn writes_past_a_buffer_are_errors() {
        // The plan says 300 utterances; the costs buffer has room for 297: the last three
        // writes land in the guard bytes after it.
        let (l, log_p, _) = costs_launch(300);
        let small = HostMem::new(Role::Costs, 297 * 8, POISON, 0);
        let e = run_one(&l, &[&log_p, &small]).unwrap_err().to_string();
        assert!(e.contains("outside the Costs buffer"), "{e}");
    }

    #[test]
    fn arguments_are_checked_against_the_kernel() {
        let (l, log_p, costs) = costs_launch(4);
        let mut fewer = l.clone();
        fewer.args.pop();
        let e = run_one(&fewer, &[&log_p, &costs]).unwrap_err().to_string();
        assert!(e.contains("takes 4 arguments, the launch passes 3"), "{e}");
        let mut wrong = l.clone();
        wrong.args[3] = launch::Arg::I64(1);
        let e = run_one(&wrong, &[&log_p, &costs]).unwrap_err().to_string();
        assert!(e.contains("parameter 3 is 'i' of 4 bytes"), "{e}");
        let mut unknown = l;
        unknown.kernel = "rnnt_costs_f32".into();
        let e = run_one(&unknown, &[&log_p, &costs])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no kernel named rnnt_costs_f32"), "{e}");
    }

    #[test]
    fn geometry_beyond_cuda_limits_is_an_error() {
        let (mut l, log_p, costs) = costs_launch(4);
        l.block = [2048, 1, 1];
        let e = run_one(&l, &[&log_p, &costs]).unwrap_err().to_string();
        assert!(e.contains("invalid block of 2048 threads"), "{e}");
        l.block = [256, 1, 1];
        l.shared_bytes = 64 * 1024;
        let e = run_one(&l, &[&log_p, &costs]).unwrap_err().to_string();
        assert!(e.contains("exceed the default limit"), "{e}");
    }
}
