//! Global CMVN: statistics against a direct computation, merging, saving, normalising.

use candle_core::{Device, Tensor};
use ent_features::{CmvnStats, FeatureError, GlobalCmvn};

fn feats(frames: usize, dim: usize, seed: u64) -> Tensor {
    let mut rng = ent_common::rng::SplitMix64::new(seed);
    let v: Vec<f32> = (0..frames * dim)
        .map(|i| (rng.gaussian() * (1.0 + (i % dim) as f64) + (i % dim) as f64 * 3.0) as f32)
        .collect();
    Tensor::from_vec(v, (frames, dim), &Device::Cpu).unwrap()
}

/// A fresh folder per test (tests run in parallel), removed when the test ends.
fn tmp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ent-cmvn-")
        .tempdir()
        .unwrap()
}

#[test]
fn statistics_match_a_direct_computation() {
    let parts = [feats(50, 4, 1), feats(70, 4, 2), feats(3, 4, 3)];
    let mut stats = CmvnStats::new(4);
    for p in &parts {
        stats.accumulate(p).unwrap();
    }
    assert_eq!(stats.count, 123);
    let all: Vec<Vec<f32>> = parts
        .iter()
        .flat_map(|p| p.to_vec2::<f32>().unwrap())
        .collect();
    let (mean, var) = stats.mean_var().unwrap();
    for d in 0..4 {
        let col: Vec<f64> = all.iter().map(|r| r[d] as f64).collect();
        let m = col.iter().sum::<f64>() / col.len() as f64;
        let v = col.iter().map(|x| (x - m).powi(2)).sum::<f64>() / col.len() as f64;
        assert!((mean[d] - m).abs() < 1e-12 * (1.0 + m.abs()), "{d}");
        assert!(
            (var[d] - v).abs() < 1e-9 * (1.0 + v),
            "{d}: {} vs {v}",
            var[d]
        );
    }
}

#[test]
fn merging_equals_accumulating_everything() {
    let (a, b) = (feats(40, 3, 5), feats(60, 3, 6));
    let mut one = CmvnStats::new(3);
    one.accumulate(&a).unwrap();
    one.accumulate(&b).unwrap();
    let mut left = CmvnStats::new(3);
    left.accumulate(&a).unwrap();
    let mut right = CmvnStats::new(3);
    right.accumulate(&b).unwrap();
    left.merge(&right).unwrap();
    // Equal up to the order of the additions (one rounding per sum).
    assert_eq!(left.count, one.count);
    for (x, y) in left
        .sum
        .iter()
        .chain(&left.sum_sq)
        .zip(one.sum.iter().chain(&one.sum_sq))
    {
        assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{x} vs {y}");
    }
    assert!(left.merge(&CmvnStats::new(4)).is_err());
}

#[test]
fn save_and_load_round_trip_exactly() {
    let mut stats = CmvnStats::new(5);
    stats.accumulate(&feats(33, 5, 9)).unwrap();
    let dir = tmp_dir();
    let path = dir.path().join("stats.json");
    stats.save(&path).unwrap();
    assert_eq!(CmvnStats::load(&path).unwrap(), stats);
    // Saving again replaces the file and leaves no temporary behind.
    stats.accumulate(&feats(2, 5, 10)).unwrap();
    stats.save(&path).unwrap();
    assert_eq!(CmvnStats::load(&path).unwrap(), stats);
    let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("stats.json")]);
}

#[test]
fn bad_statistics_files_are_named_errors() {
    let dir = tmp_dir();
    let p = dir.path().join("bad.json");
    std::fs::write(&p, b"{\"count\": 3}").unwrap();
    let e = CmvnStats::load(&p).unwrap_err();
    assert!(matches!(e, FeatureError::Stats { .. }), "{e}");
    assert!(e.to_string().contains("bad.json"), "{e}");
    std::fs::write(
        &p,
        br#"{"format":"ent-cmvn-stats-v1","count":1,"sum":[1.0],"sum_sq":[]}"#,
    )
    .unwrap();
    assert!(
        CmvnStats::load(&p)
            .unwrap_err()
            .to_string()
            .contains("sums of squares")
    );
    let e = CmvnStats::load(dir.path().join("missing.json")).unwrap_err();
    assert!(matches!(e, FeatureError::Io { .. }));
}

#[test]
fn normalised_features_have_zero_mean_and_unit_variance() {
    let x = feats(500, 6, 11);
    let mut stats = CmvnStats::new(6);
    stats.accumulate(&x).unwrap();
    let cmvn = GlobalCmvn::from_stats(&stats, true).unwrap();
    let y = cmvn.apply(&x).unwrap();
    let mut check = CmvnStats::new(6);
    check.accumulate(&y).unwrap();
    let (m, v) = check.mean_var().unwrap();
    for d in 0..6 {
        assert!(m[d].abs() < 1e-5, "{d}: mean {}", m[d]);
        assert!((v[d] - 1.0).abs() < 1e-5, "{d}: var {}", v[d]);
    }
    // In place gives the same numbers as the tensor path.
    let mut raw = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    cmvn.apply_in_place(&mut raw).unwrap();
    assert_eq!(raw, y.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    // Mean only.
    let c = GlobalCmvn::from_stats(&stats, false).unwrap();
    assert!(c.scale().iter().all(|&s| s == 1.0));
}

#[test]
fn misuse_is_an_error() {
    let mut stats = CmvnStats::new(3);
    assert!(GlobalCmvn::from_stats(&stats, true).is_err()); // nothing accumulated
    assert!(stats.accumulate(&feats(4, 2, 1)).is_err()); // wrong dimension
    let nan = Tensor::from_vec(vec![0.0, f32::NAN, 0.0], (1, 3), &Device::Cpu).unwrap();
    let e = stats.accumulate(&nan).unwrap_err();
    assert!(e.to_string().contains("frame 0, dimension 1"), "{e}");
    assert_eq!(stats.count, 0, "a refused batch adds nothing");
    stats.accumulate(&feats(4, 3, 1)).unwrap();
    let cmvn = GlobalCmvn::from_stats(&stats, true).unwrap();
    assert!(cmvn.apply(&feats(4, 2, 1)).is_err());
    assert!(cmvn.apply_in_place(&mut [0.0; 4]).is_err());
    // A constant dimension is centred and scaled by the floored variance, not divided by zero.
    let mut flat = CmvnStats::new(1);
    flat.accumulate_slice(&[2.0; 10], 10, 1).unwrap();
    let c = GlobalCmvn::from_stats(&flat, true).unwrap();
    assert!(c.scale()[0].is_finite());
    assert!(CmvnStats::new(0).accumulate_slice(&[], 5, 0).is_err());
}
