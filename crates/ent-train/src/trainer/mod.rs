//! The training loop: bucketed batches, AdamW with the cosine schedule, gradient accumulation
//! and clipping, validation with best-checkpoint selection, a JSONL metrics log, atomic
//! checkpoints and exact resumption; each step and epoch reported to a [`TrainObserver`].

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use ent_common::rng::SplitMix64;
use ent_features::SpecAugment;
use ent_model::{Features, FrameUnlabelled, FrontEnd, Mode, Model, SeededVarMap, Targets};
use serde::Serialize;

use crate::checkpoint::{Checkpoint, CheckpointMeta, TrainState};
use crate::config::{SelectMetric, TrainConfig};
use crate::data::{NodeBudget, PreparedUtt, Vocab, budgeted_batches, joined_examples};
use crate::error::TrainError;
use crate::features::{FeatureSource, HostInputs};
use crate::loader::{ExampleAug, Job, Loader, Source};
use crate::observe::{EpochStart, EpochSummary, LogLine, StepStats, TrainObserver};
use crate::optim::{self, AdamW, CosineSchedule};

mod eval;
mod limits;

pub use eval::EvalScores;
pub use limits::MAX_UTTERANCE_SECS;
use limits::{check_lattice_budget, check_lengths, lattice_sizes};

/// File name of the newest checkpoint in the output folder.
pub const LAST: &str = "last.safetensors";
/// File name of the best checkpoint on the selection split.
pub const BEST: &str = "best.safetensors";
/// File name of the metrics log.
pub const METRICS: &str = "metrics.jsonl";

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Optimiser steps taken in total.
    pub steps: u64,
    /// Best selection score and its step.
    pub best: Option<(f64, u64)>,
    /// Scores of the last validation.
    pub last_valid: Option<EvalScores>,
}

/// A training run over prepared utterances.
pub struct Trainer {
    cfg: TrainConfig,
    dev: Device,
    vars: SeededVarMap,
    model: Model,
    opt: AdamW,
    features: Arc<FeatureSource>,
    train: Arc<Vec<PreparedUtt>>,
    valid: Vec<PreparedUtt>,
    vocab: Vocab,
    state: TrainState,
    rng: SplitMix64,
    out_dir: PathBuf,
    log: File,
    batches_per_epoch: u64,
    schedule: CosineSchedule,
    specaug: Option<SpecAugment>,
}

/// Salt of the augmentation streams (one per optimiser step and batch).
const AUGMENT_SALT: u64 = 0xA06D_5EED_0000_0000;

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("out_dir", &self.out_dir)
            .field("state", &self.state)
            .field("train", &self.train.len())
            .field("valid", &self.valid.len())
            .finish()
    }
}

/// The optimiser steps of one epoch still to take.
struct EpochPlan {
    /// Batches in the epoch.
    batches: usize,
    /// Batches consumed before (a resumed run).
    done: usize,
    /// Batches of the groups skipped as done (at most `done`).
    skipped: usize,
    /// The groups of batches to run, one optimiser step each.
    todo: Vec<Vec<Vec<usize>>>,
    /// Whether `max_steps` ends the run inside this epoch.
    stopped: bool,
}

/// Whether a validation `score` (higher is better) with validation `loss` beats the best so
/// far: a higher score, or an equal score with a lower loss.
fn improves(best: Option<(f64, u64)>, best_loss: Option<f64>, score: f64, loss: f64) -> bool {
    match best {
        None => true,
        Some((b, _)) => score > b || (score == b && best_loss.is_none_or(|l| loss < l)),
    }
}

