//! Filterbanks against kaldi-native-fbank fixtures, exact scaling laws and input errors.

use candle_core::Device;
use ent_features::{Fbank, FbankOptions, FeatureError, WindowType, load};
use proptest::prelude::*;
use serde_json::Value;

use crate::fixture;

/// Required agreement with kaldi-native-fbank, in log units (nats), as the issue sets it.
///
/// Both sides compute in f32 around an f64 FFT, so they differ by f32 rounding only. That
/// rounding matters in one place: bins 100 dB below their frame's peak (pauses in speech, near
/// the log floor), where it reaches a few 1e-4 relative (the test prints the largest difference
/// per case: 3.7e-4 on the spoken sentence, 1.2e-4 on the multi-tone signal). At those cells an
/// all-f64 evaluation in numpy lies closer to this crate than to kaldi-native-fbank
/// (sentence frame 107, bin 12: f64 -15.760397, ours -15.760522, kaldi-native-fbank -15.760170).
const TOL: f32 = 1e-3;

fn options_from_json(o: &Value) -> FbankOptions {
    let f = |k: &str| o[k].as_f64().unwrap_or_else(|| panic!("{k}")) as f32;
    let b = |k: &str| o[k].as_bool().unwrap_or_else(|| panic!("{k}"));
    FbankOptions {
        sample_rate: f("samp_freq"),
        num_mel_bins: o["num_bins"].as_u64().unwrap() as usize,
        frame_length_ms: f("frame_length_ms"),
        frame_shift_ms: f("frame_shift_ms"),
        dither: f("dither"),
        preemph_coeff: f("preemph_coeff"),
        remove_dc_offset: b("remove_dc_offset"),
        window_type: match o["window_type"].as_str().unwrap() {
            "povey" => WindowType::Povey,
            "hamming" => WindowType::Hamming,
            "hanning" => WindowType::Hanning,
            "hann" => WindowType::Hann,
            "sine" => WindowType::Sine,
            "blackman" => WindowType::Blackman,
            "rectangular" => WindowType::Rectangular,
            w => panic!("window {w}"),
        },
        snip_edges: b("snip_edges"),
        low_freq: f("low_freq"),
        high_freq: f("high_freq"),
        use_energy: b("use_energy"),
        raw_energy: b("raw_energy"),
        energy_floor: f("energy_floor"),
        use_log_fbank: b("use_log_fbank"),
        use_power: b("use_power"),
        blackman_coeff: f("blackman_coeff"),
        ..FbankOptions::default()
    }
}

