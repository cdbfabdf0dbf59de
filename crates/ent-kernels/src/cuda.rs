//! The CUDA executor (feature `cuda`): the [launch plans](crate::plan) run on candle's CUDA
//! device and stream, with the kernels' PTX embedded in the binary and loaded once per device
//! (`CudaDevice::get_or_load_custom_func`, cached by module name); and the LSTM recurrence's
//! entry points on candle's CUDA storages, what ent-model's LSTM op runs on a GPU.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use candle_core::{CudaDevice, CudaStorage, DType, Layout};
use half::{bf16, f16};

use crate::error::KernelError;
use crate::plan::{
    self, ArgValue, BufferSpec, Elem, Executor, Init, KernelDType, Launch, LstmDims, LstmPlan,
    Plan, Prepared, Role, Uploads,
};

/// PTX of `kernels/rnnt.cu`, `kernels/pool.cu` and `kernels/lstm.cu`, compiled by build.rs.
const RNNT_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/rnnt.ptx"));
const POOL_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/pool.ptx"));
const LSTM_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/lstm.ptx"));

/// The module (name, PTX) that holds an entry point.
fn module(kernel: &str) -> (&'static str, &'static str) {
    if kernel.starts_with("pool_") {
        ("ent_kernels_pool", POOL_PTX)
    } else if kernel.starts_with("lstm_") {
        ("ent_kernels_lstm", LSTM_PTX)
    } else {
        ("ent_kernels_rnnt", RNNT_PTX)
    }
}

/// The kernels' name for a candle dtype (f32, f64, f16, bf16).
pub fn kernel_dtype(dtype: DType) -> Result<KernelDType, KernelError> {
    KernelDType::of(dtype)
}

/// Plans run on one device's stream.
#[derive(Debug)]
pub struct Cuda {
    dev: CudaDevice,
    stream: Arc<CudaStream>,
}

impl Cuda {
    /// The executor of `dev`'s stream.
    pub fn new(dev: &CudaDevice) -> Self {
        Cuda {
            dev: dev.clone(),
            stream: dev.cuda_stream(),
        }
    }

    fn address_of<T>(&self, s: &CudaSlice<T>) -> u64 {
        // The guard records a read event for other streams; everything here runs in order on
        // candle's one stream.
        s.device_ptr(&self.stream).0
    }
}

impl Executor for Cuda {
    type Mem = CudaSlice<u8>;
    type Error = candle_core::Error;

    fn alloc(&mut self, spec: &BufferSpec) -> candle_core::Result<CudaSlice<u8>> {
        match spec.init {
            Init::Zeroed => self.dev.alloc_zeros::<u8>(spec.bytes()),
            // SAFETY: scratch whose cells are all written before they are read (the plan's
            // contract, checked by the emulated executor, which fills it with NaN).
            Init::Uninit => unsafe { self.dev.alloc::<u8>(spec.bytes()) },
        }
    }

    fn upload(&mut self, _role: Role, bytes: &[u8]) -> candle_core::Result<CudaSlice<u8>> {
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().max(8), 0);
        self.dev.clone_htod(&padded)
    }

    fn address(&self, mem: &CudaSlice<u8>) -> u64 {
        self.address_of(mem)
    }

    fn launch(&mut self, l: &Launch, args: &[ArgValue]) -> candle_core::Result<()> {
        let (name, ptx) = module(&l.kernel);
        let func = self.dev.get_or_load_custom_func(&l.kernel, name, ptx)?;
        let mut b = func.builder();
        for a in args {
            match a {
                ArgValue::Ptr(p) => b.arg(p),
                ArgValue::I64(v) => b.arg(v),
                ArgValue::I32(v) => b.arg(v),
                ArgValue::F32(v) => b.arg(v),
                ArgValue::F64(v) => b.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: (l.grid[0], l.grid[1], l.grid[2]),
            block_dim: (l.block[0], l.block[1], l.block[2]),
            shared_mem_bytes: l.shared_bytes,
        };
        // SAFETY: the plan's arguments follow the entry point's parameter list (checked
        // against the kernels' own signatures by the emulated executor), every buffer they
        // name is alive until the stream has run the launch (the caller holds them), and the
        // geometry is within the plan's checked limits.
        unsafe { b.launch(cfg) }.map_err(|e| KernelError::Launch {
            kernel: l.kernel.clone(),
            reason: e.to_string(),
        })?;
        Ok(())
    }
}

