//! What the trainer reports while it runs: each optimiser step's losses and rates
//! ([`StepStats`]), the start of an epoch ([`EpochStart`]) and its end with the validation
//! scores ([`EpochSummary`]). The trainer writes the same records to `metrics.jsonl`; drawing
//! them (progress bars, log lines) is the caller's business, through a [`TrainObserver`].

use serde::Serialize;

use crate::trainer::EvalScores;

/// One optimiser step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepStats {
    /// Optimiser steps taken, this one included.
    pub step: u64,
    /// The epoch (from 0).
    pub epoch: u64,
    /// Mean total loss over the step's batches.
    pub loss: f64,
    /// Mean RNN-T loss.
    pub rnnt: f64,
    /// Mean lattice (pooled emotion) loss.
    pub lattice: f64,
    /// Mean utterance-head loss.
    pub head: f64,
    /// Mean frame loss; `None` when the frame loss is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<f64>,
    /// The learning rate the step was taken with.
    pub lr: f64,
    /// The gradient norm before clipping.
    pub grad_norm: f64,
    /// Training utterances per second over the step.
    pub utt_per_sec: f64,
    /// Batches the step consumed (the accumulation).
    #[serde(skip)]
    pub batches: u64,
    /// Batches of the epoch consumed so far, this step's included.
    #[serde(skip)]
    pub batches_done: u64,
}

/// An epoch about to run (or, resumed, to go on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochStart {
    /// The epoch (from 0).
    pub epoch: u64,
    /// Epochs in the run.
    pub epochs: u64,
    /// Batches in the epoch.
    pub batches: u64,
    /// Batches already consumed (a resumed run).
    pub done: u64,
}

/// An epoch that ended: its mean training loss, the validation scores and the best so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpochSummary {
    /// The epoch (from 0).
    pub epoch: u64,
    /// Epochs in the run.
    #[serde(skip)]
    pub epochs: u64,
    /// Optimiser steps taken.
    pub step: u64,
    /// Mean total loss of the steps this run took in the epoch.
    pub train_loss: f64,
    /// Scores on the validation split, when there is one.
    pub valid: Option<EvalScores>,
    /// The best selection score and its step.
    pub best: Option<(f64, u64)>,
    /// Whether this epoch's model became the best (`best.safetensors` written).
    #[serde(skip)]
    pub improved: bool,
    /// Seconds the epoch took, validation included.
    pub seconds: f64,
}

/// Told what the trainer does, as it does it. Every method does nothing by default; `()` is
/// the observer that ignores everything.
pub trait TrainObserver {
    /// An epoch starts (or goes on after a resume).
    fn epoch_started(&mut self, _start: &EpochStart) {}
    /// An optimiser step was taken.
    fn step(&mut self, _stats: &StepStats) {}
    /// An epoch ended, its checkpoints written.
    fn epoch_finished(&mut self, _summary: &EpochSummary) {}
    /// The run stopped inside an epoch (`max_steps` reached).
    fn stopped(&mut self, _step: u64) {}
}

impl TrainObserver for () {}

/// A line of `metrics.jsonl`: the record with its kind first.
#[derive(Serialize)]
pub(crate) struct LogLine<'a, T: Serialize> {
    pub kind: &'static str,
    #[serde(flatten)]
    pub record: &'a T,
}
