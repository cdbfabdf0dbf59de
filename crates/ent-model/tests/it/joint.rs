//! The fused joint against the unfused one (candle operations and autograd) and against f64
//! finite differences: outputs and every gradient, shapes that do not fill the blocks, and
//! results that do not depend on the number of threads.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use ent_model::{Joint, SeededVarMap};

use crate::max_diff;

struct Case {
    joint: Joint,
    vars: SeededVarMap,
    h: Var,
    g: Var,
    weights: Tensor,
}

/// A joint with encoder width 5, predictor width 6, hidden `j`, `c` outputs, random inputs
/// `[b, t, 5]` and `[b, u1, 6]`, and random output weights for a scalar loss.
fn case(dtype: DType, (b, t, u1, j, c): (usize, usize, usize, usize, usize), seed: u64) -> Case {
    let dev = Device::Cpu;
    let vars = SeededVarMap::new(seed);
    let vb: VarBuilder = vars.var_builder(dtype, &dev);
    let joint = Joint::new(5, 6, j, c, vb).unwrap();
    let rand = |shape: &[usize], s: f64| {
        Tensor::randn(0f64, s, shape, &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    };
    Case {
        joint,
        vars,
        h: Var::from_tensor(&rand(&[b, t, 5], 1.0)).unwrap(),
        g: Var::from_tensor(&rand(&[b, u1, 6], 1.0)).unwrap(),
        weights: rand(&[b, t, u1, c], 1.0),
    }
}

/// `sum(logits * weights)` and its gradients: inputs `h`, `g`, then every parameter by name.
fn run(c: &Case, fused: bool) -> (Tensor, Vec<(String, Tensor)>) {
    let logits = if fused {
        c.joint.forward(c.h.as_tensor(), c.g.as_tensor()).unwrap()
    } else {
        ent_model::testing::joint_unfused(&c.joint, c.h.as_tensor(), c.g.as_tensor()).unwrap()
    };
    let loss = (&logits * &c.weights).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let mut out = vec![
        ("h".to_string(), grads.get(c.h.as_tensor()).unwrap().clone()),
        ("g".to_string(), grads.get(c.g.as_tensor()).unwrap().clone()),
    ];
    let data = c.vars.var_map().data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for n in names {
        let grad = grads
            .get(data[n].as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {n}"));
        out.push((n.clone(), grad.clone()));
    }
    (logits, out)
}

#[test]
fn fused_equals_unfused_in_f32_and_f64() {
    // T = 37 leaves a partial block of 5 frames after two of 16.
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 2e-5)] {
        for (shape, seed) in [
            ((3, 37, 5, 7, 4), 1),
            ((1, 16, 1, 3, 2), 2),
            ((2, 1, 9, 11, 31), 3),
        ] {
            let c = case(dtype, shape, seed);
            let (a, ga) = run(&c, true);
            let (b, gb) = run(&c, false);
            assert_eq!(a.dims(), b.dims());
            let scale = 1.0 + max_diff(&b, &b.zeros_like().unwrap());
            assert!(
                max_diff(&a, &b) <= tol * scale,
                "{dtype:?} {shape:?}: logits"
            );
            assert_eq!(ga.len(), gb.len());
            for ((name, x), (_, y)) in ga.iter().zip(&gb) {
                let scale = 1.0 + max_diff(y, &y.zeros_like().unwrap());
                let d = max_diff(x, y);
                assert!(
                    d <= tol * scale,
                    "{dtype:?} {shape:?}: d{name} differs by {d}"
                );
            }
        }
    }
}

/// Central differences in f64 on the fused joint's inputs and output weight.
#[test]
fn fused_gradients_match_finite_differences() {
    let c = case(DType::F64, (2, 19, 3, 4, 3), 7);
    let (_, grads) = run(&c, true);
    let loss = |h: &Tensor, g: &Tensor| -> f64 {
        let l = c.joint.forward(h, g).unwrap();
        (&l * &c.weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let eps = 1e-6;
    let bump = |t: &Tensor, i: usize, by: f64| -> Tensor {
        let mut v = t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        v[i] += by;
        Tensor::from_vec(v, t.dims(), t.device()).unwrap()
    };
    for (name, x) in [("h", c.h.as_tensor()), ("g", c.g.as_tensor())] {
        let analytic = grads
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .flatten_all()
            .unwrap();
        let analytic = analytic.to_vec1::<f64>().unwrap();
        for i in (0..x.elem_count()).step_by(7) {
            let (hp, hm) = (bump(x, i, eps), bump(x, i, -eps));
            let numeric = if name == "h" {
                (loss(&hp, c.g.as_tensor()) - loss(&hm, c.g.as_tensor())) / (2.0 * eps)
            } else {
                (loss(c.h.as_tensor(), &hp) - loss(c.h.as_tensor(), &hm)) / (2.0 * eps)
            };
            let err = (numeric - analytic[i]).abs();
            assert!(
                err <= 1e-6 * (1.0 + numeric.abs()),
                "d{name}[{i}]: {numeric} vs {}",
                analytic[i]
            );
        }
    }
    // The output weight: bump the variable itself.
    let data = c.vars.var_map().data().lock().unwrap();
    let (wname, w) = data
        .iter()
        .find(|(n, _)| n.ends_with("out.weight"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .unwrap();
    drop(data);
    let analytic = grads
        .iter()
        .find(|(n, _)| *n == wname)
        .unwrap()
        .1
        .flatten_all()
        .unwrap();
    let analytic = analytic.to_vec1::<f64>().unwrap();
    let base = w.as_tensor().copy().unwrap();
    for (i, &want) in analytic.iter().enumerate() {
        w.set(&bump(&base, i, eps)).unwrap();
        let up = loss(c.h.as_tensor(), c.g.as_tensor());
        w.set(&bump(&base, i, -eps)).unwrap();
        let down = loss(c.h.as_tensor(), c.g.as_tensor());
        let numeric = (up - down) / (2.0 * eps);
        assert!(
            (numeric - want).abs() <= 1e-6 * (1.0 + numeric.abs()),
            "dW[{i}]"
        );
    }
    w.set(&base).unwrap();
}

/// One thread or four: the same bits (every sum is taken in a fixed order).
#[test]
fn fused_results_do_not_depend_on_threads() {
    let c = case(DType::F32, (5, 40, 7, 9, 6), 11);
    let on = |threads: usize| crate::on_threads(threads, || run(&c, true));
    let (a, ga) = on(1);
    let (b, gb) = on(4);
    let bits = crate::bits;
    assert_eq!(bits(&a), bits(&b));
    for ((n, x), (_, y)) in ga.iter().zip(&gb) {
        assert_eq!(bits(x), bits(y), "d{n}");
    }
}
