//! The single-op CPU linear layer, strided convolution, layer norm, softmax, Swish and
//! depthwise convolution against their plain-op references (candle operations and autograd): outputs and every gradient in f64
//! and f32, over more rows than one parallel block; f64 finite differences on the fused ops'
//! weights; extreme inputs; and results that do not depend on the number of threads.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Module;
use candle_nn::{VarBuilder, VarMap};
use ent_model::nn::{LayerNorm, Linear, conv2d, depthwise_conv, softmax, swish};
use ent_model::testing::{
    conv2d_unfused, depthwise_conv_unfused, layer_norm_unfused, linear_unfused, softmax_unfused,
    swish_unfused,
};

use crate::max_diff;

type Op<'a> = Box<dyn Fn(&[Tensor]) -> Tensor + 'a>;

/// `sum(f(inputs) * r)` and its gradient with respect to each input.
fn value_and_grads(f: &Op, inputs: &[Tensor], r: &Tensor) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|x| Var::from_tensor(x).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts);
    let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let grads = vars.iter().map(|v| g.get(v).unwrap().clone()).collect();
    (y, grads)
}

/// Fused and unfused agree within `tol` relative to each tensor's largest entry.
fn agree(name: &str, fused: &Op, plain: &Op, inputs: &[Tensor], tol: f64) {
    let r = randn(plain(inputs).dims(), 1.0, inputs[0].dtype());
    let (ya, ga) = value_and_grads(fused, inputs, &r);
    let (yb, gb) = value_and_grads(plain, inputs, &r);
    let dtype = inputs[0].dtype();
    let scale = |t: &Tensor| max_diff(t, &t.zeros_like().unwrap()).max(1.0);
    assert!(
        max_diff(&ya, &yb) <= tol * scale(&yb),
        "{name} {dtype:?}: output differs by {}",
        max_diff(&ya, &yb)
    );
    for (i, (a, b)) in ga.iter().zip(&gb).enumerate() {
        let d = max_diff(a, b);
        assert!(
            d <= tol * scale(b),
            "{name} {dtype:?}: gradient {i} differs by {d}"
        );
    }
}

/// Seeded Gaussian inputs: each call on a test's thread draws from the next seed, so every
/// test sees the same inputs on every run.
fn randn(shape: &[usize], std: f64, dtype: DType) -> Tensor {
    thread_local!(static SEED: std::cell::Cell<u64> = const { std::cell::Cell::new(100) });
    let seed = SEED.with(|s| {
        let v = s.get();
        s.set(v + 1);
        v
    });
    crate::seeded_randn(shape, std, seed)
        .to_dtype(dtype)
        .unwrap()
}