impl Trainer {
    /// A fresh run: the model of `cfg.model` initialised from `cfg.seed`, on `dev`, writing
    /// checkpoints and `metrics.jsonl` to `out_dir`. For a filterbank front end the global CMVN
    /// statistics are computed over `train` here.
    pub fn new(
        cfg: TrainConfig,
        train: Vec<PreparedUtt>,
        valid: Vec<PreparedUtt>,
        out_dir: &Path,
        dev: &Device,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        if train.is_empty() {
            return Err(TrainError::NoUtterances { set: "training" });
        }
        // Before any audio is read (the CMVN pass below reads all of it).
        check_lengths(&train, cfg.augment.slowest(), "training")?;
        check_lengths(&valid, 1.0, "validation")?;
        let vars = SeededVarMap::new(cfg.seed);
        let model = Model::new(&cfg.model, vars.var_builder(DType::F32, dev))?;
        let mut features =
            FeatureSource::new(&cfg.model, cfg.backbone.as_deref(), cfg.cache_features, dev)?;
        features.set_backbone_dtype(cfg.backbone_dtype.dtype())?;
        if let FrontEnd::Fbank { .. } = cfg.model.front_end {
            let list: Vec<_> = train
                .iter()
                .map(|u| (u.id.as_str(), u.audio.as_path(), u.segment))
                .collect();
            if let Some(cmvn) = features.cmvn(&list)? {
                let data = vars
                    .var_map()
                    .data()
                    .lock()
                    .map_err(|_| TrainError::Poisoned { what: "var map" })?;
                for (name, values) in [
                    ("front_end.cmvn.mean", cmvn.mean()),
                    ("front_end.cmvn.scale", cmvn.scale()),
                ] {
                    let var = data
                        .get(name)
                        .ok_or(TrainError::MissingParameter { name })?;
                    var.set(&Tensor::new(values, dev)?)?;
                }
            }
        }
        let trainable: Vec<_> = vars
            .var_map()
            .data()
            .lock()
            .map_err(|_| TrainError::Poisoned { what: "var map" })?
            .iter()
            .filter(|(n, _)| !Model::is_buffer(n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let opt = AdamW::new(trainable, cfg.optim.clone())?;
        let vocab = Vocab::characters();
        let mut train = train;
        if cfg.join.examples > 0 {
            if let Some(u) = train.iter().find(|u| !u.then.is_empty()) {
                return Err(TrainError::AlreadyJoined { id: u.id.clone() });
            }
            let joined = joined_examples(
                &train,
                &cfg.join,
                cfg.model.neutral,
                vocab.space(),
                cfg.seed,
            );
            if joined.is_empty() {
                return Err(TrainError::config(
                    "join.examples",
                    cfg.join.examples,
                    "no speaker has three neutral training utterances to join",
                ));
            }
            train.extend(joined);
        }
        // Joined examples are longer than their parts.
        check_lengths(&train, cfg.augment.slowest(), "training")?;
        check_lattice_budget(&cfg, &train, cfg.augment.slowest(), "training")?;
        check_lattice_budget(&cfg, &valid, 1.0, "validation")?;
        std::fs::create_dir_all(out_dir).map_err(|e| TrainError::io(out_dir, e.to_string()))?;
        let log_path = out_dir.join(METRICS);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| TrainError::io(&log_path, e.to_string()))?;
        let batches_per_epoch = Self::epoch_batches(&cfg, &train, 0).len() as u64;
        let steps_per_epoch = batches_per_epoch.div_ceil(cfg.accumulate as u64).max(1);
        let schedule = CosineSchedule {
            peak: cfg.optim.lr,
            start: cfg.optim.warmup_start_lr,
            min: cfg.optim.min_lr,
            warmup_steps: (cfg.optim.warmup_epochs * steps_per_epoch as f64).round() as u64,
            total_steps: cfg.epochs * steps_per_epoch,
        };
        let specaug = cfg.augment.spec_augment()?;
        let rng = SplitMix64::new(cfg.seed ^ 0x5EED_D80F_0000_0000);
        let state = TrainState {
            rng_state: rng.state(),
            ..Default::default()
        };
        Ok(Self {
            vocab,
            cfg,
            dev: dev.clone(),
            vars,
            model,
            opt,
            features: Arc::new(features),
            train: Arc::new(train),
            valid,
            state,
            rng,
            out_dir: out_dir.to_path_buf(),
            log,
            batches_per_epoch,
            schedule,
            specaug,
        })
    }

    /// Continues from a checkpoint written by this trainer: weights, optimiser moments, step,
    /// position in the epoch and generator state. The data and configuration must be the ones
    /// the checkpoint was trained with.
    pub fn resume(&mut self, path: &Path) -> Result<(), TrainError> {
        let ck = Checkpoint::load(path, &self.dev)?;
        if ck.meta.model != self.cfg.model {
            return Err(TrainError::io(
                path,
                "the checkpoint's model config differs from the training config",
            ));
        }
        let state = ck.meta.state.clone().ok_or_else(|| {
            TrainError::io(path, "an inference-only checkpoint cannot be resumed")
        })?;
        crate::checkpoint::load_vars(self.vars.var_map(), &ck.model, path)?;
        self.opt
            .load_state(&ck.optim, state.step)
            .map_err(|e| TrainError::io(path, e))?;
        self.rng = SplitMix64::new(state.rng_state);
        self.state = state;
        Ok(())
    }

    /// The model being trained.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The model's variables by name.
    pub fn var_map(&self) -> &candle_nn::VarMap {
        self.vars.var_map()
    }

    /// Where training stands.
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// How many joined examples ([`crate::data::joined_examples`]) the training set holds.
    pub fn joined(&self) -> usize {
        self.train.iter().filter(|u| !u.then.is_empty()).count()
    }

    /// Optimiser steps in the whole run.
    pub fn total_steps(&self) -> u64 {
        self.schedule.total_steps
    }

    fn epoch_batches(cfg: &TrainConfig, train: &[PreparedUtt], epoch: u64) -> Vec<Vec<usize>> {
        let lengths: Vec<f64> = train.iter().map(|u| u.duration).collect();
        let sizes = lattice_sizes(cfg, train, cfg.augment.slowest());
        budgeted_batches(
            &lengths,
            cfg.batch_size,
            cfg.max_batch_secs,
            cfg.max_batch_nodes.map(|max_nodes| NodeBudget {
                max_nodes,
                sizes: &sizes,
            }),
            cfg.seed,
            epoch,
            true,
        )
    }

    /// The checkpoint of the current state.
    pub fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        let data = self
            .vars
            .var_map()
            .data()
            .lock()
            .map_err(|_| TrainError::Poisoned { what: "var map" })?;
        let model = data
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let mut notes = BTreeMap::new();
        notes.insert(
            "train_config".to_string(),
            serde_json::to_string(&self.cfg).map_err(TrainError::ConfigJson)?,
        );
        Ok(Checkpoint {
            meta: CheckpointMeta {
                model: self.cfg.model.clone(),
                vocab: self.vocab.clone(),
                emotions: self.cfg.data.emotions.clone(),
                state: Some(TrainState {
                    rng_state: self.rng.state(),
                    ..self.state.clone()
                }),
                notes,
            },
            model,
            optim: self.opt.state().into_iter().collect(),
        })
    }

