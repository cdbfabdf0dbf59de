//! One way to write a custom candle op with a hand-written backward pass.
//!
//! An op implements [`CpuOp`]: its forward pass on the contiguous host data of its inputs,
//! generic over the [`Float`] type; optionally its forward pass on CUDA storages; and its
//! backward pass, by default on host copies of what it reads, generic over the float type
//! again. [`Op`] turns any of them into candle's `CustomOp1`, `CustomOp2` or `CustomOp3`: it
//! checks the inputs (one dtype, contiguous), dispatches on the dtype once, keeps what the
//! forward pass saves for the backward pass, and reports a lock poisoned by a panic in another
//! thread as an error.
//!
//! ```
//! use candle_core::{Device, Shape, Tensor};
//! use ent_kernels::op::{BackwardArgs, CpuOp, Forward, Fwd, Grads, Op};
//! use ent_kernels::Float;
//!
//! /// `y = x^2`.
//! struct Square;
//!
//! impl CpuOp for Square {
//!     type Saved = ();
//!     const NAME: &'static str = "square";
//!     fn forward<F: Float>(&self, x: &[&[F]], dims: &[&[usize]]) -> Fwd<F> {
//!         Ok(Forward::new(x[0].iter().map(|&v| v * v).collect(), dims[0]))
//!     }
//!     fn host_backward<F: Float>(&self, a: &BackwardArgs<'_>, _: &mut Option<()>) -> Grads<F> {
//!         let (x, g) = (a.input::<F>(0)?, a.grad::<F>()?);
//!         Ok(vec![Some(x.iter().zip(&g).map(|(&v, &g)| (v + v) * g).collect())])
//!     }
//! }
//!
//! # fn main() -> candle_core::Result<()> {
//! let x = candle_core::Var::new(&[1.0f32, -3.0], &Device::Cpu)?;
//! let y = x.apply_op1(Op::new(Square))?;
//! assert_eq!(y.to_vec1::<f32>()?, [1.0, 9.0]);
//! let g = y.sum_all()?.backward()?;
//! assert_eq!(g.get(&x).unwrap().to_vec1::<f32>()?, [2.0, -6.0]);
//! # Ok(()) }
//! ```

use std::sync::{Mutex, MutexGuard};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Shape, Tensor, bail};
use half::{bf16, f16};

use crate::Float;

/// What a forward pass gives: the output's values and shape, and what to keep for the backward
/// pass.
#[derive(Debug)]
pub struct Forward<F, S> {
    /// The output, row-major.
    pub out: Vec<F>,
    /// Its shape.
    pub shape: Shape,
    /// Kept for the backward pass, if anything.
    pub saved: Option<S>,
}

impl<F, S> Forward<F, S> {
    /// An output of `shape` that keeps nothing.
    pub fn new(out: Vec<F>, shape: impl Into<Shape>) -> Self {
        Forward {
            out,
            shape: shape.into(),
            saved: None,
        }
    }

    /// The same output, keeping `saved` for the backward pass.
    pub fn keep(self, saved: S) -> Self {
        Forward {
            saved: Some(saved),
            ..self
        }
    }
}

/// What [`CpuOp::forward`] returns.
pub type Fwd<F, S = ()> = candle_core::Result<Forward<F, S>>;

/// What [`CpuOp::host_backward`] returns: the gradient of each input, `None` for an input
/// that gets none.
pub type Grads<F> = candle_core::Result<Vec<Option<Vec<F>>>>;

