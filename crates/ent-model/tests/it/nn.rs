//! The differentiable building blocks against candle-nn's fused (forward-only) versions and
//! finite differences.

use crate::max_diff;
use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use ent_model::nn::{LayerNorm, ScalarMix, masked_mean, softmax};
use ent_testkit::{TensorExt, assert_gradient, central_differences_of};

#[test]
fn layer_norm_matches_candle_nn_and_has_gradients() {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let ln = LayerNorm::new(6, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    let x = Var::from_tensor(&Tensor::randn(0f32, 3.0, (4, 6), &dev).unwrap()).unwrap();
    let ours = ln.forward(x.as_tensor()).unwrap();
    let w = Tensor::ones(6, DType::F32, &dev).unwrap();
    let b = Tensor::zeros(6, DType::F32, &dev).unwrap();
    let fused = candle_nn::ops::layer_norm(x.as_tensor(), &w, &b, 1e-5).unwrap();
    assert!(max_diff(&ours, &fused) < 1e-5);
    let r = Tensor::randn(0f32, 1.0, (4, 6), &dev).unwrap();
    let grads = (ours * r).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_some());
    for (name, v) in vm.data().lock().unwrap().iter() {
        let g = grads
            .get(v)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert!(
            g.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0,
            "{name}"
        );
    }
}

#[test]
fn layer_norm_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let ln = LayerNorm::new(5, VarBuilder::from_varmap(&vm, DType::F64, &dev)).unwrap();
    let x0 = Tensor::randn(0f64, 2.0, (3, 5), &dev).unwrap();
    let r = Tensor::randn(0f64, 1.0, (3, 5), &dev).unwrap();
    let f = |x: &Tensor| {
        (ln.forward(x).unwrap() * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let x = Var::from_tensor(&x0).unwrap();
    let g = (ln.forward(x.as_tensor()).unwrap() * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = g
        .get(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let fds = central_differences_of(&x0, 1e-6, f);
    assert_gradient(&g, &fds, 1e-7, "layer norm input");
}

#[test]
fn softmax_matches_candle_nn() {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 5.0, (3, 4, 7), &dev).unwrap();
    let ours = softmax(&x, 2).unwrap();
    let fused = candle_nn::ops::softmax_last_dim(&x).unwrap();
    assert!(max_diff(&ours, &fused) < 1e-6);
    let s = ours.sum(D::Minus1).unwrap();
    assert!(max_diff(&s, &Tensor::ones((3, 4), DType::F32, &dev).unwrap()) < 1e-6);
}

#[test]
fn scalar_mix_starts_as_the_mean_and_learns() {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let mix = ScalarMix::new(3, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    let h = Tensor::randn(0f32, 1.0, (3, 2, 4, 5), &dev).unwrap();
    let y = mix.forward(&h).unwrap();
    let mean = h.mean(0).unwrap();
    assert!(max_diff(&y, &mean) < 1e-6);
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    for (name, v) in vm.data().lock().unwrap().iter() {
        let g = grads.get(v).unwrap().abs_sum();
        assert!(g > 0.0, "{name} has no gradient");
    }
}

#[test]
fn masked_mean_ignores_padding() {
    let dev = Device::Cpu;
    let x = Tensor::new(&[[[1f32], [3.], [100.]], [[2.], [7.], [9.]]], &dev).unwrap();
    let m = masked_mean(&x, &[2, 3])
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(m, vec![2.0, 6.0]);
}