    fn save(&self, name: &str) -> Result<PathBuf, TrainError> {
        let path = self.out_dir.join(name);
        self.checkpoint()?.save(&path)?;
        Ok(path)
    }

    /// Appends `record` to `metrics.jsonl` as a line of kind `kind`.
    fn log_line(&mut self, kind: &'static str, record: &impl Serialize) -> Result<(), TrainError> {
        let path = self.out_dir.join(METRICS);
        let mut s = serde_json::to_string(&LogLine { kind, record })
            .map_err(|e| TrainError::io(&path, e.to_string()))?;
        s.push('\n');
        ent_common::fs::append(&mut self.log, &path, s.as_bytes())
            .map_err(|e| TrainError::io(&path, e.to_string()))
    }

    /// The perturbation of each example of batch `batch_no` of optimiser step `step` (empty
    /// when augmentation is off): drawn from a stream of the run's seed, the step and the
    /// batch, so that a resumed run draws the same.
    fn draw_augment(&self, step: u64, n: usize, batch_no: usize) -> Vec<ExampleAug> {
        let a = &self.cfg.augment;
        if !a.is_on() {
            return Vec::new();
        }
        let mut r = SplitMix64::new(
            self.cfg.seed ^ AUGMENT_SALT ^ step.wrapping_mul(1 << 16) ^ batch_no as u64,
        );
        (0..n)
            .map(|_| ExampleAug {
                speed: if a.speed.is_empty() {
                    1.0
                } else {
                    a.speed[r.range_inclusive(0, a.speed.len() - 1)]
                },
                seed: r.next_u64(),
                // Drawn last, and only when asked for, so that runs without it draw as before.
                gain_db: match a.gain_db {
                    Some([lo, hi]) if lo != 0.0 || hi != 0.0 => lo + (hi - lo) * r.uniform(),
                    _ => 0.0,
                },
            })
            .collect()
    }

