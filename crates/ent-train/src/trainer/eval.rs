//! Teacher-forced scores of the model on a split (validation during training).

use candle_core::DType;
use ent_decode::metrics::Confusion;
use ent_model::Mode;
use serde::Serialize;

use super::Trainer;
use super::limits::lattice_sizes;
use crate::data::{NodeBudget, PreparedUtt, budgeted_batches};
use crate::error::TrainError;
use crate::loader::{Job, Loader, Source};

/// Scores of the model on a split, teacher-forced (the transcript feeds the predictor).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvalScores {
    /// Mean total loss per utterance.
    pub loss: f64,
    /// Weighted accuracy of the utterance head, percent.
    pub wa: f64,
    /// Unweighted (mean per-class) accuracy of the utterance head, percent; classes absent from
    /// the split are left out of the mean.
    pub ua: f64,
    /// Utterances scored.
    pub utterances: usize,
}

impl Trainer {
    /// Teacher-forced loss and utterance-head accuracy over `utts`, in batches of the training
    /// batch size, without dropout.
    pub fn evaluate(&self, utts: &[PreparedUtt]) -> Result<EvalScores, TrainError> {
        let k = self.cfg.model.num_emotions;
        let mut confusion = Confusion::new((0..k).map(|c| c.to_string()).collect());
        let mut loss = 0f64;
        let lengths: Vec<f64> = utts.iter().map(|u| u.duration).collect();
        let sizes = lattice_sizes(&self.cfg, utts, 1.0);
        let budget = self.cfg.max_batch_nodes.map(|max_nodes| NodeBudget {
            max_nodes,
            sizes: &sizes,
        });
        let batches = budgeted_batches(
            &lengths,
            self.cfg.batch_size.max(8),
            self.cfg.max_batch_secs,
            budget,
            0,
            0,
            false,
        );
        let count = batches.len();
        let jobs: Vec<Job> = batches
            .into_iter()
            .map(|utts| Job {
                utts,
                aug: Vec::new(),
            })
            .collect();
        let source = Source {
            features: &self.features,
            utts,
            match_loudness: self.cfg.join.match_loudness,
            specaug: None,
        };
        std::thread::scope(|scope| -> Result<(), TrainError> {
            let mut loader = Loader::new(scope, source, jobs, self.cfg.prefetch_batches);
            for _ in 0..count {
                let (job, host) = loader.next_batch()?;
                let refs: Vec<&PreparedUtt> = job.utts.iter().map(|&i| &utts[i]).collect();
                let (l, logits, emotions) = self.run_batch(&refs, &[], host, &mut Mode::eval())?;
                loss += l
                    .per_utterance
                    .to_dtype(DType::F64)?
                    .sum_all()?
                    .to_scalar::<f64>()?;
                let pred = logits.argmax(1)?.to_vec1::<u32>()?;
                for (&p, &e) in pred.iter().zip(&emotions) {
                    confusion.add(e as usize, p as usize)?;
                }
            }
            Ok(())
        })?;
        let n = confusion.total() as usize;
        Ok(EvalScores {
            loss: loss / n.max(1) as f64,
            wa: confusion.wa().unwrap_or(0.0),
            ua: confusion.ua().unwrap_or(0.0),
            utterances: n,
        })
    }
}
