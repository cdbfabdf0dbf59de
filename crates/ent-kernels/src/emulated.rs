//! The CUDA kernels of `kernels/` run on the CPU, for testing them without a GPU.
//!
//! With the feature `emulate`, the build compiles the kernels' own `.cu` sources as host C++
//! over `kernels/emu/emu.h`, an implementation of the CUDA built-ins they use with CUDA's
//! semantics (a thread per CUDA thread, warps of 32 with `__shfl_xor_sync`, block barriers
//! that release exited threads, `__syncthreads_or`, dynamic shared memory). [`Emu`] runs the
//! same [launch plans](crate::plan) as the CUDA executor, on host buffers ([`HostMem`]) that
//! stand in for device memory:
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

use crate::Float;
use crate::error::{KernelError, check_len};
use crate::plan::{
    self, ArgValue, BufferSpec, Executor, Init, KernelDType, Launch, LstmDims, LstmPlan, Plain,
    Prepared, Role, f64_bytes,
};

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
#[derive(Debug)]
pub struct HostMem {
    words: Vec<u128>,
    start: usize,
    len: usize,
    role: Role,
}

impl HostMem {
    /// `len` bytes filled with `fill`, `offset` bytes past a 16-byte boundary.
    pub fn new(role: Role, len: usize, fill: u8, offset: usize) -> Self {
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

    /// A copy of `data`, `offset` bytes past a 16-byte boundary.
    pub fn from_bytes(role: Role, data: &[u8], offset: usize) -> Self {
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

    /// Where the buffer's first byte is, as a kernel sees it.
    pub fn address(&self) -> u64 {
        self.all()[self.start..].as_ptr() as u64
    }

    /// The buffer's contents as values of `T`.
    pub fn read<T: Plain>(&self) -> Vec<T> {
        let n = self.len / std::mem::size_of::<T>();
        let base = self.all()[self.start..self.start + self.len].as_ptr();
        (0..n)
            .map(|i| {
                // SAFETY: element i lies inside the buffer's `len` bytes; `Plain` is sealed to
                // f32, f64, f16, bf16 and u32, which accept every bit pattern; the read is
                // unaligned-safe.
                unsafe { base.cast::<T>().add(i).read_unaligned() }
            })
            .collect()
    }

    /// An error if a kernel wrote outside the buffer.
    pub fn check(&self, after: &str) -> Result<(), KernelError> {
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
            Some(i) => Err(KernelError::Launch {
                kernel: after.to_string(),
                reason: format!(
                    "wrote outside the {:?} buffer ({} bytes), at byte {} of its allocation",
                    self.role, self.len, i
                ),
            }),
        }
    }
}

/// The bytes of `values`.
pub fn as_bytes<E: Plain>(values: &[E]) -> &[u8] {
    // SAFETY: `Plain` is sealed to plain numbers without padding, so their memory is
    // initialised bytes.
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
}

/// The emulated executor.
#[derive(Debug)]
pub struct Emu;

impl Executor for Emu {
    type Mem = HostMem;
    type Error = KernelError;

    fn alloc(&mut self, spec: &BufferSpec) -> Result<HostMem, KernelError> {
        let fill = match spec.init {
            Init::Zeroed => 0,
            Init::Uninit => POISON,
        };
        Ok(HostMem::new(spec.role, spec.bytes(), fill, 0))
    }

    fn upload(&mut self, role: Role, bytes: &[u8]) -> Result<HostMem, KernelError> {
        Ok(HostMem::from_bytes(role, bytes, 0))
    }

    fn address(&self, mem: &HostMem) -> u64 {
        mem.address()
    }

