//! Token times: the share of emitted characters whose time lies inside the time span of the
//! sentence they belong to (docs/method.md §6), on recordings whose sentence spans are known.

use serde::{Deserialize, Serialize};

/// Characters counted by [`token_timing`], summed over utterances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimingCounts {
    /// Emitted characters aligned to a reference character (equal or substituted).
    pub aligned: u64,
    /// Of those, the ones emitted inside their reference character's sentence.
    pub inside: u64,
}

impl TimingCounts {
    /// Adds another utterance's counts.
    pub fn add(&mut self, other: TimingCounts) {
        self.aligned += other.aligned;
        self.inside += other.inside;
    }

    /// `inside / aligned` in percent; `None` when nothing was aligned.
    pub fn share(&self) -> Option<f64> {
        (self.aligned > 0).then(|| 100.0 * self.inside as f64 / self.aligned as f64)
    }
}

/// Scores the emission times `tokens` (character, seconds) of one utterance against its
/// sentences (start, end in seconds, text), whose texts joined by spaces are the reference.
///
/// Spaces are left out on both sides. The emitted characters are aligned to the reference
/// characters by minimum edit distance (unit costs; on ties a match or substitution is taken
/// before a deletion, a deletion before an insertion, reading from the end). Every emitted
/// character aligned to a reference character counts, and is inside when
/// `start <= time <= end` of that character's sentence; inserted characters belong to no
/// sentence and are not counted.
pub fn token_timing(sentences: &[(f64, f64, &str)], tokens: &[(char, f64)]) -> TimingCounts {
    let reference: Vec<(char, usize)> = sentences
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.2.chars().filter(|c| *c != ' ').map(move |c| (c, i)))
        .collect();
    let hyp: Vec<(char, f64)> = tokens.iter().copied().filter(|t| t.0 != ' ').collect();
    let (n, m) = (reference.len(), hyp.len());
    // d[i][j]: edit distance of reference[..i] and hyp[..j].
    let w = m + 1;
    let mut d = vec![0u32; (n + 1) * w];
    for (j, x) in d.iter_mut().enumerate().take(w) {
        *x = j as u32;
    }
    for i in 1..=n {
        d[i * w] = i as u32;
        for j in 1..=m {
            let sub = d[(i - 1) * w + j - 1] + u32::from(reference[i - 1].0 != hyp[j - 1].0);
            d[i * w + j] = sub.min(d[(i - 1) * w + j] + 1).min(d[i * w + j - 1] + 1);
        }
    }
    let mut counts = TimingCounts::default();
    let (mut i, mut j) = (n, m);
    while i > 0 || j > 0 {
        let here = d[i * w + j];
        if i > 0 && j > 0 {
            let cost = u32::from(reference[i - 1].0 != hyp[j - 1].0);
            if here == d[(i - 1) * w + j - 1] + cost {
                let (start, end, _) = sentences[reference[i - 1].1];
                let t = hyp[j - 1].1;
                counts.aligned += 1;
                counts.inside += u64::from(start <= t && t <= end);
                i -= 1;
                j -= 1;
                continue;
            }
        }
        if i > 0 && here == d[(i - 1) * w + j] + 1 {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counted by hand: "AB CD" said in 0-1 s and "EF" in 1-2 s.
    #[test]
    fn counts_by_hand() {
        let s = [(0.0, 1.0, "AB CD"), (1.0, 2.0, "EF")];
        // All right and in time.
        let ok: Vec<(char, f64)> = vec![
            ('A', 0.1),
            ('B', 0.2),
            (' ', 0.3),
            ('C', 0.4),
            ('D', 0.5),
            (' ', 0.9),
            ('E', 1.2),
            ('F', 1.9),
        ];
        assert_eq!(
            token_timing(&s, &ok),
            TimingCounts {
                aligned: 6,
                inside: 6
            }
        );
        // Everything emitted at the first frame: only the first sentence's four are inside.
        let early: Vec<(char, f64)> = "ABCDEF".chars().map(|c| (c, 0.0)).collect();
        assert_eq!(
            token_timing(&s, &early),
            TimingCounts {
                aligned: 6,
                inside: 4
            }
        );
        // "AXCD", an inserted "Q", then "EF": X substitutes B (counted, inside), Q belongs to no
        // sentence (not counted); F emitted at 0.95 s is outside its 1-2 s sentence.
        let noisy = vec![
            ('A', 0.1),
            ('X', 0.2),
            ('C', 0.4),
            ('D', 0.5),
            ('Q', 0.6),
            ('E', 1.5),
            ('F', 0.95),
        ];
        let c = token_timing(&s, &noisy);
        assert_eq!(
            c,
            TimingCounts {
                aligned: 6,
                inside: 5
            }
        );
        // D and E deleted: A, B, C and F are aligned.
        let short = vec![('A', 0.1), ('B', 0.2), ('C', 0.4), ('F', 1.1)];
        assert_eq!(
            token_timing(&s, &short),
            TimingCounts {
                aligned: 4,
                inside: 4
            }
        );
        let mut total = TimingCounts::default();
        total.add(c);
        total.add(token_timing(&s, &early));
        assert_eq!(total.share(), Some(100.0 * 9.0 / 12.0));
        assert_eq!(token_timing(&s, &[]).share(), None);
    }
}
