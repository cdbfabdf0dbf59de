//! Bucketed batches.

use super::*;

/// Lengths with many near-ties, as real corpora have.
fn lengths(n: usize, seed: u64) -> Vec<f64> {
    let mut r = ent_common::rng::SplitMix64::new(seed);
    (0..n)
        .map(|_| 0.5 + (r.uniform() * 40.0).round() * 0.25)
        .collect()
}

fn check_permutation(batches: &[Vec<usize>], n: usize) {
    let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>(), "every index exactly once");
    assert!(batches.iter().all(|b| !b.is_empty()));
}

#[test]
fn batches_are_permutations_within_caps() {
    for (case, n) in [0usize, 1, 2, 7, 100, 333].into_iter().enumerate() {
        let lens = lengths(n, case as u64);
        for &(max_batch, cap) in &[(1, None), (4, None), (16, Some(40.0)), (64, Some(12.0))] {
            for shuffle in [false, true] {
                let b = bucketed_batches(&lens, max_batch, cap, 42, 3, shuffle);
                check_permutation(&b, n);
                for batch in &b {
                    assert!(batch.len() <= max_batch);
                    if let Some(cap) = cap {
                        let longest = batch.iter().map(|&i| lens[i]).fold(0.0, f64::max);
                        assert!(
                            batch.len() == 1 || longest * batch.len() as f64 <= cap,
                            "{batch:?} pads to more than {cap}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn batches_are_deterministic_and_differ_by_epoch() {
    let lens = lengths(200, 9);
    let a = bucketed_batches(&lens, 8, None, 42, 0, true);
    assert_eq!(a, bucketed_batches(&lens, 8, None, 42, 0, true));
    let epochs: BTreeSet<Vec<Vec<usize>>> = (0..5)
        .map(|e| bucketed_batches(&lens, 8, None, 42, e, true))
        .collect();
    assert_eq!(epochs.len(), 5, "every epoch differs");
    assert_ne!(
        a,
        bucketed_batches(&lens, 8, None, 43, 0, true),
        "seeds differ"
    );

    // Buckets stay tight: padding adds little more than with strictly sorted batches.
    let padded = |b: &[Vec<usize>]| -> f64 {
        b.iter()
            .map(|x| x.iter().map(|&i| lens[i]).fold(0.0, f64::max) * x.len() as f64)
            .sum()
    };
    let total: f64 = lens.iter().sum();
    let sorted = padded(&bucketed_batches(&lens, 8, None, 42, 0, false));
    let shuffled = padded(&a);
    assert!(
        shuffled <= sorted + 0.05 * total,
        "padding {shuffled} vs {sorted} sorted, {total} of audio"
    );
    // Near-equal lengths mix differently between epochs: batch contents change, not only
    // their order.
    let sets = |b: &[Vec<usize>]| -> BTreeSet<BTreeSet<usize>> {
        b.iter().map(|x| x.iter().copied().collect()).collect()
    };
    let e1 = bucketed_batches(&lens, 8, None, 42, 1, true);
    assert_ne!(sets(&a), sets(&e1));
}