#[test]
fn fused_ops_equal_their_references() {
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 2e-5)] {
        // 3 x 50 = 150 rows: two full blocks of 64 and a partial one.
        let x = randn(&[3, 50, 24], 2.0, dtype);
        let w = (randn(&[24], 0.5, dtype) + 1.0).unwrap();
        let b = randn(&[24], 0.5, dtype);
        let ln = LayerNorm::from_parts(w.clone(), b.clone(), 1e-5);
        let ln_fused: Op = Box::new(|t| {
            LayerNorm::from_parts(t[1].clone(), t[2].clone(), 1e-5)
                .forward(&t[0])
                .unwrap()
        });
        let ln_plain: Op = Box::new(|t| {
            layer_norm_unfused(
                &LayerNorm::from_parts(t[1].clone(), t[2].clone(), 1e-5),
                &t[0],
            )
            .unwrap()
        });
        assert!(
            max_diff(
                &ln.forward(&x).unwrap(),
                &layer_norm_unfused(&ln, &x).unwrap()
            ) < 1e-4
        );
        agree("layer norm", &ln_fused, &ln_plain, &[x.clone(), w, b], tol);

        // A linear layer on a [B, T, in] input, with and without a bias.
        let x = randn(&[3, 50, 7], 1.0, dtype);
        let (w, b) = (randn(&[5, 7], 0.5, dtype), randn(&[5], 0.5, dtype));
        let li_fused: Op = Box::new(|t| {
            Linear::new(t[1].clone(), Some(t[2].clone()))
                .forward(&t[0])
                .unwrap()
        });
        let li_plain: Op = Box::new(|t| {
            linear_unfused(&Linear::new(t[1].clone(), Some(t[2].clone())), &t[0]).unwrap()
        });
        agree(
            "linear",
            &li_fused,
            &li_plain,
            &[x.clone(), w.clone(), b],
            tol,
        );
        let nb_fused: Op = Box::new(|t| Linear::new(t[1].clone(), None).forward(&t[0]).unwrap());
        let nb_plain: Op =
            Box::new(|t| linear_unfused(&Linear::new(t[1].clone(), None), &t[0]).unwrap());
        agree("linear without bias", &nb_fused, &nb_plain, &[x, w], tol);

        // Strided convolutions as the filterbank front end runs them (sizes where candle's own
        // backward pass is right: (size - kernel) divisible by the stride), and stride 1.
        for (x_shape, w_shape, stride) in [
            ([2, 1, 13, 11], [4, 1, 3, 3], 2),
            ([3, 4, 11, 9], [5, 4, 3, 3], 2),
            ([2, 3, 6, 7], [2, 3, 2, 3], 1),
            ([2, 3, 6, 7], [2, 3, 3, 2], 1),
        ] {
            let x = randn(&x_shape, 1.0, dtype);
            let w = randn(&w_shape, 0.5, dtype);
            let b = randn(&[w_shape[0]], 0.5, dtype);
            let cv_fused: Op = Box::new(|t| conv2d(&t[0], &t[1], Some(&t[2]), stride).unwrap());
            let cv_plain: Op =
                Box::new(|t| conv2d_unfused(&t[0], &t[1], Some(&t[2]), stride).unwrap());
            agree("conv2d", &cv_fused, &cv_plain, &[x, w, b], tol);
        }

        // Attention scores with masked (-1e9) keys, as the conformer feeds them.
        let mut s = randn(&[2, 3, 40, 40], 3.0, dtype);
        let mask: Vec<f64> = (0..40).map(|k| if k < 31 { 0.0 } else { -1e9 }).collect();
        let mask = Tensor::new(mask, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        s = s.broadcast_add(&mask).unwrap();
        let sm_fused: Op = Box::new(|t| softmax(&t[0], 3).unwrap());
        let sm_plain: Op = Box::new(|t| softmax_unfused(&t[0], 3).unwrap());
        agree("softmax", &sm_fused, &sm_plain, &[s], tol);

        // Swish over a range that overflows a naive exp(-x) in f32.
        let mut v = randn(&[5, 70, 9], 4.0, dtype).flatten_all().unwrap();
        let extreme = Tensor::new(
            &[-200.0f64, -90.0, -30.0, 0.0, 30.0, 90.0, 200.0],
            &Device::Cpu,
        )
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
        v = Tensor::cat(&[&v, &extreme], 0).unwrap();
        let sw_fused: Op = Box::new(|t| swish(&t[0]).unwrap());
        let sw_plain: Op = Box::new(|t| swish_unfused(&t[0]).unwrap());
        agree("swish", &sw_fused, &sw_plain, &[v], tol);

        // Kernel 15 over sequences shorter and longer than it; an even kernel too.
        for (t_len, k) in [(40, 15), (9, 15), (12, 4)] {
            let y = randn(&[3, t_len, 10], 1.0, dtype);
            let w = randn(&[k, 10], 0.5, dtype);
            let b = randn(&[10], 0.5, dtype);
            let dw_fused: Op = Box::new(|t| depthwise_conv(&t[0], &t[1], &t[2]).unwrap());
            let dw_plain: Op = Box::new(|t| depthwise_conv_unfused(&t[0], &t[1], &t[2]).unwrap());
            agree("depthwise", &dw_fused, &dw_plain, &[y, w, b], tol);
        }
    }
}