    /// Forward pass and loss of one batch from its prepared inputs `host`, each example
    /// perturbed as `aug` says (empty: none); also the utterance-head logits `[B, K]` and the
    /// labels, for scoring.
    fn run_batch(
        &self,
        utts: &[&PreparedUtt],
        aug: &[ExampleAug],
        host: HostInputs,
        mode: &mut Mode,
    ) -> Result<(ent_model::Losses, Tensor, Vec<u32>), TrainError> {
        let speeds: Vec<f64> = aug.iter().map(|a| a.speed).collect();
        let inputs = self.features.upload(host, &self.dev)?;
        let feats = match self.cfg.model.front_end {
            FrontEnd::Fbank { .. } => Features::Fbank(&inputs.features),
            FrontEnd::Backbone { .. } => Features::Hidden(&inputs.features),
        };
        let u = utts.iter().map(|x| x.tokens.len()).max().unwrap_or(0);
        let mut tok = vec![0u32; utts.len() * u];
        for (b, x) in utts.iter().enumerate() {
            tok[b * u..b * u + x.tokens.len()].copy_from_slice(&x.tokens);
        }
        let tokens = Tensor::from_vec(tok, (utts.len(), u), &self.dev)?;
        let token_lens: Vec<usize> = utts.iter().map(|x| x.tokens.len()).collect();
        let emotions: Vec<u32> = utts.iter().map(|x| x.emotion as u32).collect();
        let intensity: Vec<Option<f32>> = utts.iter().map(|x| x.intensity).collect();
        let gender: Vec<Option<u32>> = utts.iter().map(|x| x.gender.map(|g| g as u32)).collect();
        let out = self
            .model
            .forward(feats, &inputs.lens, &tokens, &token_lens, mode)?;
        let frame_emotions = self.frame_emotions(utts, &speeds, &out.frame_lens);
        let targets = Targets::new(&tokens, &token_lens, &emotions)
            .with_aux(&intensity, &gender)
            .with_frame_emotions(&frame_emotions);
        let losses = self.model.loss(&out, &targets, &self.cfg.loss)?;
        Ok((losses, out.utterance_logits, emotions))
    }

    /// The frame labels of a batch for the frame loss (none when it is off): from each
    /// example's spans (in time scaled by its speed factor, when `speeds` has one), else, as
    /// configured, its utterance label on every frame.
    fn frame_emotions(
        &self,
        utts: &[&PreparedUtt],
        speeds: &[f64],
        frame_lens: &[usize],
    ) -> Vec<Option<Vec<u32>>> {
        let loss = &self.cfg.loss;
        if loss.frame <= 0.0 {
            return Vec::new();
        }
        frame_labels(
            utts,
            speeds,
            frame_lens,
            self.cfg.model.front_end.frame_shift_secs(),
            self.cfg.model.neutral,
            loss.frame_unlabelled,
        )
    }

    fn last_good(&self) -> String {
        let p = self.out_dir.join(LAST);
        if p.exists() {
            p.display().to_string()
        } else {
            "none (no checkpoint written yet)".to_string()
        }
    }