/// The device address of a contiguous tensor's storage at its layout's offset.
pub fn storage_address(x: &Cuda, s: &CudaStorage, l: &Layout) -> candle_core::Result<u64> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg("lattice losses need contiguous tensors"))?;
    macro_rules! at {
        ($t:ty) => {
            s.as_cuda_slice::<$t>()?
                .slice(start..end)
                .device_ptr(&x.stream)
                .0
        };
    }
    Ok(match s.dtype() {
        DType::F32 => at!(f32),
        DType::F64 => at!(f64),
        DType::F16 => at!(f16),
        DType::BF16 => at!(bf16),
        DType::U32 => at!(u32),
        d => Err(KernelError::DType {
            arg: "logits",
            dtype: format!("{d:?}"),
            expected: "f32, f16, bf16, f64",
        })?,
    })
}

/// A new storage of `n` elements of `elem` on `dev`.
pub fn alloc_storage(
    dev: &CudaDevice,
    elem: Elem,
    n: usize,
    init: Init,
) -> candle_core::Result<CudaStorage> {
    macro_rules! new {
        ($t:ty) => {{
            let slice = match init {
                Init::Zeroed => dev.alloc_zeros::<$t>(n)?,
                // SAFETY: the kernel writes every element (the emulated tests poison this
                // buffer with NaN and check every cell).
                Init::Uninit => unsafe { dev.alloc::<$t>(n)? },
            };
            CudaStorage::wrap_cuda_slice(slice, dev.clone())
        }};
    }
    Ok(match elem {
        Elem::F32 | Elem::Logit(KernelDType::F32) => new!(f32),
        Elem::F64 | Elem::Logit(KernelDType::F64) => new!(f64),
        Elem::Logit(KernelDType::F16) => new!(f16),
        Elem::Logit(KernelDType::BF16) => new!(bf16),
        Elem::U32 => new!(u32),
    })
}

/// A plan with its uploads and scratch on the device: what the RNN-T forward pass leaves
/// for the gradient (node log-probabilities, alpha, beta, log P).
#[derive(Debug)]
pub struct OnDevice {
    /// The plan.
    pub plan: Plan,
    /// Its uploads and scratch.
    pub prepared: Prepared<CudaSlice<u8>>,
}

impl OnDevice {
    /// Uploads `uploads` and allocates the scratch of `plan` on `dev`.
    pub fn new(plan: Plan, uploads: &Uploads, dev: &CudaDevice) -> candle_core::Result<Self> {
        let prepared = plan::prepare(&mut Cuda::new(dev), &plan.buffers, uploads)?;
        Ok(OnDevice { plan, prepared })
    }

    /// Runs `launches` of the plan on the logits `(s, l)` and, when given, the incoming
    /// gradient; allocates the caller's buffers they write (costs, gradient) from the plan's
    /// specs and returns them.
    pub fn run(
        &self,
        launches: &[Launch],
        (s, l): (&CudaStorage, &Layout),
        grad_costs: Option<(&CudaStorage, &Layout)>,
    ) -> candle_core::Result<Outputs> {
        let mut x = Cuda::new(&s.device);
        let mut external = vec![(Role::Logits, storage_address(&x, s, l)?)];
        if let Some((g, gl)) = grad_costs {
            external.push((Role::GradCosts, storage_address(&x, g, gl)?));
        }
        let mut out = Outputs::default();
        for spec in [&self.plan.costs, &self.plan.grad] {
            if launches.iter().any(|l| l.roles().any(|r| r == spec.role)) {
                let mem = alloc_storage(&s.device, spec.elem, spec.len, spec.init)?;
                let at = storage_address(&x, &mem, &Layout::contiguous(spec.len))?;
                external.push((spec.role, at));
                match spec.role {
                    Role::Costs => out.costs = Some(mem),
                    _ => out.grad = Some(mem),
                }
            }
        }
        plan::run(&mut x, launches, &self.prepared, &external)?;
        Ok(out)
    }
}

/// The caller's buffers a run wrote.
#[derive(Debug, Default)]
pub struct Outputs {
    /// The costs, when the launches write them.
    pub costs: Option<CudaStorage>,
    /// The gradient, when the launches write it.
    pub grad: Option<CudaStorage>,
}

/// The error for an output the plan's launches did not write.
pub fn missing(what: &str) -> candle_core::Error {
    candle_core::Error::msg(format!("the plan's launches wrote no {what}"))
}

/// What the LSTM forward kernel writes: the hidden states (the op's output) and the gates and
/// cells the backward kernel reads, all `[B, T, *]` in the input's dtype.
#[derive(Debug)]
pub struct LstmForward {
    pub hidden: CudaStorage,
    pub gates: CudaStorage,
    pub cells: CudaStorage,
}