#[test]
fn matches_kaldi_native_fbank() {
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("fbank_cases.json")).unwrap())
            .unwrap();
    let reference =
        candle_core::safetensors::load(fixture("fbank_reference.safetensors"), &Device::Cpu)
            .unwrap();
    let mut checked = 0;
    for signal in cases["signals"].as_array().unwrap() {
        let signal = signal.as_str().unwrap();
        let audio = load(fixture(&format!("{signal}.wav"))).unwrap();
        for (name, opts) in cases["cases"].as_object().unwrap() {
            let opts = options_from_json(opts);
            let linear = !opts.use_log_fbank;
            let fbank = Fbank::new(opts).unwrap();
            let ours = fbank.compute(&audio.samples).unwrap();
            let want = &reference[&format!("{signal}/{name}")];
            assert_eq!(ours.dims(), want.dims(), "{signal}/{name}: shape");
            let ours = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut worst = 0f32;
            let mut floored = 0;
            for (i, (&a, &b)) in ours.iter().zip(&want).enumerate() {
                // Linear energies span many decades: compare them relatively (1e-3 relative
                // is the same bound as 1e-3 in log units).
                let err = if linear {
                    (a - b).abs() / b.abs().max(f32::EPSILON)
                } else {
                    (a - b).abs()
                };
                assert!(
                    err <= TOL,
                    "{signal}/{name}: value {i} (frame {}, column {}) is {a}, kaldi-native-fbank \
                     gives {b}",
                    i / fbank.dim(),
                    i % fbank.dim()
                );
                worst = worst.max(err);
                floored += usize::from(b == f32::EPSILON.ln());
            }
            println!(
                "{signal}/{name}: max difference {worst:.2e} over {} values",
                ours.len()
            );
            if signal == "multitone" && !linear && !name.contains("energy") {
                assert!(
                    floored > 0,
                    "{signal}/{name}: the silent stretch reaches the floor"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 22);
}

fn multitone() -> Vec<f32> {
    load(fixture("multitone.wav")).unwrap().samples
}

/// Scaling the input by 32768 (the int16 convention) multiplies every power by 32768^2, an exact
/// power of two in floating point, so every unfloored log bin moves by 2 ln 32768 to within the
/// rounding of one logf.
#[test]
fn int16_scale_adds_two_ln_32768() {
    let x = multitone();
    let big: Vec<f32> = x.iter().map(|v| v * 32768.0).collect();
    for use_power in [true, false] {
        let fbank = Fbank::new(FbankOptions {
            use_power,
            ..Default::default()
        })
        .unwrap();
        let a = fbank.compute_vec(&x).unwrap();
        let b = fbank.compute_vec(&big).unwrap();
        let shift = if use_power { 2.0 } else { 1.0 } * 32768f32.ln();
        let mut moved = 0;
        for (p, q) in a.iter().zip(&b) {
            if *p > f32::EPSILON.ln() {
                assert!((q - p - shift).abs() < 1e-5, "{p} -> {q}, shift {shift}");
                moved += 1;
            }
        }
        assert!(moved > a.len() / 2);
        assert!((2.0 * 32768f64.ln() - 20.794415).abs() < 1e-6);
    }
}

#[test]
fn frames_do_not_depend_on_later_samples() {
    // With snip_edges every frame sees only its own samples: a prefix gives the same leading
    // frames bit for bit (parallel chunking must not change anything either).
    let x = multitone();
    let fbank = Fbank::new(FbankOptions::default()).unwrap();
    let all = fbank.compute_vec(&x).unwrap();
    let part = fbank.compute_vec(&x[..12345]).unwrap();
    assert_eq!(&all[..part.len()], &part[..]);
    assert_eq!(part.len(), fbank.num_frames(12345) * 80);
}

#[test]
fn one_thread_and_many_agree_bitwise() {
    let x = multitone();
    let fbank = Fbank::new(FbankOptions::default()).unwrap();
    let many = fbank.compute_vec(&x).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let one = pool.install(|| fbank.compute_vec(&x).unwrap());
    assert_eq!(many, one);
}

#[test]
fn dither_is_seeded() {
    let x = multitone();
    let opts = FbankOptions {
        dither: 1e-3,
        dither_seed: 3,
        ..Default::default()
    };
    let a = Fbank::new(opts.clone()).unwrap().compute_vec(&x).unwrap();
    let b = Fbank::new(opts.clone()).unwrap().compute_vec(&x).unwrap();
    let c = Fbank::new(FbankOptions {
        dither_seed: 4,
        ..opts
    })
    .unwrap()
    .compute_vec(&x)
    .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Dither lifts (most of) the silent stretch off the log floor.
    let floored = |v: &[f32]| v.iter().filter(|&&x| x == f32::EPSILON.ln()).count();
    let plain = Fbank::new(FbankOptions::default())
        .unwrap()
        .compute_vec(&x)
        .unwrap();
    assert!(floored(&plain) > 100);
    assert!(
        floored(&a) < floored(&plain) / 10,
        "{} vs {}",
        floored(&a),
        floored(&plain)
    );
}

#[test]
fn short_signals_without_snip_edges_reflect() {
    // 100 samples with snip_edges = false: round(100 / 160) = 1 frame, built by reflecting the
    // signal several times; it must equal the frame of the explicitly reflected signal.
    let x: Vec<f32> = (0..100)
        .map(|i| ((i * 37 % 101) as f32 / 101.0) - 0.5)
        .collect();
    let fbank = Fbank::new(FbankOptions {
        snip_edges: false,
        ..Default::default()
    })
    .unwrap();
    let got = fbank.compute_vec(&x).unwrap();
    assert_eq!(got.len(), 80);
    // Frame 0 covers samples -120..280 of the reflected signal.
    let reflect = |mut s: i64| {
        while !(0..100).contains(&s) {
            s = if s < 0 { -s - 1 } else { 199 - s };
        }
        x[s as usize]
    };
    let frame: Vec<f32> = (-120..280).map(reflect).collect();
    let snip = Fbank::new(FbankOptions::default()).unwrap();
    assert_eq!(snip.compute_vec(&frame).unwrap(), got);
}

/// A one-sample signal in a one-second frame with a one-sample shift: reflection must not
/// loop over the frame length per sample (Kaldi's repeated reflection, done directly).
#[test]
fn tiny_signals_in_long_frames_are_cheap() {
    let fbank = Fbank::new(FbankOptions {
        sample_rate: 16000.0,
        frame_length_ms: 1000.0,
        frame_shift_ms: 0.0625,
        snip_edges: false,
        ..Default::default()
    })
    .unwrap();
    let v = fbank.compute_vec(&[0.5]).unwrap();
    assert_eq!(v.len(), 80);
    // A constant frame: DC removal leaves nothing, every bin sits on the log floor.
    assert!(v.iter().all(|&x| x == f32::EPSILON.ln()));
}

#[test]
fn bad_input_is_an_error() {
    let fbank = Fbank::new(FbankOptions::default()).unwrap();
    assert!(matches!(
        fbank.compute(&[]),
        Err(FeatureError::Empty { .. })
    ));
    let e = fbank.compute(&[0.0; 399]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "<audio in memory>: 399 samples is shorter than one frame (400 samples needed)"
    );
    let mut x = vec![0.0f32; 1000];
    x[500] = f32::NAN;
    let e = fbank.compute(&x).unwrap_err();
    assert!(
        matches!(e, FeatureError::NonFinite { index: 500, .. }),
        "{e}"
    );
    let e = e.in_file(std::path::Path::new("a.wav"));
    assert!(
        e.to_string().starts_with("a.wav: sample 500 is not finite"),
        "{e}"
    );
}

#[test]
fn bad_options_are_errors() {
    let bad = |o: FbankOptions| Fbank::new(o).unwrap_err().to_string();
    let d = FbankOptions::default;
    assert!(
        bad(FbankOptions {
            num_mel_bins: 2,
            ..d()
        })
        .contains("at least 3")
    );
    assert!(
        bad(FbankOptions {
            num_mel_bins: 200,
            ..d()
        })
        .contains("covers no FFT bin")
    );
    assert!(
        bad(FbankOptions {
            low_freq: 9000.0,
            ..d()
        })
        .contains("Nyquist = 8000")
    );
    assert!(
        bad(FbankOptions {
            high_freq: -8000.0,
            ..d()
        })
        .contains("effective 0 Hz")
    );
    assert!(
        bad(FbankOptions {
            sample_rate: 0.0,
            ..d()
        })
        .contains("sample_rate")
    );
    assert!(
        bad(FbankOptions {
            frame_shift_ms: 0.01,
            ..d()
        })
        .contains("less than one sample")
    );
    assert!(
        bad(FbankOptions {
            preemph_coeff: 1.5,
            ..d()
        })
        .contains("[0, 1]")
    );
    assert!(
        bad(FbankOptions {
            dither: f32::NAN,
            ..d()
        })
        .contains("dither")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any options and any finite input give features or an error, never a panic, and the
    /// output shape always matches `num_frames` and `dim`.
    #[test]
    fn never_panics(
        rate in prop_oneof![Just(16000.0f32), Just(8000.0), 100.0f32..96000.0],
        bins in prop_oneof![0usize..130, Just(usize::MAX), 1usize << 20..1usize << 40],
        len_ms in 0.0f32..80.0,
        shift_ms in 0.0f32..40.0,
        low in -10.0f32..4000.0,
        high in -5000.0f32..9000.0,
        snip in any::<bool>(),
        energy in any::<bool>(),
        n in 0usize..3000,
    ) {
        let opts = FbankOptions {
            sample_rate: rate, num_mel_bins: bins, frame_length_ms: len_ms,
            frame_shift_ms: shift_ms, low_freq: low, high_freq: high, snip_edges: snip,
            use_energy: energy, ..Default::default()
        };
        let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        if let Ok(fbank) = Fbank::new(opts) {
            match fbank.compute(&x) {
                Ok(t) => {
                    prop_assert_eq!(t.dims(), &[fbank.num_frames(n), fbank.dim()]);
                    let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    prop_assert!(v.iter().all(|x| x.is_finite()));
                }
                Err(FeatureError::Empty { .. } | FeatureError::TooShort { .. }) => {
                    prop_assert!(fbank.num_frames(n) == 0);
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }
}