    /// One optimiser step over the next `batches` batches of `loader` (gradient
    /// accumulation): its mean losses, learning rate, gradient norm and rate
    /// (`batches_done` is the caller's to fill in).
    fn step(
        &mut self,
        batches: usize,
        loader: &mut Loader<'_, '_>,
    ) -> Result<StepStats, TrainError> {
        let started = Instant::now();
        let mut acc = BTreeMap::new();
        let mut sums = [0f64; 5];
        let mut group = Vec::with_capacity(batches);
        for _ in 0..batches {
            let (job, host) = loader.next_batch()?;
            let utts: Vec<&PreparedUtt> = job.utts.iter().map(|&i| &self.train[i]).collect();
            let mut rng = SplitMix64::new(self.rng.next_u64());
            let (losses, _, _) =
                self.run_batch(&utts, &job.aug, host, &mut Mode::train(&mut rng))?;
            // One read from the device per batch: each utterance's loss (for the finiteness
            // check), then the total, RNN-T, lattice, head and frame losses (for the log).
            let scalars = [
                &losses.total,
                &losses.rnnt,
                &losses.lattice,
                &losses.head,
                &losses.frame,
            ]
            .map(|t| t.to_dtype(DType::F64).and_then(|t| t.reshape(1)));
            let mut parts = vec![losses.per_utterance.to_dtype(DType::F64)?];
            for t in scalars {
                parts.push(t?);
            }
            let read = Tensor::cat(&parts, 0)?.to_vec1::<f64>()?;
            let (per, means) = read.split_at(utts.len());
            let bad: Vec<&str> = per
                .iter()
                .zip(&utts)
                .filter(|(l, _)| !l.is_finite())
                .map(|(_, u)| u.id.as_str())
                .collect();
            if !bad.is_empty() {
                return Err(TrainError::NonFiniteLoss {
                    step: self.state.step,
                    epoch: self.state.epoch,
                    ids: bad.join(", "),
                    last_good: self.last_good(),
                });
            }
            let grads = losses.total.backward()?;
            optim::accumulate(&mut acc, &grads, self.opt.vars())?;
            for (s, m) in sums.iter_mut().zip(means) {
                *s += m / batches as f64;
            }
            group.push(job);
        }
        optim::scale(&mut acc, 1.0 / batches as f64)?;
        let norm = optim::clip_grad_norm(&mut acc, self.cfg.optim.clip_grad_norm)?;
        if !norm.is_finite() {
            let ids: Vec<&str> = group
                .iter()
                .flat_map(|j| &j.utts)
                .map(|&i| self.train[i].id.as_str())
                .collect();
            return Err(TrainError::NonFiniteLoss {
                step: self.state.step,
                epoch: self.state.epoch,
                ids: format!(
                    "{} (the loss is finite, its gradient is not)",
                    ids.join(", ")
                ),
                last_good: self.last_good(),
            });
        }
        let lr = self.schedule.lr(self.state.step);
        self.opt.step(&acc, lr)?;
        self.state.step += 1;
        let utts: usize = group.iter().map(|j| j.utts.len()).sum();
        let [loss, rnnt, lattice, head, frame] = sums;
        Ok(StepStats {
            step: self.state.step,
            epoch: self.state.epoch,
            loss,
            rnnt,
            lattice,
            head,
            frame: (self.cfg.loss.frame > 0.0).then_some(frame),
            lr,
            grad_norm: norm,
            utt_per_sec: utts as f64 / started.elapsed().as_secs_f64().max(1e-9),
            batches: batches as u64,
            batches_done: 0,
        })
    }

    fn score(&self, s: &EvalScores) -> f64 {
        match self.cfg.select_metric {
            SelectMetric::Ua => s.ua,
            SelectMetric::Wa => s.wa,
            SelectMetric::Loss => -s.loss,
        }
    }

    /// Trains to the configured number of epochs (or `max_steps`), validating and writing
    /// `last.safetensors` after every epoch and `best.safetensors` whenever the selection score
    /// improves (equal scores: when the validation loss is lower). Silent: see
    /// [`Trainer::run_observed`] for progress.
    pub fn run(&mut self) -> Result<Summary, TrainError> {
        self.run_observed(&mut ())
    }

    /// [`Trainer::run`], telling `observer` of every step and epoch.
    pub fn run_observed(
        &mut self,
        observer: &mut dyn TrainObserver,
    ) -> Result<Summary, TrainError> {
        let mut last_valid = None;
        while self.state.epoch < self.cfg.epochs {
            let epoch = self.state.epoch;
            let started = Instant::now();
            let plan = self.plan_epoch();
            observer.epoch_started(&EpochStart {
                epoch,
                epochs: self.cfg.epochs,
                batches: plan.batches as u64,
                done: plan.done as u64,
            });
            let train_loss = self.train_epoch(&plan, observer)?;
            if plan.stopped {
                observer.stopped(self.state.step);
                break;
            }
            let summary = self.end_epoch(train_loss, started)?;
            observer.epoch_finished(&summary);
            last_valid = summary.valid;
        }
        Ok(Summary {
            steps: self.state.step,
            best: self.state.best,
            last_valid,
        })
    }

