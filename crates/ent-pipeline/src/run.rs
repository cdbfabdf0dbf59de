//! Train, select, evaluate: the flow `ent train` and `ent demo` share.

use std::path::{Path, PathBuf};

use candle_core::Device;
use ent_decode::Search;
use ent_train::{BEST, LAST, Splits, Summary, TrainConfig, Trainer};

use crate::engine::Engine;
use crate::error::Result;
use crate::evaluate::{EvalOptions, Report, Scored, evaluate};
use crate::progress::TrainProgress;

/// How [`train_and_score`] runs.
#[derive(Default)]
pub struct TrainOptions<'a> {
    /// Continue from this checkpoint (written by an earlier run).
    pub resume: Option<&'a Path>,
    /// Utterances per decoding batch when scoring the test split.
    pub test_batch_size: usize,
    /// Draw progress (bars on a terminal, lines in a log) for training and scoring.
    pub progress: bool,
    /// Called once the trainer is set up, before the first step (to describe the run).
    pub on_start: Option<&'a dyn Fn(&Trainer)>,
    /// Called when training has ended, before the test split is scored.
    pub on_trained: Option<&'a dyn Fn(&Summary)>,
}

impl std::fmt::Debug for TrainOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainOptions")
            .field("resume", &self.resume)
            .field("test_batch_size", &self.test_batch_size)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

/// What [`train_and_score`] leaves.
#[derive(Debug)]
pub struct TrainedRun {
    /// The selected checkpoint: `best.safetensors`, or `last.safetensors` when no epoch was
    /// validated.
    pub model: PathBuf,
    /// What the trainer did.
    pub summary: Summary,
    /// The test split scored by the selected model, when the configuration has a test split.
    pub test: Option<TestScores>,
}

/// The selected model and its scores on the test split.
#[derive(Debug)]
pub struct TestScores {
    /// The selected model, ready to decode.
    pub engine: Engine,
    /// The scores.
    pub report: Report,
    /// Each utterance's reference and result.
    pub scored: Vec<Scored>,
}

/// Trains on `splits` into `out` (checkpoints, `metrics.jsonl`), takes the checkpoint the
/// configuration's selection chose, and scores the test split with greedy search.
pub fn train_and_score(
    cfg: &TrainConfig,
    splits: Splits,
    out: &Path,
    dev: &Device,
    opts: &TrainOptions<'_>,
) -> Result<TrainedRun> {
    let test = splits.test;
    let mut trainer = Trainer::new(cfg.clone(), splits.train, splits.valid, out, dev)?;
    if let Some(f) = opts.on_start {
        f(&trainer);
    }
    if let Some(resume) = opts.resume {
        trainer.resume(resume)?;
    }
    let summary = trainer.run_observed(&mut TrainProgress::new(opts.progress))?;
    drop(trainer);
    if let Some(f) = opts.on_trained {
        f(&summary);
    }
    let model = if out.join(BEST).exists() {
        out.join(BEST)
    } else {
        out.join(LAST)
    };
    let test = if test.is_empty() {
        None
    } else {
        let engine = Engine::load(
            Some(&model),
            cfg.backbone.as_deref(),
            dev,
            Search::default(),
        )?;
        let opts = EvalOptions {
            name: "test",
            batch_size: opts.test_batch_size.max(1),
            progress: opts.progress,
        };
        let (report, scored) = evaluate(&engine, &test, &opts)?;
        Some(TestScores {
            engine,
            report,
            scored,
        })
    };
    Ok(TrainedRun {
        model,
        summary,
        test,
    })
}