/// A custom op: its forward pass on the host, generic over the float type; optionally on CUDA;
/// and its backward pass. Run through [`Op`].
pub trait CpuOp: Send + Sync + 'static {
    /// What the forward pass keeps for the backward pass (`()` for nothing).
    type Saved: Send + 'static;

    /// Whether f16 and bf16 inputs are taken: converted to f32, computed in f32, the output
    /// converted back. Otherwise f32 and f64 only.
    const HALVES: bool = false;

    /// The op's name, in errors.
    const NAME: &'static str;

    /// The name errors give: [`CpuOp::NAME`] unless an op names each instance.
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// The forward pass on the inputs' contiguous host data (all of one type `F`) and their
    /// dimensions.
    fn forward<F: Float>(&self, x: &[&[F]], dims: &[&[usize]]) -> Fwd<F, Self::Saved>;

    /// The forward pass on CUDA storages (contiguous, one dtype): by default an error.
    #[cfg(feature = "cuda")]
    #[allow(clippy::type_complexity)]
    fn cuda_forward(
        &self,
        x: &[(&candle_core::CudaStorage, &Layout)],
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape, Option<Self::Saved>)> {
        let _ = x;
        bail!("{}: no CUDA implementation", self.name())
    }

    /// The gradient of each input (`None` for an input that gets none), from the inputs, the
    /// output, the incoming gradient and the saved state (left in place, or taken). By
    /// default [`CpuOp::host_backward`] on host copies, for f32 and f64, the gradients placed on
    /// the inputs' devices.
    fn backward(
        &self,
        x: &[&Tensor],
        out: &Tensor,
        grad: &Tensor,
        saved: &mut Option<Self::Saved>,
    ) -> candle_core::Result<Vec<Option<Tensor>>> {
        backward_on_host(self, x, out, grad, saved)
    }

    /// The backward pass on host data, read through `a` as needed: by default an error.
    fn host_backward<F: Float>(
        &self,
        a: &BackwardArgs<'_>,
        saved: &mut Option<Self::Saved>,
    ) -> Grads<F> {
        let _ = (a, saved);
        bail!("{}: no backward pass", self.name())
    }
}

/// [`CpuOp::host_backward`] on host copies, for f32 and f64, the gradients placed on the
/// inputs' devices: the default [`CpuOp::backward`], for an op's own `backward` to fall back on.
pub fn backward_on_host<T: CpuOp + ?Sized>(
    op: &T,
    x: &[&Tensor],
    out: &Tensor,
    grad: &Tensor,
    saved: &mut Option<T::Saved>,
) -> candle_core::Result<Vec<Option<Tensor>>> {
    let a = BackwardArgs { x, out, grad };
    match x[0].dtype() {
        DType::F32 => wrap(x, op.host_backward::<f32>(&a, saved)?),
        DType::F64 => wrap(x, op.host_backward::<f64>(&a, saved)?),
        other => bail!("{}: no backward pass for {other:?}", op.name()),
    }
}

/// What a backward pass reads: the inputs, the output and the incoming gradient, copied to
/// the host when asked for.
#[derive(Debug)]
pub struct BackwardArgs<'a> {
    /// The inputs of the forward pass.
    pub x: &'a [&'a Tensor],
    /// Its output.
    pub out: &'a Tensor,
    /// The incoming gradient of the output.
    pub grad: &'a Tensor,
}

impl BackwardArgs<'_> {
    /// Input `i`, flattened, on the host.
    pub fn input<F: Float>(&self, i: usize) -> candle_core::Result<Vec<F>> {
        host(self.x[i])
    }

    /// The output, flattened, on the host.
    pub fn output<F: Float>(&self) -> candle_core::Result<Vec<F>> {
        host(self.out)
    }

    /// The incoming gradient, flattened, on the host.
    pub fn grad<F: Float>(&self) -> candle_core::Result<Vec<F>> {
        host(self.grad)
    }

    /// The dimensions of input `i`.
    pub fn dims(&self, i: usize) -> &[usize] {
        self.x[i].dims()
    }
}

fn host<F: Float>(t: &Tensor) -> candle_core::Result<Vec<F>> {
    t.flatten_all()?.to_vec1::<F>()
}

/// Each gradient as a tensor of its input's shape and device.
fn wrap<F: Float>(
    x: &[&Tensor],
    grads: Vec<Option<Vec<F>>>,
) -> candle_core::Result<Vec<Option<Tensor>>> {
    grads
        .into_iter()
        .zip(x)
        .map(|(g, x)| {
            g.map(|g| Tensor::from_vec(g, x.shape(), x.device()))
                .transpose()
        })
        .collect()
}