    /// The optimiser steps still to take in this epoch: a resumed run skips the groups done,
    /// `max_steps` may end the run early.
    fn plan_epoch(&self) -> EpochPlan {
        let batches = Self::epoch_batches(&self.cfg, &self.train, self.state.epoch);
        let groups: Vec<Vec<Vec<usize>>> = batches
            .chunks(self.cfg.accumulate)
            .map(|c| c.to_vec())
            .collect();
        let done = self.state.batch_in_epoch as usize;
        let mut first = 0usize;
        let mut skipped = 0usize;
        for group in &groups {
            if skipped + group.len() > done {
                break;
            }
            skipped += group.len();
            first += 1;
        }
        let allowed = self
            .cfg
            .max_steps
            .map_or(usize::MAX, |m| m.saturating_sub(self.state.step) as usize);
        let last = first.saturating_add(allowed).min(groups.len());
        EpochPlan {
            batches: batches.len(),
            done,
            skipped,
            stopped: last < groups.len(),
            todo: groups[first..last].to_vec(),
        }
    }

    /// Takes the planned steps (each batch with its perturbation, prepared ahead by the
    /// loader), logging each to `metrics.jsonl` and `observer`; the mean total loss.
    fn train_epoch(
        &mut self,
        plan: &EpochPlan,
        observer: &mut dyn TrainObserver,
    ) -> Result<f64, TrainError> {
        let jobs: Vec<Job> = plan
            .todo
            .iter()
            .enumerate()
            .flat_map(|(k, group)| {
                group
                    .iter()
                    .enumerate()
                    .map(move |(batch_no, batch)| (k, batch_no, batch))
            })
            .map(|(k, batch_no, batch)| Job {
                utts: batch.clone(),
                aug: self.draw_augment(self.state.step + k as u64, batch.len(), batch_no),
            })
            .collect();
        let mut consumed = plan.skipped;
        let mut loss_sum = 0f64;
        let features = Arc::clone(&self.features);
        let train = Arc::clone(&self.train);
        let specaug = self.specaug.clone();
        let source = Source {
            features: &features,
            utts: &train,
            match_loudness: self.cfg.join.match_loudness,
            specaug: specaug.as_ref(),
        };
        std::thread::scope(|scope| -> Result<(), TrainError> {
            let mut loader = Loader::new(scope, source, jobs, self.cfg.prefetch_batches);
            for group in &plan.todo {
                let mut stats = self.step(group.len(), &mut loader)?;
                consumed += group.len();
                stats.batches_done = consumed as u64;
                self.state.batch_in_epoch = consumed as u64;
                loss_sum += stats.loss;
                self.log_line("step", &stats)?;
                observer.step(&stats);
                if self
                    .cfg
                    .save_every_steps
                    .is_some_and(|n| n > 0 && self.state.step.is_multiple_of(n))
                {
                    self.save(LAST)?;
                }
            }
            Ok(())
        })?;
        Ok(loss_sum / plan.todo.len().max(1) as f64)
    }

