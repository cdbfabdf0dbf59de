//! SpecAugment: determinism, caps, warp properties, errors.

use candle_core::{DType, Device, Tensor};
use ent_features::{MaskValue, SpecAugment, SpecAugmentConfig};
use proptest::prelude::*;

fn flat(t: Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn ramp(frames: usize, bins: usize) -> Vec<f32> {
    (0..frames * bins).map(|i| 1.0 + i as f32 * 0.01).collect()
}

#[test]
fn same_seed_same_result_other_seed_other_result() {
    let aug = SpecAugment::new(SpecAugmentConfig::default()).unwrap();
    let x = Tensor::from_vec(ramp(300, 80), (300, 80), &Device::Cpu).unwrap();
    let a = flat(aug.apply(&x, 42).unwrap());
    let b = flat(aug.apply(&x, 42).unwrap());
    let c = flat(aug.apply(&x, 43).unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
}

/// The stream behind a seed is fixed forever: this records what seed 7 does to 200 x 40
/// features with the default policy. If it changes, every seeded experiment changes.
#[test]
fn seeded_stream_is_stable() {
    let aug = SpecAugment::new(SpecAugmentConfig::default()).unwrap();
    let mut x = ramp(200, 40);
    let done = aug.apply_in_place(&mut x, 200, 40, 7).unwrap();
    assert_eq!(done.warp, Some((79, 74)));
    assert_eq!(done.freq_masks, vec![9..34, 7..19]);
    assert_eq!(done.time_masks, vec![59..78, 82..84]); // 21 frames <= 20% of 200
    let again = aug.apply_in_place(&mut ramp(200, 40), 200, 40, 7).unwrap();
    assert_eq!(done, again);
}

#[test]
fn masks_are_filled_and_keep_dtype_and_shape() {
    let cfg = SpecAugmentConfig {
        time_warp: 0,
        mask_value: MaskValue::Constant(-7.0),
        ..Default::default()
    };
    let aug = SpecAugment::new(cfg).unwrap();
    let x = ramp(120, 30);
    let mut y = x.clone();
    let done = aug.apply_in_place(&mut y, 120, 30, 3).unwrap();
    for t in 0..120 {
        for f in 0..30 {
            let masked = done.freq_masks.iter().any(|r| r.contains(&f))
                || done.time_masks.iter().any(|r| r.contains(&t));
            let v = y[t * 30 + f];
            if masked {
                assert_eq!(v, -7.0);
            } else {
                assert_eq!(v, x[t * 30 + f]);
            }
        }
    }
    let t = Tensor::from_vec(x, (120, 30), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    let out = aug.apply(&t, 3).unwrap();
    assert_eq!(out.dtype(), DType::BF16);
    assert_eq!(out.dims(), &[120, 30]);
}

#[test]
fn mean_mask_value_is_the_mean() {
    let cfg = SpecAugmentConfig {
        time_warp: 0,
        time_masks: 0,
        mask_value: MaskValue::Mean,
        ..Default::default()
    };
    let aug = SpecAugment::new(cfg).unwrap();
    let x = ramp(10, 40);
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
    let mut y = x.clone();
    let done = aug.apply_in_place(&mut y, 10, 40, 1).unwrap();
    let f = done
        .freq_masks
        .iter()
        .find(|r| !r.is_empty())
        .unwrap()
        .start;
    assert!((y[f] as f64 - mean).abs() < 1e-5);
}

#[test]
fn huge_settings_do_not_overflow() {
    let aug = SpecAugment::new(SpecAugmentConfig {
        time_warp: usize::MAX,
        max_freq_width: usize::MAX,
        max_time_width: usize::MAX,
        ..Default::default()
    })
    .unwrap();
    let mut x = ramp(50, 8);
    let done = aug.apply_in_place(&mut x, 50, 8, 1).unwrap();
    assert_eq!(done.warp, None);
    assert!(done.time_masks.iter().all(|r| r.len() <= 10));
}

#[test]
fn bad_config_and_shapes_are_errors() {
    assert!(
        SpecAugment::new(SpecAugmentConfig {
            max_time_proportion: 1.5,
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        SpecAugment::new(SpecAugmentConfig {
            mask_value: MaskValue::Constant(f32::NAN),
            ..Default::default()
        })
        .is_err()
    );
    let aug = SpecAugment::new(SpecAugmentConfig::default()).unwrap();
    assert!(aug.apply_in_place(&mut [0.0; 10], 3, 4, 0).is_err());
    let x = Tensor::zeros((2, 3, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(
        aug.apply(&x, 0)
            .unwrap_err()
            .to_string()
            .contains("[frames, bins]")
    );
    // Empty inputs are returned as they are.
    assert_eq!(
        aug.apply_in_place(&mut [], 0, 80, 0)
            .unwrap()
            .time_masks
            .len(),
        0
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Caps hold for any size, policy and seed: each frequency mask is at most F wide, the time
    /// masks together cover at most floor(p * frames) frames, each at most T.
    #[test]
    fn caps_hold(
        frames in 0usize..400, bins in 1usize..100, seed in any::<u64>(),
        fm in 0usize..4, fw in 0usize..40, tm in 0usize..5, tw in 0usize..150,
        p in 0.0f32..=1.0, w in 0usize..10,
    ) {
        let cfg = SpecAugmentConfig {
            freq_masks: fm, max_freq_width: fw, time_masks: tm, max_time_width: tw,
            max_time_proportion: p, time_warp: w, mask_value: MaskValue::Zero,
        };
        let aug = SpecAugment::new(cfg).unwrap();
        let mut x = ramp(frames, bins);
        let done = aug.apply_in_place(&mut x, frames, bins, seed).unwrap();
        prop_assert!(x.iter().all(|v| v.is_finite()));
        for r in &done.freq_masks {
            prop_assert!(r.len() <= fw.min(bins) && r.end <= bins);
        }
        let budget = (p as f64 * frames as f64).floor() as usize;
        let mut covered = vec![false; frames];
        for r in &done.time_masks {
            prop_assert!(r.len() <= tw.min(budget) && r.end <= frames);
            for t in r.clone() { covered[t] = true; }
        }
        prop_assert!(covered.iter().filter(|&&c| c).count() <= budget);
        if let Some((c, d)) = done.warp {
            prop_assert!(c >= w && c + w < frames && d.abs_diff(c) <= w);
            prop_assert!(d >= 1 && d + 1 < frames);
        }
    }

    /// The warp moves frames but keeps the first and last, keeps constant features constant,
    /// and never leaves the range of the input (linear interpolation).
    #[test]
    fn warp_interpolates(frames in 12usize..200, bins in 1usize..10, seed in any::<u64>()) {
        let cfg = SpecAugmentConfig {
            freq_masks: 0, time_masks: 0, time_warp: 5, ..Default::default()
        };
        let aug = SpecAugment::new(cfg).unwrap();
        let x: Vec<f32> = (0..frames * bins).map(|i| ((i * 7919) % 101) as f32).collect();
        let mut y = x.clone();
        aug.apply_in_place(&mut y, frames, bins, seed).unwrap();
        prop_assert_eq!(&y[..bins], &x[..bins]);
        prop_assert_eq!(&y[(frames - 1) * bins..], &x[(frames - 1) * bins..]);
        prop_assert!(y.iter().all(|&v| (0.0..=100.0).contains(&v)));
        let mut c = vec![3.5f32; frames * bins];
        aug.apply_in_place(&mut c, frames, bins, seed).unwrap();
        prop_assert!(c.iter().all(|&v| v == 3.5));
    }
}
