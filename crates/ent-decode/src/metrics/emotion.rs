//! Utterance-level emotion: the confusion matrix and its WA, UA and macro-F1.

use serde::{Deserialize, Serialize};

use super::MetricError;

/// A confusion matrix over K classes: `counts[reference][hypothesis]`, `K = labels.len()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    /// Class names, index = class id.
    pub labels: Vec<String>,
    /// `[K][K]` counts, row = reference class, column = hypothesis class.
    pub counts: Vec<Vec<u64>>,
}

/// Scores of one class of a [`Confusion`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScores {
    /// The class name.
    pub label: String,
    /// Number of items whose reference is this class (row sum).
    pub support: u64,
    /// Number of items predicted as this class (column sum).
    pub predicted: u64,
    /// `tp / predicted` in percent; 0 when the class was never predicted.
    pub precision: f64,
    /// `tp / support` in percent; 0 when the class never occurs in the reference.
    pub recall: f64,
    /// `2 tp / (support + predicted)` in percent (the harmonic mean of precision and recall);
    /// 0 when both are 0.
    pub f1: f64,
}

impl Confusion {
    /// An all-zero `K x K` matrix over `labels`. An empty label list gives a matrix to which
    /// nothing can be added.
    pub fn new(labels: Vec<String>) -> Self {
        let k = labels.len();
        Self {
            labels,
            counts: vec![vec![0; k]; k],
        }
    }

    /// Number of classes, `labels.len()`.
    pub fn num_classes(&self) -> usize {
        self.labels.len()
    }

    /// Checks that `counts` is `K x K` with `K = labels.len()`. Always true for a matrix made by
    /// [`Confusion::new`]; useful after deserialising one.
    pub fn validate(&self) -> Result<(), MetricError> {
        let k = self.labels.len();
        if self.counts.len() == k && self.counts.iter().all(|row| row.len() == k) {
            Ok(())
        } else {
            Err(MetricError::MalformedConfusion {
                rows: self.counts.len(),
                columns: self.counts.iter().map(Vec::len).collect(),
                classes: k,
            })
        }
    }

    /// Counts one item with reference class `reference` and predicted class `hypothesis`.
    pub fn add(&mut self, reference: usize, hypothesis: usize) -> Result<(), MetricError> {
        let classes = self.labels.len();
        for (role, index) in [("reference", reference), ("hypothesis", hypothesis)] {
            if index >= classes {
                return Err(MetricError::LabelOutOfRange {
                    role,
                    index,
                    classes,
                });
            }
        }
        self.validate()?;
        self.counts[reference][hypothesis] += 1;
        Ok(())
    }

    /// Adds the counts of `other`, which must have the same labels (pooling folds or shards).
    pub fn merge(&mut self, other: &Confusion) -> Result<(), MetricError> {
        if self.labels != other.labels {
            return Err(MetricError::LabelMismatch {
                left: self.labels.clone(),
                right: other.labels.clone(),
            });
        }
        self.validate()?;
        other.validate()?;
        for (row, other_row) in self.counts.iter_mut().zip(&other.counts) {
            for (cell, &other_cell) in row.iter_mut().zip(other_row) {
                *cell += other_cell;
            }
        }
        Ok(())
    }

    /// `counts[r][h]`, 0 outside the matrix (so that a malformed matrix never panics).
    fn cell(&self, reference: usize, hypothesis: usize) -> u64 {
        self.counts
            .get(reference)
            .and_then(|row| row.get(hypothesis))
            .copied()
            .unwrap_or(0)
    }

    /// Row sum: items whose reference is `class`.
    fn support(&self, class: usize) -> u64 {
        (0..self.labels.len()).map(|h| self.cell(class, h)).sum()
    }

    /// Column sum: items predicted as `class`.
    fn predicted(&self, class: usize) -> u64 {
        (0..self.labels.len()).map(|r| self.cell(r, class)).sum()
    }

    /// Total number of items counted.
    pub fn total(&self) -> u64 {
        (0..self.labels.len()).map(|r| self.support(r)).sum()
    }

    /// Number of correctly classified items (the trace).
    pub fn correct(&self) -> u64 {
        (0..self.labels.len()).map(|c| self.cell(c, c)).sum()
    }

    /// Weighted accuracy (WA): `correct / total` in percent; `None` when nothing was counted.
    pub fn wa(&self) -> Option<f64> {
        let total = self.total();
        (total > 0).then(|| 100.0 * self.correct() as f64 / total as f64)
    }

    /// Unweighted accuracy (UA, balanced accuracy): the mean recall, in percent, over the
    /// classes that occur in the reference. Classes absent from the reference (support 0) are
    /// left out of the mean, as in scikit-learn's `balanced_accuracy_score`; `None` when no
    /// class occurs (nothing was counted).
    pub fn ua(&self) -> Option<f64> {
        let recalls: Vec<f64> = (0..self.labels.len())
            .filter_map(|c| {
                let support = self.support(c);
                (support > 0).then(|| self.cell(c, c) as f64 / support as f64)
            })
            .collect();
        mean(&recalls).map(|m| 100.0 * m)
    }

    /// Macro F1 in percent: the mean of the per-class F1 over classes that occur in the
    /// reference or in the hypothesis. A class with neither references nor predictions has an
    /// undefined F1 and is excluded; a class present on one side only has F1 = 0 and is
    /// included. `None` when nothing was counted.
    pub fn macro_f1(&self) -> Option<f64> {
        let f1s: Vec<f64> = self
            .per_class()
            .iter()
            .filter(|s| s.support > 0 || s.predicted > 0)
            .map(|s| s.f1)
            .collect();
        mean(&f1s)
    }

    /// Support, prediction count, precision, recall and F1 (percent) of every class, in label
    /// order. Undefined ratios (a class never predicted, never in the reference) are reported
    /// as 0, as scikit-learn does with `zero_division=0`.
    pub fn per_class(&self) -> Vec<ClassScores> {
        self.labels
            .iter()
            .enumerate()
            .map(|(c, label)| {
                let tp = self.cell(c, c) as f64;
                let support = self.support(c);
                let predicted = self.predicted(c);
                let ratio = |den: u64| {
                    if den == 0 {
                        0.0
                    } else {
                        100.0 * tp / den as f64
                    }
                };
                ClassScores {
                    label: label.clone(),
                    support,
                    predicted,
                    precision: ratio(predicted),
                    recall: ratio(support),
                    f1: if support + predicted == 0 {
                        0.0
                    } else {
                        100.0 * 2.0 * tp / (support + predicted) as f64
                    },
                }
            })
            .collect()
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}