/// A [`CpuOp`] as candle's custom op of one, two or three inputs, with the state its forward
/// pass keeps for its backward pass.
#[derive(Debug)]
pub struct Op<T: CpuOp> {
    op: T,
    saved: Mutex<Option<T::Saved>>,
}

impl<T: CpuOp> Op<T> {
    /// `op`, ready for `apply_op1`/`2`/`3`.
    pub fn new(op: T) -> Self {
        Op {
            op,
            saved: Mutex::new(None),
        }
    }

    /// The op.
    pub fn inner(&self) -> &T {
        &self.op
    }

    /// The saved state; a lock poisoned by a panic in another thread is an error.
    pub fn state(&self) -> candle_core::Result<MutexGuard<'_, Option<T::Saved>>> {
        self.saved.lock().map_err(|_| {
            candle_core::Error::msg(format!(
                "{}: its saved state was left behind by a panic in another thread",
                self.op.name()
            ))
        })
    }

    /// The backward pass as candle runs it: the gradients of `x` from the output `out` and its
    /// incoming gradient `grad`, with the saved state.
    pub fn gradients(
        &self,
        x: &[&Tensor],
        out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Vec<Option<Tensor>>> {
        let mut saved = self.state()?;
        let g = self.op.backward(x, out, grad, &mut saved)?;
        if g.len() != x.len() {
            bail!(
                "{}: {} gradients for {} inputs",
                self.op.name(),
                g.len(),
                x.len()
            );
        }
        Ok(g)
    }

    fn cpu(&self, inputs: &[(&CpuStorage, &Layout)]) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.op.name();
        let dims: Vec<&[usize]> = inputs.iter().map(|(_, l)| l.dims()).collect();
        let dtype = inputs[0].0.dtype();
        let (out, shape, saved) = match dtype {
            DType::F32 => self.run::<f32>(inputs, &dims)?,
            DType::F64 => self.run::<f64>(inputs, &dims)?,
            DType::F16 | DType::BF16 if T::HALVES => {
                let wide: Vec<Vec<f32>> = inputs
                    .iter()
                    .map(|&(s, l)| widen(name, s, l))
                    .collect::<candle_core::Result<_>>()?;
                let x: Vec<&[f32]> = wide.iter().map(Vec::as_slice).collect();
                let f = self.op.forward::<f32>(&x, &dims)?;
                let out = match dtype {
                    DType::F16 => {
                        CpuStorage::F16(f.out.iter().map(|&v| f16::from_f32(v)).collect())
                    }
                    _ => CpuStorage::BF16(f.out.iter().map(|&v| bf16::from_f32(v)).collect()),
                };
                (out, f.shape, f.saved)
            }
            other => bail!("{name}: unsupported dtype {other:?}"),
        };
        *self.state()? = saved;
        Ok((out, shape))
    }

    #[allow(clippy::type_complexity)]
    fn run<F: Float>(
        &self,
        inputs: &[(&CpuStorage, &Layout)],
        dims: &[&[usize]],
    ) -> candle_core::Result<(CpuStorage, Shape, Option<T::Saved>)> {
        let x: Vec<&[F]> = inputs
            .iter()
            .enumerate()
            .map(|(i, &(s, l))| contiguous::<F>(self.op.name(), i, s, l))
            .collect::<candle_core::Result<_>>()?;
        let f = self.op.forward::<F>(&x, dims)?;
        if f.out.len() != f.shape.elem_count() {
            bail!(
                "{}: {} values for an output of shape {:?}",
                self.op.name(),
                f.out.len(),
                f.shape
            );
        }
        Ok((F::to_cpu_storage_owned(f.out), f.shape, f.saved))
    }

    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        inputs: &[(&candle_core::CudaStorage, &Layout)],
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        if let Some(i) = inputs.iter().position(|(_, l)| !l.is_contiguous()) {
            bail!("{}: input {i} is not contiguous", self.op.name());
        }
        let (out, shape, saved) = self.op.cuda_forward(inputs)?;
        *self.state()? = saved;
        Ok((out, shape))
    }
}

