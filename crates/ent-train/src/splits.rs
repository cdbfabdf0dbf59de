//! The training, validation and test splits of a configuration.

use std::collections::BTreeSet;

use ent_common::rng::SplitMix64;

use crate::config::{Selection, TrainConfig};
use crate::data::{
    BadDataPolicy, DataReport, PreparedUtt, Utterance, Vocab, iemocap_folds, load_manifest, prepare,
};
use crate::error::TrainError;

/// Prepared splits and what preparing them found.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Training utterances.
    pub train: Vec<PreparedUtt>,
    /// Utterances that select the best checkpoint (the test split under [`Selection::Test`]).
    pub valid: Vec<PreparedUtt>,
    /// Test utterances, if a test manifest or IEMOCAP fold is configured.
    pub test: Vec<PreparedUtt>,
    /// Reports of the training, validation and test preparation.
    pub reports: Vec<(String, DataReport)>,
}

/// Loads and checks the data of `cfg`: the training manifest (minus an IEMOCAP test session),
/// a validation manifest or a held-out set of speakers, and the test data.
pub fn load_splits(cfg: &TrainConfig) -> Result<Splits, TrainError> {
    let d = &cfg.data;
    let all = load_manifest(&d.train, d.format, d.data_root.as_deref())?;
    let (mut train_raw, mut test_raw) = match d.iemocap_test_session {
        Some(s) => {
            let folds = iemocap_folds(&all);
            let (_, tr, te) = folds.into_iter().find(|(t, _, _)| *t == s).ok_or_else(|| {
                TrainError::config(
                    "data.iemocap_test_session",
                    s,
                    "no utterances of that session",
                )
            })?;
            (pick(&all, &tr), pick(&all, &te))
        }
        None => (all, Vec::new()),
    };
    if let Some(t) = &d.test {
        test_raw.extend(load_manifest(t, None, d.data_root.as_deref())?);
    }
    let valid_raw = match &d.valid {
        Some(v) => load_manifest(v, None, d.data_root.as_deref())?,
        None => hold_out(&mut train_raw, d.valid_fraction, cfg.seed),
    };
    let vocab = Vocab::characters();
    let eval_policy = BadDataPolicy {
        max_duration: None,
        ..d.policy()
    };
    let mut reports = Vec::new();
    let mut prep = |name: &str,
                    utts: &[Utterance],
                    policy: &BadDataPolicy|
     -> Result<Vec<PreparedUtt>, TrainError> {
        if utts.is_empty() {
            return Ok(Vec::new());
        }
        let p = prepare(utts, &vocab, &d.emotions, policy)?;
        reports.push((name.to_string(), p.report));
        Ok(p.utterances)
    };
    let train = prep("train", &train_raw, &d.policy())?;
    let mut valid = prep("valid", &valid_raw, &eval_policy)?;
    let test = prep("test", &test_raw, &eval_policy)?;
    if cfg.selection == Selection::Test {
        valid = test.clone();
    }
    Ok(Splits {
        train,
        valid,
        test,
        reports,
    })
}

fn pick(all: &[Utterance], idx: &[usize]) -> Vec<Utterance> {
    idx.iter().map(|&i| all[i].clone()).collect()
}

/// Moves `fraction` of the speakers of `train` (of its utterances, when fewer than two
/// speakers are labelled) into a validation split, chosen by `seed`.
fn hold_out(train: &mut Vec<Utterance>, fraction: f64, seed: u64) -> Vec<Utterance> {
    if fraction <= 0.0 || train.len() < 2 {
        return Vec::new();
    }
    let mut rng = SplitMix64::new(seed ^ 0x0DD5_EED5);
    let speakers: BTreeSet<&str> = train.iter().filter_map(|u| u.speaker.as_deref()).collect();
    let held: Vec<bool> = if speakers.len() >= 2 && train.iter().all(|u| u.speaker.is_some()) {
        let mut list: Vec<&str> = speakers.into_iter().collect();
        shuffle(&mut list, &mut rng);
        let n = ((list.len() as f64 * fraction).round() as usize).clamp(1, list.len() - 1);
        let chosen: BTreeSet<String> = list[..n].iter().map(|s| s.to_string()).collect();
        train
            .iter()
            .map(|u| u.speaker.as_ref().is_some_and(|s| chosen.contains(s)))
            .collect()
    } else {
        let mut idx: Vec<usize> = (0..train.len()).collect();
        shuffle(&mut idx, &mut rng);
        let n = ((train.len() as f64 * fraction).round() as usize).clamp(1, train.len() - 1);
        let chosen: BTreeSet<usize> = idx[..n].iter().copied().collect();
        (0..train.len()).map(|i| chosen.contains(&i)).collect()
    };
    let mut valid = Vec::new();
    let mut keep = Vec::new();
    for (u, h) in train.drain(..).zip(held) {
        if h { valid.push(u) } else { keep.push(u) }
    }
    *train = keep;
    valid
}

fn shuffle<T>(v: &mut [T], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        let j = rng.range_inclusive(0, i);
        v.swap(i, j);
    }
}