    fn launch(&mut self, l: &Launch, args: &[ArgValue]) -> Result<(), KernelError> {
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
        let name = CString::new(l.kernel.as_str()).map_err(|_| KernelError::Launch {
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
            return Err(KernelError::Launch {
                kernel: l.kernel.clone(),
                reason: msg.to_string_lossy().into_owned(),
            });
        }
        Ok(())
    }
}

/// Runs `launches` and checks every buffer's guards afterwards.
pub fn run_checked(
    launches: &[Launch],
    prepared: &Prepared<HostMem>,
    external: &[&HostMem],
) -> Result<(), KernelError> {
    let addresses: Vec<(Role, u64)> = external.iter().map(|m| (m.role, m.address())).collect();
    plan::run(&mut Emu, launches, prepared, &addresses)?;
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

/// The logits as a buffer, placed as `opts` says.
pub fn logits_mem<E: Plain>(logits: &[E], opts: &Options) -> HostMem {
    let offset = if opts.misalign_logits {
        std::mem::size_of::<E>()
    } else {
        0
    };
    HostMem::from_bytes(Role::Logits, as_bytes(logits), offset)
}

/// A caller-side buffer of the plan (costs, gradient), as the executor allocates scratch.
pub fn external(spec: &BufferSpec) -> Result<HostMem, KernelError> {
    Emu.alloc(spec)
}

/// The incoming gradient of each utterance's cost, `[B]` f64.
pub fn grad_costs_mem(grad_costs: &[f64], batch: usize) -> Result<HostMem, KernelError> {
    check_len("grad_costs", grad_costs.len(), batch)?;
    Ok(HostMem::from_bytes(
        Role::GradCosts,
        &f64_bytes(grad_costs),
        0,
    ))
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

/// The lengths upload of an LSTM plan, checked ([`plan::lstm_uploads`]).
fn lstm_lens(plan: &LstmPlan, lens: &[usize]) -> Result<Prepared<HostMem>, KernelError> {
    let uploads = plan::lstm_uploads(plan, lens)?;
    plan::prepare(&mut Emu, std::slice::from_ref(&plan.lens), &uploads)
}

/// A caller's input buffer of an LSTM plan, its length checked.
fn lstm_input<F: Float>(
    plan: &LstmPlan,
    role: Role,
    arg: &'static str,
    values: &[F],
) -> Result<HostMem, KernelError> {
    check_len(arg, values.len(), plan.buffer(role).len)?;
    Ok(HostMem::from_bytes(role, float_bytes(values), 0))
}

/// One LSTM direction's forward kernel (`kernels/lstm.cu`) over the input projection `gx`
/// (`[B][T][4H]`, both biases added) with recurrent weight `w_hh` (`[4H][H]`), utterance `b`
/// over its first `lens[b]` frames; `max_block` caps the threads per block (see
/// [`plan::lstm_plan`]).
pub fn lstm_forward<F: Float + Plain>(
    gx: &[F],
    w_hh: &[F],
    lens: &[usize],
    dims: LstmDims,
    reverse: bool,
    max_block: u32,
) -> Result<LstmRun<F>, KernelError> {
    let plan = plan::lstm_plan(dims, KernelDType::of(F::DTYPE)?, reverse, max_block)?;
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
pub fn lstm_backward<F: Float + Plain>(
    grad_hidden: &[F],
    w_hh: &[F],
    gates: &[F],
    cells: &[F],
    lens: &[usize],
    dims: LstmDims,
    reverse: bool,
    max_block: u32,
) -> Result<Vec<F>, KernelError> {
    let plan = plan::lstm_plan(dims, KernelDType::of(F::DTYPE)?, reverse, max_block)?;
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

/// The bytes of f32 or f64 values.
fn float_bytes<F: Float>(values: &[F]) -> &[u8] {
    // SAFETY: `Float` is sealed to f32 and f64, plain numbers without padding.
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs_launch(batch: usize) -> (Launch, HostMem, HostMem) {
        let dims = crate::LatticeDims {
            batch,
            frames: 1,
            targets: 0,
            classes: 2,
        };
        let plan =
            plan::rnnt_plan(dims, KernelDType::F32, &Default::default()).expect("small plan");
        let log_p = HostMem::from_bytes(Role::LogP, &f64_bytes(&vec![-1.5; 2 * batch]), 0);
        (
            plan.forward[2].clone(),
            log_p,
            external(&plan.costs).unwrap(),
        )
    }

    fn run_one(l: &Launch, bufs: &[&HostMem]) -> Result<(), KernelError> {
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
        wrong.args[3] = plan::Arg::I64(1);
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

    /// The plans name exactly the entry points compiled into the emulation (and, through `cargo
    /// xtask kernels --check`, into the PTX).
    #[test]
    fn plans_use_every_compiled_kernel() {
        let dims = crate::LatticeDims {
            batch: 1,
            frames: 1,
            targets: 1,
            classes: 4,
        };
        let mut planned = std::collections::BTreeSet::new();
        for dt in [
            KernelDType::F32,
            KernelDType::F64,
            KernelDType::F16,
            KernelDType::BF16,
        ] {
            let r = plan::rnnt_plan(dims, dt, &plan::RnntParams::default()).unwrap();
            let pool = plan::PoolParams {
                neutral: 0,
                mode: 0,
                neutral_term: 0,
                prob_clamp: 1e-8,
            };
            let p = plan::pool_plan(dims, dt, &pool).unwrap();
            for l in r
                .forward
                .iter()
                .chain(&r.gradient)
                .chain(&p.forward)
                .chain(&p.gradient)
            {
                planned.insert(l.kernel.clone());
            }
            if matches!(dt, KernelDType::F32 | KernelDType::F64) {
                let dims = plan::LstmDims {
                    batch: 1,
                    frames: 1,
                    hidden: 1,
                };
                let l = plan::lstm_plan(dims, dt, false, plan::LSTM_MAX_BLOCK).unwrap();
                planned.insert(l.forward.kernel);
                planned.insert(l.backward.kernel);
            }
        }
        let compiled: std::collections::BTreeSet<String> = kernel_names().into_iter().collect();
        assert_eq!(planned, compiled);
    }
}
