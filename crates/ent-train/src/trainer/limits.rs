//! What a batch can hold: the longest utterance, and the lattice budget of `max_batch_nodes`,
//! checked before the first step.

use crate::config::TrainConfig;
use crate::data::{NodeBudget, PreparedUtt};
use crate::error::TrainError;

/// `(frames, tokens)` of each utterance for the lattice budget: encoder frames estimated from the
/// duration played at speed `slowest` (`ceil(d / slowest / shift) + 1`, at least what the
/// front end gives), tokens of the transcript.
pub(crate) fn lattice_sizes(
    cfg: &TrainConfig,
    utts: &[PreparedUtt],
    slowest: f64,
) -> Vec<(usize, usize)> {
    let shift = cfg.model.front_end.frame_shift_secs();
    utts.iter()
        .map(|u| {
            let frames = (u.duration / slowest / shift).ceil().max(0.0) as usize + 1;
            (frames, u.tokens.len())
        })
        .collect()
}

/// With `max_batch_nodes` set, an error naming the first utterance of `utts` whose lattice alone
/// is over the budget (it could never fit a batch), before any training.
pub(crate) fn check_lattice_budget(
    cfg: &TrainConfig,
    utts: &[PreparedUtt],
    slowest: f64,
    set: &'static str,
) -> Result<(), TrainError> {
    let Some(max) = cfg.max_batch_nodes else {
        return Ok(());
    };
    let sizes = lattice_sizes(cfg, utts, slowest);
    for (u, &(frames, tokens)) in utts.iter().zip(&sizes) {
        let n = NodeBudget::nodes(1, frames, tokens);
        if n > max {
            return Err(TrainError::LatticeTooLarge {
                set,
                id: u.id.clone(),
                secs: u.duration,
                tokens,
                nodes: n,
                frames,
                speed: slowest,
                max,
            });
        }
    }
    Ok(())
}

/// The longest utterance a training or validation batch takes, in seconds (at the slowest
/// speed factor for training): ten minutes. Everything the model holds grows with the length
/// (the conformer's attention with its square: at 40 ms per frame, 15,000 frames and a
/// 225-million-entry score matrix per head), so a longer recording (an hour given as one
/// utterance) could only end in an out-of-memory kill part-way through; it stops training
/// before the first step instead, named. Cut such recordings into segments (a Kaldi
/// `segments` file) or leave them out (`data.max_duration` drops long training utterances).
pub const MAX_UTTERANCE_SECS: f64 = 600.0;

/// An error naming the first utterance of `utts` longer than [`MAX_UTTERANCE_SECS`] when played
/// at speed `slowest`.
pub(crate) fn check_lengths(
    utts: &[PreparedUtt],
    slowest: f64,
    set: &'static str,
) -> Result<(), TrainError> {
    match utts
        .iter()
        .find(|u| u.duration / slowest > MAX_UTTERANCE_SECS)
    {
        None => Ok(()),
        Some(u) => Err(TrainError::TooLong {
            set,
            id: u.id.clone(),
            secs: u.duration,
            speed: slowest,
            max_secs: MAX_UTTERANCE_SECS,
        }),
    }
}
