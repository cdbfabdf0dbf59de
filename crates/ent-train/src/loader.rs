//! Batches prepared ahead: a background thread does the host's share of the coming batches
//! (audio loading, joining, loudness matching, speed and gain perturbation, filterbanks, padding and
//! their SpecAugment; see [`FeatureSource::host_inputs`]) while the model works on the current
//! one, and hands them over in order, each with its job, through a bounded channel.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use ent_features::SpecAugment;

use crate::data::PreparedUtt;
use crate::error::TrainError;
use crate::features::{FeatureSource, HostInputs};

/// How one training example is perturbed (see [`crate::AugmentConfig`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ExampleAug {
    /// Speed factor (1.0: none).
    pub speed: f64,
    /// SpecAugment seed.
    pub seed: u64,
    /// Gain in dB (0.0: none).
    pub gain_db: f64,
}

/// One batch to prepare: the indices of its utterances and each one's perturbation (empty:
/// none).
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub utts: Vec<usize>,
    pub aug: Vec<ExampleAug>,
}

/// What every job shares.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub features: &'a FeatureSource,
    pub utts: &'a [PreparedUtt],
    pub match_loudness: bool,
    pub specaug: Option<&'a SpecAugment>,
}

impl Source<'_> {
    /// The host's share of one batch.
    fn prepare(&self, job: &Job) -> Result<HostInputs, TrainError> {
        let list: Vec<Vec<_>> = job
            .utts
            .iter()
            .map(|&i| {
                let u = &self.utts[i];
                std::iter::once((u.id.as_str(), u.audio.as_path(), u.segment))
                    .chain(
                        u.then
                            .iter()
                            .map(|p| (p.id.as_str(), p.audio.as_path(), p.segment)),
                    )
                    .collect()
            })
            .collect();
        let speeds: Vec<f64> = job.aug.iter().map(|a| a.speed).collect();
        let seeds: Vec<u64> = job.aug.iter().map(|a| a.seed).collect();
        let gains: Vec<f64> = job.aug.iter().map(|a| a.gain_db).collect();
        let augment = match self.specaug {
            Some(sa) if !job.aug.is_empty() => Some((sa, seeds.as_slice())),
            _ => None,
        };
        self.features
            .host_inputs(&list, &speeds, &gains, self.match_loudness, augment)
    }
}

/// A prepared batch: its job and the host's share of its inputs.
pub(crate) type Prepared = Result<(Job, HostInputs), TrainError>;

/// The prepared batches of a list of jobs, in order.
pub(crate) enum Loader<'scope, 'a> {
    /// Prepared on the caller's thread when asked for (no prefetching).
    Inline {
        source: Source<'a>,
        jobs: std::vec::IntoIter<Job>,
    },
    /// Prepared by a background thread, up to the channel's bound ahead of the caller.
    Background {
        rx: Receiver<Prepared>,
        thread: Option<ScopedJoinHandle<'scope, ()>>,
    },
}

impl<'scope, 'a> Loader<'scope, 'a> {
    /// Prepares `jobs` in a thread of `scope`, keeping up to `ahead` finished batches waiting
    /// (one more is being prepared); `ahead` 0: on the caller's thread instead. The thread stops
    /// after the first error (handed over in its turn) or when the loader is dropped.
    pub fn new(
        scope: &'scope Scope<'scope, 'a>,
        source: Source<'a>,
        jobs: Vec<Job>,
        ahead: usize,
    ) -> Self {
        if ahead == 0 || jobs.is_empty() {
            return Loader::Inline {
                source,
                jobs: jobs.into_iter(),
            };
        }
        let (tx, rx) = sync_channel(ahead.min(jobs.len()));
        let thread = scope.spawn(move || feed(source, jobs, tx));
        Loader::Background {
            rx,
            thread: Some(thread),
        }
    }

    /// The next job and its batch.
    pub fn next_batch(&mut self) -> Prepared {
        match self {
            Loader::Inline { source, jobs } => match jobs.next() {
                Some(job) => source.prepare(&job).map(|host| (job, host)),
                None => Err(TrainError::Exhausted),
            },
            Loader::Background { rx, thread } => match rx.recv() {
                Ok(batch) => batch,
                // The thread has ended: after its last job, or by a panic, which goes on here.
                Err(_) => {
                    if let Some(Err(panic)) = thread.take().map(ScopedJoinHandle::join) {
                        std::panic::resume_unwind(panic);
                    }
                    Err(TrainError::Exhausted)
                }
            },
        }
    }
}

/// The background thread: prepares each job and sends it, until the jobs run out, one fails
/// or the receiver is gone.
fn feed(source: Source<'_>, jobs: Vec<Job>, tx: SyncSender<Prepared>) {
    for job in jobs {
        let batch = source.prepare(&job).map(|host| (job, host));
        let failed = batch.is_err();
        if tx.send(batch).is_err() || failed {
            return;
        }
    }
}