/// A contiguous storage's address, its element count checked against the plan's buffer.
fn lstm_buffer(
    x: &Cuda,
    plan: &LstmPlan,
    role: Role,
    (s, l): (&CudaStorage, &Layout),
) -> candle_core::Result<(Role, u64)> {
    let want = plan.buffer(role).len;
    if l.shape().elem_count() != want || s.dtype() != lstm_dtype(plan.dtype) {
        return Err(KernelError::Shape {
            arg: "lstm buffer",
            got: l.shape().dims().to_vec(),
            expected: format!("{want} elements of {:?} for {role:?}", plan.dtype),
        }
        .into());
    }
    Ok((role, storage_address(x, s, l)?))
}

fn lstm_dtype(d: KernelDType) -> DType {
    match d {
        KernelDType::F64 => DType::F64,
        _ => DType::F32,
    }
}

/// The plan for `dims` in `dtype` and its lengths on the device.
fn lstm_prepare(
    dev: &CudaDevice,
    dims: LstmDims,
    dtype: DType,
    lens: &[usize],
    reverse: bool,
) -> candle_core::Result<(LstmPlan, Prepared<CudaSlice<u8>>)> {
    let plan = plan::lstm_plan(dims, kernel_dtype(dtype)?, reverse, plan::LSTM_MAX_BLOCK)?;
    let uploads = plan::lstm_uploads(&plan, lens)?;
    let prepared = plan::prepare(
        &mut Cuda::new(dev),
        std::slice::from_ref(&plan.lens),
        &uploads,
    )?;
    Ok((plan, prepared))
}

/// One LSTM direction's forward kernel on candle's stream: `gx` `[B, T, 4H]` (input
/// projection with both biases) and `w_hh` `[4H, H]`, contiguous f32 or f64 on one device.
pub fn lstm_forward(
    gx: (&CudaStorage, &Layout),
    w_hh: (&CudaStorage, &Layout),
    dims: LstmDims,
    lens: &[usize],
    reverse: bool,
) -> candle_core::Result<LstmForward> {
    let dev = &gx.0.device;
    let (plan, prepared) = lstm_prepare(dev, dims, gx.0.dtype(), lens, reverse)?;
    let x = Cuda::new(dev);
    let mut out = Vec::new();
    let mut external = vec![
        lstm_buffer(&x, &plan, Role::LstmInput, gx)?,
        lstm_buffer(&x, &plan, Role::LstmWeight, w_hh)?,
    ];
    for role in [Role::LstmHidden, Role::LstmGates, Role::LstmCells] {
        let spec = plan.buffer(role);
        let mem = alloc_storage(dev, spec.elem, spec.len, Init::Uninit)?;
        external.push((
            role,
            storage_address(&x, &mem, &Layout::contiguous(spec.len))?,
        ));
        out.push(mem);
    }
    plan::run(
        &mut Cuda::new(dev),
        std::slice::from_ref(&plan.forward),
        &prepared,
        &external,
    )?;
    let mut out = out.into_iter();
    let mut next = || out.next().ok_or_else(|| missing("lstm output"));
    Ok(LstmForward {
        hidden: next()?,
        gates: next()?,
        cells: next()?,
    })
}

/// One LSTM direction's backward kernel: the gradient of `gx` (`[B, T, 4H]`, zero at padded
/// frames) from the incoming gradient of the hidden states and the forward pass's gates and
/// cells. `dW_hh` is the caller's GEMM over it.
pub fn lstm_backward(
    grad_hidden: (&CudaStorage, &Layout),
    w_hh: (&CudaStorage, &Layout),
    (gates, cells): (&CudaStorage, &CudaStorage),
    dims: LstmDims,
    lens: &[usize],
    reverse: bool,
) -> candle_core::Result<CudaStorage> {
    let dev = &grad_hidden.0.device;
    let (plan, prepared) = lstm_prepare(dev, dims, grad_hidden.0.dtype(), lens, reverse)?;
    let x = Cuda::new(dev);
    let g4 = plan.buffer(Role::LstmGates).len;
    let h = plan.buffer(Role::LstmCells).len;
    let spec = plan.buffer(Role::LstmGradInput);
    let dgx = alloc_storage(dev, spec.elem, spec.len, Init::Uninit)?;
    let external = vec![
        lstm_buffer(&x, &plan, Role::LstmGradHidden, grad_hidden)?,
        lstm_buffer(&x, &plan, Role::LstmWeight, w_hh)?,
        lstm_buffer(&x, &plan, Role::LstmGates, (gates, &Layout::contiguous(g4)))?,
        lstm_buffer(&x, &plan, Role::LstmCells, (cells, &Layout::contiguous(h)))?,
        (
            Role::LstmGradInput,
            storage_address(&x, &dgx, &Layout::contiguous(spec.len))?,
        ),
    ];
    plan::run(
        &mut Cuda::new(dev),
        std::slice::from_ref(&plan.backward),
        &prepared,
        &external,
    )?;
    Ok(dgx)
}