/// The contiguous data of input `i`, which must be of type `F`.
fn contiguous<'a, F: Float>(
    name: &str,
    i: usize,
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<&'a [F]> {
    if s.dtype() != F::DTYPE {
        bail!(
            "{name}: input {i} is {:?}, input 0 is {:?}",
            s.dtype(),
            F::DTYPE
        );
    }
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("{name}: input {i} is not contiguous");
    };
    Ok(&s.as_slice::<F>()?[start..end])
}

/// A half-precision input as f32.
fn widen(name: &str, s: &CpuStorage, l: &Layout) -> candle_core::Result<Vec<f32>> {
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("{name}: inputs must be contiguous");
    };
    Ok(match s {
        CpuStorage::F16(v) => v[start..end].iter().map(|x| x.to_f32()).collect(),
        CpuStorage::BF16(v) => v[start..end].iter().map(|x| x.to_f32()).collect(),
        other => bail!("{name}: input of {:?} among half inputs", other.dtype()),
    })
}

/// Exactly `N` gradients.
fn grads<const N: usize>(g: Vec<Option<Tensor>>) -> [Option<Tensor>; N] {
    let mut g = g.into_iter();
    std::array::from_fn(|_| g.next().flatten())
}

/// candle's `CustomOpN` for [`Op`]: the storages to [`Op::cpu`] and [`Op::cuda`] as slices,
/// the gradients from [`Op::gradients`] as a tuple.
macro_rules! custom_op {
    ($op:ident, $n:literal, $(($s:ident, $l:ident, $x:ident, $g:ident)),+) => {
        impl<T: CpuOp> candle_core::$op for Op<T> {
            fn name(&self) -> &'static str {
                self.op.name()
            }

            fn cpu_fwd(
                &self,
                $($s: &CpuStorage, $l: &Layout),+
            ) -> candle_core::Result<(CpuStorage, Shape)> {
                self.cpu(&[$(($s, $l)),+])
            }

            #[cfg(feature = "cuda")]
            fn cuda_fwd(
                &self,
                $($s: &candle_core::CudaStorage, $l: &Layout),+
            ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
                self.cuda(&[$(($s, $l)),+])
            }

            fn bwd(
                &self,
                $($x: &Tensor,)+
                res: &Tensor,
                grad: &Tensor,
            ) -> candle_core::Result<custom_op!(@ret $($g)+)> {
                let [$($g),+] = grads::<$n>(self.gradients(&[$($x),+], res, grad)?);
                Ok(custom_op!(@tuple $($g)+))
            }
        }
    };
    (@ret $g:ident) => { Option<Tensor> };
    (@ret $($g:ident)+) => { ($(custom_op!(@one $g)),+) };
    (@one $g:ident) => { Option<Tensor> };
    (@tuple $g:ident) => { $g };
    (@tuple $($g:ident)+) => { ($($g),+) };
}