/// Central differences in f64 of `sum(f(x) * r)` on every weight of the fused layer norm and
/// depthwise convolution, and on a sample of the inputs of every op.
#[test]
fn fused_ops_match_finite_differences() {
    let dt = DType::F64;
    let cases: Vec<(&str, Op, Vec<Tensor>)> = vec![
        (
            "conv2d",
            Box::new(|t: &[Tensor]| conv2d(&t[0], &t[1], Some(&t[2]), 2).unwrap()),
            vec![
                randn(&[2, 2, 8, 7], 1.0, dt),
                randn(&[3, 2, 3, 3], 0.5, dt),
                randn(&[3], 0.5, dt),
            ],
        ),
        (
            "linear",
            Box::new(|t: &[Tensor]| {
                Linear::new(t[1].clone(), Some(t[2].clone()))
                    .forward(&t[0])
                    .unwrap()
            }),
            vec![
                randn(&[2, 40, 4], 1.0, dt),
                randn(&[3, 4], 0.5, dt),
                randn(&[3], 0.5, dt),
            ],
        ),
        (
            "layer norm",
            Box::new(|t: &[Tensor]| {
                LayerNorm::from_parts(t[1].clone(), t[2].clone(), 1e-5)
                    .forward(&t[0])
                    .unwrap()
            }),
            vec![
                randn(&[70, 6], 2.0, dt),
                (randn(&[6], 0.5, dt) + 1.0).unwrap(),
                randn(&[6], 0.5, dt),
            ],
        ),
        (
            "softmax",
            Box::new(|t: &[Tensor]| softmax(&t[0], 1).unwrap()),
            vec![randn(&[70, 5], 2.0, dt)],
        ),
        (
            "swish",
            Box::new(|t: &[Tensor]| swish(&t[0]).unwrap()),
            vec![randn(&[200], 3.0, dt)],
        ),
        (
            "depthwise",
            Box::new(|t: &[Tensor]| depthwise_conv(&t[0], &t[1], &t[2]).unwrap()),
            vec![
                randn(&[2, 11, 3], 1.0, dt),
                randn(&[5, 3], 0.5, dt),
                randn(&[3], 0.5, dt),
            ],
        ),
    ];
    let eps = 1e-6;
    for (name, f, inputs) in &cases {
        let r = randn(f(inputs).dims(), 1.0, dt);
        let total = |ins: &[Tensor]| -> f64 {
            (f(ins) * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let (_, grads) = value_and_grads(f, inputs, &r);
        for (which, g) in grads.iter().enumerate() {
            let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let base = inputs[which]
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let step = if which == 0 { 7 } else { 1 };
            for i in (0..base.len()).step_by(step) {
                let bumped = |by: f64| {
                    let mut v = base.clone();
                    v[i] += by;
                    let mut ins = inputs.clone();
                    ins[which] = Tensor::from_vec(v, inputs[which].dims(), &Device::Cpu).unwrap();
                    total(&ins)
                };
                let fd = (bumped(eps) - bumped(-eps)) / (2.0 * eps);
                assert!(
                    (fd - g[i]).abs() <= 1e-6 * (1.0 + fd.abs()),
                    "{name}: d input {which} [{i}]: {} vs finite difference {fd}",
                    g[i]
                );
            }
        }
    }
}

/// Fixed f32 weights (seed 7), the same whichever thread asks.
fn randn_fixed(shape: &[usize]) -> Tensor {
    crate::seeded_randn(shape, 0.5, 7)
        .to_dtype(DType::F32)
        .unwrap()
}

/// One thread or four: the same bits from every fused op, forward and backward.
#[test]
fn fused_ops_do_not_depend_on_threads() {
    let x = randn(&[4, 90, 16], 2.0, DType::F32);
    let w = randn(&[15, 16], 0.5, DType::F32);
    let b = randn(&[16], 0.5, DType::F32);
    let r = randn(&[4, 90, 16], 1.0, DType::F32);
    let run = || {
        let vm = VarMap::new();
        let ln =
            LayerNorm::new(16, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let lin = Linear::new(randn_fixed(&[16, 16]), Some(randn_fixed(&[16])));
        let f: Op = Box::new(|t| {
            let y = lin.forward(&ln.forward(&t[0]).unwrap()).unwrap();
            let y = depthwise_conv(&y, &t[1], &t[2]).unwrap();
            softmax(&swish(&y).unwrap(), 2).unwrap()
        });
        let (y, g) = value_and_grads(&f, &[x.clone(), w.clone(), b.clone()], &r);
        let bits = crate::bits;
        let mut out = vec![bits(&y)];
        out.extend(g.iter().map(bits));
        out
    };
    let on = |n: usize| crate::on_threads(n, run);
    assert_eq!(on(1), on(4));
}
