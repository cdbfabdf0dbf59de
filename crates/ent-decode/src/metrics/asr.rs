//! ASR: edit counts by alignment, text normalisation, corpus WER and CER.

use serde::{Deserialize, Serialize};

/// Edit-distance counts of a hypothesis against a reference (or sums over a corpus).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// S: reference tokens replaced by a different token.
    pub substitutions: u64,
    /// D: reference tokens missing from the hypothesis.
    pub deletions: u64,
    /// I: hypothesis tokens with no reference token.
    pub insertions: u64,
    /// N: number of reference tokens.
    pub reference_len: u64,
}

impl ErrorCounts {
    /// `S + D + I`.
    pub fn errors(&self) -> u64 {
        self.substitutions + self.deletions + self.insertions
    }

    /// `(S + D + I) / N` in percent; `None` when N = 0. May exceed 100 (insertions).
    pub fn rate(&self) -> Option<f64> {
        (self.reference_len > 0).then(|| 100.0 * self.errors() as f64 / self.reference_len as f64)
    }

    /// Adds `other` field by field (corpus-level accumulation).
    pub fn add(&mut self, other: ErrorCounts) {
        self.substitutions += other.substitutions;
        self.deletions += other.deletions;
        self.insertions += other.insertions;
        self.reference_len += other.reference_len;
    }
}

/// Minimum edit distance alignment (Levenshtein, unit costs for substitution, deletion and
/// insertion), returning S, D, I with N = `reference.len()`.
///
/// The total `S + D + I` is the Levenshtein distance and does not depend on any tie-break.
/// Among the alignments of minimal total cost this picks one with the fewest insertions plus
/// deletions, i.e. the most substitutions (the preference of Kaldi's `compute-wer` and of
/// sclite). That makes the counts unique: with N reference and M hypothesis tokens,
/// `D - I = N - M`, so the total and `D + I` fix S, D and I.
///
/// Time `O(N M)`, memory `O(M)`.
pub fn align_counts<T: PartialEq>(reference: &[T], hypothesis: &[T]) -> ErrorCounts {
    // Cost of an alignment prefix as (edits, insertions + deletions), compared
    // lexicographically; per-operation costs are sub (1, 0), ins/del (1, 1), match (0, 0).
    // Lexicographic order is compatible with addition, so the row-by-row DP finds the minimum.
    let m = hypothesis.len();
    // prev[j]: cost of aligning reference[..i] with hypothesis[..j]; row i = 0 is j insertions.
    let mut prev: Vec<(u64, u64)> = (0..=m as u64).map(|j| (j, j)).collect();
    let mut cur = vec![(0u64, 0u64); m + 1];
    for (i, r) in reference.iter().enumerate() {
        let i = i as u64 + 1;
        cur[0] = (i, i);
        for (j, h) in hypothesis.iter().enumerate() {
            let diag = if r == h {
                prev[j]
            } else {
                (prev[j].0 + 1, prev[j].1)
            };
            let del = (prev[j + 1].0 + 1, prev[j + 1].1 + 1);
            let ins = (cur[j].0 + 1, cur[j].1 + 1);
            cur[j + 1] = diag.min(del).min(ins);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let (edits, indels) = prev[m];
    let n = reference.len() as u64;
    let m = m as u64;
    // D + I = indels and D - I = N - M.
    let deletions = (indels + n).saturating_sub(m) / 2;
    let insertions = indels - deletions;
    ErrorCounts {
        substitutions: edits - indels,
        deletions,
        insertions,
        reference_len: n,
    }
}

/// The characters that scoring maps to spaces (docs/method.md §6).
pub const SCORING_PUNCTUATION: [char; 10] = ['[', ']', '.', ',', '?', '!', '-', ':', ';', '"'];

/// Text normalisation for WER/CER: upper-cases (Unicode), maps `[ ] . , ? ! - : ; "` to
/// spaces, collapses runs of whitespace into one space and trims. Apostrophes are kept
/// (`"don't"` -> `"DON'T"`).
pub fn normalize_for_scoring(text: &str) -> String {
    let mapped: String = text
        .to_uppercase()
        .chars()
        .map(|c| {
            if SCORING_PUNCTUATION.contains(&c) {
                ' '
            } else {
                c
            }
        })
        .collect();
    mapped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Corpus-level WER and CER accumulators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AsrScores {
    /// Word-level counts summed over the utterances added.
    pub words: ErrorCounts,
    /// Character-level counts summed over the utterances added.
    pub chars: ErrorCounts,
}

impl AsrScores {
    /// Normalises both texts with [`normalize_for_scoring`] and adds their word-level and
    /// character-level counts. Words are the space-separated tokens of the normalised text;
    /// characters are the Unicode scalar values of the normalised text *including* the single
    /// spaces between words (as SpeechBrain and jiwer count them), so `"A B"` has N = 3
    /// characters. An empty reference adds N = 0 and counts every hypothesis token as an
    /// insertion.
    pub fn add(&mut self, reference: &str, hypothesis: &str) {
        let reference = normalize_for_scoring(reference);
        let hypothesis = normalize_for_scoring(hypothesis);
        let ref_words: Vec<&str> = reference.split_whitespace().collect();
        let hyp_words: Vec<&str> = hypothesis.split_whitespace().collect();
        self.words.add(align_counts(&ref_words, &hyp_words));
        let ref_chars: Vec<char> = reference.chars().collect();
        let hyp_chars: Vec<char> = hypothesis.chars().collect();
        self.chars.add(align_counts(&ref_chars, &hyp_chars));
    }

    /// Corpus word error rate in percent; `None` while no reference word was added.
    pub fn wer(&self) -> Option<f64> {
        self.words.rate()
    }

    /// Corpus character error rate in percent; `None` while no reference character was added.
    pub fn cer(&self) -> Option<f64> {
        self.chars.rate()
    }
}