custom_op!(CustomOp1, 1, (s1, l1, x1, g1));
custom_op!(CustomOp2, 2, (s1, l1, x1, g1), (s2, l2, x2, g2));
custom_op!(
    CustomOp3,
    3,
    (s1, l1, x1, g1),
    (s2, l2, x2, g2),
    (s3, l3, x3, g3)
);

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// `y = x * w + b`, elementwise, keeping `w` for the backward pass.
    struct Axpy;

    impl CpuOp for Axpy {
        type Saved = Vec<f64>;
        const HALVES: bool = true;

        const NAME: &'static str = "axpy";

        fn forward<F: Float>(&self, x: &[&[F]], dims: &[&[usize]]) -> Fwd<F, Vec<f64>> {
            let out = (0..x[0].len())
                .map(|i| x[0][i] * x[1][i] + x[2][i])
                .collect();
            let kept = x[1]
                .iter()
                .map(|&v| candle_core::WithDType::to_f64(v))
                .collect();
            Ok(Forward::new(out, dims[0]).keep(kept))
        }

        fn host_backward<F: Float>(
            &self,
            a: &BackwardArgs<'_>,
            saved: &mut Option<Vec<f64>>,
        ) -> Grads<F> {
            let Some(w) = saved.as_ref() else {
                bail!("axpy: nothing saved");
            };
            let (x, g) = (a.input::<F>(0)?, a.grad::<F>()?);
            let dx = g.iter().zip(w).map(|(&g, &w)| g * F::from_f64(w)).collect();
            let dw = g.iter().zip(&x).map(|(&g, &x)| g * x).collect();
            Ok(vec![Some(dx), Some(dw), Some(g)])
        }
    }

    #[test]
    fn forward_backward_and_the_saved_state() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::F64] {
            let x = candle_core::Var::new(&[1.0, 2.0, 3.0], &dev)?.to_dtype(dtype)?;
            let x = candle_core::Var::from_tensor(&x)?;
            let w = candle_core::Var::from_tensor(
                &Tensor::new(&[0.5, -1.0, 2.0], &dev)?.to_dtype(dtype)?,
            )?;
            let b = candle_core::Var::from_tensor(
                &Tensor::new(&[0.0, 1.0, 0.0], &dev)?.to_dtype(dtype)?,
            )?;
            let y = x.apply_op3(&w, &b, Op::new(Axpy))?;
            assert_eq!(y.to_dtype(DType::F64)?.to_vec1::<f64>()?, [0.5, -1.0, 6.0]);
            let g = y.sum_all()?.backward()?;
            let got = |v: &candle_core::Var| -> candle_core::Result<Vec<f64>> {
                g.get(v).unwrap().to_dtype(DType::F64)?.to_vec1::<f64>()
            };
            assert_eq!(got(&x)?, [0.5, -1.0, 2.0]);
            assert_eq!(got(&w)?, [1.0, 2.0, 3.0]);
            assert_eq!(got(&b)?, [1.0, 1.0, 1.0]);
        }
        // Halves are computed in f32 and come back in their own dtype.
        let h = Tensor::new(&[1.5f32, 2.0], &dev)?.to_dtype(DType::BF16)?;
        let y = h.apply_op3(&h, &h, Op::new(Axpy))?;
        assert_eq!(y.dtype(), DType::BF16);
        assert_eq!(y.to_dtype(DType::F32)?.to_vec1::<f32>()?, [3.75, 6.0]);
        Ok(())
    }

    #[test]
    fn mixed_dtypes_and_non_contiguous_inputs_are_errors() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let a = Tensor::new(&[1.0f32, 2.0], &dev)?;
        let b = Tensor::new(&[1.0f64, 2.0], &dev)?;
        let e = a.apply_op3(&b, &a, Op::new(Axpy)).unwrap_err().to_string();
        assert!(e.contains("axpy: input 1 is F64, input 0 is F32"), "{e}");
        let m = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &dev)?.t()?;
        let e = m.apply_op3(&m, &m, Op::new(Axpy)).unwrap_err().to_string();
        assert!(e.contains("axpy: input 0 is not contiguous"), "{e}");
        let i = Tensor::new(&[1u32, 2], &dev)?;
        let e = i.apply_op3(&i, &i, Op::new(Axpy)).unwrap_err().to_string();
        assert!(e.contains("axpy: unsupported dtype U32"), "{e}");
        Ok(())
    }

    #[test]
    fn a_poisoned_state_is_an_error() {
        let op = std::sync::Arc::new(Op::new(Axpy));
        let o = op.clone();
        let _ = std::thread::spawn(move || {
            let _g = o.state().unwrap();
            panic!("a panic while the state is held");
        })
        .join();
        let e = op.state().unwrap_err().to_string();
        assert!(
            e.contains("axpy: its saved state was left behind by a panic"),
            "{e}"
        );
    }
}
