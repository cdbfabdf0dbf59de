//! Length-bucketed batches.

use ent_common::rng::SplitMix64;

/// Relative spread of the sort keys when shuffling: each length is scaled by a factor drawn
/// uniformly from `[1 - JITTER/2, 1 + JITTER/2)`, so lengths within a few percent of each other
/// trade places between epochs while a batch still pads to at most about 10 % more than its
/// shortest member needs.
const JITTER: f64 = 0.1;

/// Groups utterances of similar length into batches.
///
/// - `lengths[i]`: utterance `i`'s length (seconds, or any unit that `max_total_secs` shares).
/// - `max_batch`: at most this many utterances per batch (0 counts as 1).
/// - `max_total_secs`: if given, a batch's padded length, `count * longest`, stays at or below
///   it; an utterance longer than the cap on its own forms a batch of one.
/// - `shuffle`: when false, batches come in order of increasing length, utterances sorted by
///   `(length, index)`; `seed` and `epoch` are unused. When true, utterances are shuffled and
///   then sorted by their length times a random factor within ±5 %, so
///   near-equal lengths mix differently every epoch, and the order of the batches is shuffled.
///   The generator is [`SplitMix64`] seeded from `(seed, epoch)`: the same pair always gives
///   the same batches, different epochs give different ones.
///
/// Returns batches of indices into `lengths`; every index occurs exactly once. No input, no
/// batches. Lengths that are NaN sort last.
pub fn bucketed_batches(
    lengths: &[f64],
    max_batch: usize,
    max_total_secs: Option<f64>,
    seed: u64,
    epoch: u64,
    shuffle: bool,
) -> Vec<Vec<usize>> {
    let max_batch = max_batch.max(1);
    let mut rng = SplitMix64::new(mix(seed, epoch));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    if shuffle {
        shuffle_in_place(&mut order, &mut rng);
        let mut keyed: Vec<(f64, usize)> = order
            .iter()
            .map(|&i| (lengths[i] * (1.0 + JITTER * (rng.uniform() - 0.5)), i))
            .collect();
        // Stable: equal keys keep their shuffled order.
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        order = keyed.into_iter().map(|(_, i)| i).collect();
    } else {
        order.sort_by(|&a, &b| lengths[a].total_cmp(&lengths[b]).then(a.cmp(&b)));
    }

    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut longest = 0.0f64;
    for i in order {
        let len = lengths[i];
        let grown = longest.max(len);
        let fits = current.len() < max_batch
            && max_total_secs.is_none_or(|cap| grown * (current.len() + 1) as f64 <= cap);
        if !fits && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
            longest = len;
        } else {
            longest = grown;
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    if shuffle {
        shuffle_in_place(&mut batches, &mut rng);
    }
    batches
}

/// One seed from `(seed, epoch)`: the epoch goes through a SplitMix64 step so that nearby
/// seeds and epochs give unrelated streams.
fn mix(seed: u64, epoch: u64) -> u64 {
    let mut r = SplitMix64::new(epoch);
    seed ^ r.next_u64()
}

/// Fisher-Yates.
fn shuffle_in_place<T>(v: &mut [T], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        let j = rng.range_inclusive(0, i);
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_without_shuffle() {
        let lengths = [3.0, 1.0, 2.0, 1.0, 5.0];
        let b = bucketed_batches(&lengths, 2, None, 0, 0, false);
        assert_eq!(b, vec![vec![1, 3], vec![2, 0], vec![4]]);
        // Seed and epoch do not matter then.
        assert_eq!(b, bucketed_batches(&lengths, 2, None, 9, 4, false));
    }

    #[test]
    fn total_cap() {
        // Sorted: 1, 1, 2, 3, 5. Cap 4: [1, 1] (2), then 2 joins? 2 * 3 = 6 > 4, so [2];
        // [2, 3] would pad to 6: [3]; 5 alone exceeds the cap: a batch of one.
        let lengths = [3.0, 1.0, 2.0, 1.0, 5.0];
        let b = bucketed_batches(&lengths, 8, Some(4.0), 0, 0, false);
        assert_eq!(b, vec![vec![1, 3], vec![2], vec![0], vec![4]]);
    }

    #[test]
    fn empty_and_zero_batch() {
        assert!(bucketed_batches(&[], 4, None, 1, 1, true).is_empty());
        let b = bucketed_batches(&[1.0, 2.0], 0, None, 1, 1, false);
        assert_eq!(b, vec![vec![0], vec![1]]);
    }
}