    /// Ends the epoch: validation, `best.safetensors` when the score improves,
    /// `last.safetensors`, the epoch's line in `metrics.jsonl`.
    fn end_epoch(&mut self, train_loss: f64, started: Instant) -> Result<EpochSummary, TrainError> {
        let epoch = self.state.epoch;
        self.state.epoch += 1;
        self.state.batch_in_epoch = 0;
        let valid = if self.valid.is_empty() {
            None
        } else {
            Some(self.evaluate(&self.valid)?)
        };
        let mut improved = false;
        if let Some(v) = &valid {
            let s = self.score(v);
            if improves(self.state.best, self.state.best_loss, s, v.loss) {
                self.state.best = Some((s, self.state.step));
                self.state.best_loss = Some(v.loss);
                self.save(BEST)?;
                improved = true;
            }
        }
        self.save(LAST)?;
        let summary = EpochSummary {
            epoch,
            epochs: self.cfg.epochs,
            step: self.state.step,
            train_loss,
            valid,
            best: self.state.best,
            improved,
            seconds: started.elapsed().as_secs_f64(),
        };
        self.log_line("epoch", &summary)?;
        Ok(summary)
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> u64 {
        self.batches_per_epoch
    }
}

/// Per-frame classes of each example for `frame_lens[b]` frames `shift` seconds apart: from its
/// spans, read at times scaled by its speed factor (`speeds[b]`, 1 when absent: a frame
/// `shift` apart in audio sped up by `f` is `shift * f` apart in the original, where the spans
/// are), else per `unlabelled` its utterance label everywhere or nothing.
fn frame_labels(
    utts: &[&PreparedUtt],
    speeds: &[f64],
    frame_lens: &[usize],
    shift: f64,
    neutral: usize,
    unlabelled: FrameUnlabelled,
) -> Vec<Option<Vec<u32>>> {
    utts.iter()
        .zip(frame_lens)
        .enumerate()
        .map(|(b, (u, &len))| {
            let f = speeds.get(b).copied().unwrap_or(1.0);
            u.frame_classes(len, shift * f, neutral).or_else(|| {
                (unlabelled == FrameUnlabelled::Utterance).then(|| vec![u.emotion as u32; len])
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{FrameUnlabelled, frame_labels, improves};
    use crate::data::{EmotionSpan, PreparedUtt};

    fn utt(emotion: usize, spans: Vec<EmotionSpan>) -> PreparedUtt {
        PreparedUtt {
            id: "u".into(),
            audio: "u.wav".into(),
            segment: ent_features::Segment::WHOLE,
            then: Vec::new(),
            text: "A".into(),
            tokens: vec![3],
            emotion,
            duration: 3.0,
            gender: None,
            intensity: None,
            speaker: None,
            session: None,
            intervals: Vec::new(),
            spans,
            sentences: Vec::new(),
        }
    }

    /// A span of 1.0-2.0 s in audio played 1.25 times as fast lies at 0.8-1.6 s: frames 20..40
    /// of 40 ms (centres 0.82..1.58 s); without speed-up at frames 25..50.
    #[test]
    fn frame_labels_follow_sped_up_spans() {
        let span = EmotionSpan {
            start: 1.0,
            end: 2.0,
            class: 1,
        };
        let a = utt(1, vec![span]);
        let b = utt(2, vec![]);
        let expect = |range: std::ops::Range<usize>| -> Vec<u32> {
            (0..60)
                .map(|f| if range.contains(&f) { 1 } else { 3 })
                .collect()
        };
        let got = frame_labels(
            &[&a, &b],
            &[1.25, 0.9],
            &[60, 7],
            0.04,
            3,
            FrameUnlabelled::Utterance,
        );
        assert_eq!(got[0].as_deref(), Some(&expect(20..40)[..]));
        assert_eq!(got[1], Some(vec![2; 7]));
        let plain = frame_labels(&[&a, &b], &[], &[60, 7], 0.04, 3, FrameUnlabelled::Skip);
        assert_eq!(plain[0].as_deref(), Some(&expect(25..50)[..]));
        assert_eq!(plain[1], None);
    }

    #[test]
    fn equal_scores_are_decided_by_the_loss() {
        assert!(improves(None, None, 0.0, 9.0));
        assert!(improves(Some((90.0, 10)), Some(1.0), 95.0, 2.0));
        assert!(!improves(Some((90.0, 10)), Some(1.0), 85.0, 0.1));
        assert!(improves(Some((100.0, 10)), Some(1.0), 100.0, 0.5));
        assert!(!improves(Some((100.0, 10)), Some(1.0), 100.0, 1.0));
        assert!(!improves(Some((100.0, 10)), Some(1.0), 100.0, 1.5));
        // A checkpoint written before losses were recorded: an equal score wins.
        assert!(improves(Some((100.0, 10)), None, 100.0, 1.5));
    }
}
