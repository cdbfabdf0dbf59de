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
    budgeted_batches(
        lengths,
        max_batch,
        max_total_secs,
        None,
        seed,
        epoch,
        shuffle,
    )
}

/// A cap on the lattice a batch's losses run over: its padded `count * T * (U+1)` nodes, with
/// `T` the most encoder frames and `U` the most target tokens of its utterances.
#[derive(Clone, Copy, Debug)]
pub struct NodeBudget<'a> {
    /// The most nodes per batch.
    pub max_nodes: u64,
    /// `(frames, tokens)` of each utterance, indexed as the lengths.
    pub sizes: &'a [(usize, usize)],
}

impl NodeBudget<'_> {
    /// The padded lattice of `count` utterances of at most `frames` frames and `tokens` tokens.
    pub fn nodes(count: usize, frames: usize, tokens: usize) -> u64 {
        (count as u64)
            .saturating_mul(frames as u64)
            .saturating_mul(tokens as u64 + 1)
    }
}

/// [`bucketed_batches`] with a lattice budget as well: a batch also closes when one more
/// utterance would take its padded lattice past `nodes.max_nodes`. An utterance over the
/// budget on its own still forms a batch of one (callers refuse such utterances up front:
/// `Trainer::new` does). `nodes.sizes` must hold one entry per length.
#[allow(clippy::too_many_arguments)]
pub fn budgeted_batches(
    lengths: &[f64],
    max_batch: usize,
    max_total_secs: Option<f64>,
    nodes: Option<NodeBudget>,
    seed: u64,
    epoch: u64,
    shuffle: bool,
) -> Vec<Vec<usize>> {
    if let Some(n) = &nodes {
        assert_eq!(
            n.sizes.len(),
            lengths.len(),
            "one (frames, tokens) per utterance"
        );
    }
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
    // The most frames and tokens in `current`.
    let mut widest = (0usize, 0usize);
    for i in order {
        let len = lengths[i];
        let grown = longest.max(len);
        let size = nodes.map_or((0, 0), |n| n.sizes[i]);
        let wider = (widest.0.max(size.0), widest.1.max(size.1));
        let fits = current.len() < max_batch
            && max_total_secs.is_none_or(|cap| grown * (current.len() + 1) as f64 <= cap)
            && nodes.is_none_or(|n| {
                NodeBudget::nodes(current.len() + 1, wider.0, wider.1) <= n.max_nodes
            });
        if !fits && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
            longest = len;
            widest = size;
        } else {
            longest = grown;
            widest = wider;
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
    fn node_budget() {
        // Sorted by length: 0, 1, 2, 3. (frames, tokens): utterance 2 has a long transcript.
        let lengths = [1.0, 1.1, 1.2, 1.3];
        let sizes = [(50, 9), (55, 9), (60, 39), (65, 9)];
        let budget = |max_nodes| {
            Some(NodeBudget {
                max_nodes,
                sizes: &sizes,
            })
        };
        // [0, 1] pads to 2 x 55 x 10 = 1100 nodes; adding 2 gives 3 x 60 x 40 = 7200.
        let b = budgeted_batches(&lengths, 8, None, budget(7199), 0, 0, false);
        assert_eq!(b, vec![vec![0, 1], vec![2, 3]]);
        let b = budgeted_batches(&lengths, 8, None, budget(7200), 0, 0, false);
        assert_eq!(b, vec![vec![0, 1, 2], vec![3]]);
        // [2, 3] = 2 x 65 x 40 = 5200; under 5200 every utterance is alone.
        let b = budgeted_batches(&lengths, 8, None, budget(5199), 0, 0, false);
        assert_eq!(b, vec![vec![0, 1], vec![2], vec![3]]);
        // No budget: the count alone decides.
        let b = budgeted_batches(&lengths, 8, None, None, 0, 0, false);
        assert_eq!(b, vec![vec![0, 1, 2, 3]]);
    }

    #[test]
    fn empty_and_zero_batch() {
        assert!(bucketed_batches(&[], 4, None, 1, 1, true).is_empty());
        let b = bucketed_batches(&[1.0, 2.0], 0, None, 1, 1, false);
        assert_eq!(b, vec![vec![0], vec![1]]);
    }
}
