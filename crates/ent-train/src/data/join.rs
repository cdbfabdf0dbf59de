//! Longer training examples made by joining utterances of one speaker: neutral, then any
//! utterance, then neutral, labelled with the middle one's emotion.
//!
//! Utterance-level corpora whose emotional utterances are emotional from the first frame to the
//! last (acted corpora, the synthetic demo corpus) never show the model an emotion starting or
//! ending inside an utterance, nor an utterance of several sentences. Joined examples show both,
//! in the shape that emotion diarization scores (neutral, emotion, neutral; docs/method.md §6), while
//! keeping utterance-level labels only: the lattice pooling still decides which frames carry
//! the emotion. Off by default; the paper trains on IEMOCAP utterances as they are.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ent_common::rng::SplitMix64;
use ent_features::Segment;
use serde::{Deserialize, Serialize};

use super::PreparedUtt;
use super::utterance::segment_serde;

/// How many joined examples to add to the training set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JoinConfig {
    /// Joined examples added to the training set (built once, from the run's seed).
    pub examples: usize,
    /// Joined examples this long or longer are not built (another draw is made).
    pub max_duration: Option<f64>,
}

impl Default for JoinConfig {
    fn default() -> Self {
        Self {
            examples: 0,
            max_duration: Some(18.75),
        }
    }
}

/// One more stretch of audio appended to a training example's own (see
/// [`PreparedUtt::then`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Piece {
    /// The id of the utterance the audio belongs to (its features are cached under it).
    pub id: String,
    /// Its audio file.
    pub audio: PathBuf,
    /// The part of the file to load.
    #[serde(with = "segment_serde")]
    pub segment: Segment,
}

impl Piece {
    fn of(u: &PreparedUtt) -> Self {
        Piece {
            id: u.id.clone(),
            audio: u.audio.clone(),
            segment: u.segment,
        }
    }
}

/// Builds `cfg.examples` joined examples from `utts` (which must not contain joined examples
/// themselves): for each, a middle utterance is drawn uniformly from the utterances whose
/// speaker has at least two other neutral utterances, then two different neutral utterances of
/// that speaker (utterances without a speaker count as one speaker). The example's audio is
/// first neutral, middle, second neutral; its transcript the three joined by spaces (`space`
/// is the space token); its emotion, intensity and speaker are the middle one's. Ids are
/// `first+middle+second`.
///
/// Returns fewer examples (possibly none) when no speaker has enough neutral utterances or when
/// draws keep exceeding `cfg.max_duration` (after `20 * examples` attempts). Deterministic in
/// `seed`.
pub fn joined_examples(
    utts: &[PreparedUtt],
    cfg: &JoinConfig,
    neutral: usize,
    space: u32,
    seed: u64,
) -> Vec<PreparedUtt> {
    let mut by_speaker: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    for (i, u) in utts.iter().enumerate() {
        if u.emotion == neutral {
            by_speaker.entry(u.speaker.as_deref()).or_default().push(i);
        }
    }
    let others = |i: usize| -> Vec<usize> {
        by_speaker
            .get(&utts[i].speaker.as_deref())
            .map(|v| v.iter().copied().filter(|&j| j != i).collect())
            .unwrap_or_default()
    };
    let middles: Vec<usize> = (0..utts.len()).filter(|&i| others(i).len() >= 2).collect();
    let mut out = Vec::with_capacity(cfg.examples);
    if middles.is_empty() {
        return out;
    }
    let mut rng = SplitMix64::new(seed ^ 0x101E_D000_0000_0000);
    let mut attempts = 0usize;
    while out.len() < cfg.examples && attempts < 20 * cfg.examples {
        attempts += 1;
        let m = middles[rng.range_inclusive(0, middles.len() - 1)];
        let pool = others(m);
        let a = rng.range_inclusive(0, pool.len() - 1);
        let mut b = rng.range_inclusive(0, pool.len() - 2);
        if b >= a {
            b += 1;
        }
        let (first, mid, last) = (&utts[pool[a]], &utts[m], &utts[pool[b]]);
        let duration = first.duration + mid.duration + last.duration;
        if cfg.max_duration.is_some_and(|d| duration >= d) {
            continue;
        }
        let mut tokens = first.tokens.clone();
        for u in [mid, last] {
            tokens.push(space);
            tokens.extend_from_slice(&u.tokens);
        }
        out.push(PreparedUtt {
            id: format!("{}+{}+{}", first.id, mid.id, last.id),
            audio: first.audio.clone(),
            segment: first.segment,
            then: vec![Piece::of(mid), Piece::of(last)],
            text: format!("{} {} {}", first.text, mid.text, last.text),
            tokens,
            emotion: mid.emotion,
            duration,
            gender: mid.gender,
            intensity: mid.intensity,
            speaker: mid.speaker.clone(),
            session: mid.session,
            intervals: Vec::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utt(id: &str, speaker: Option<&str>, emotion: usize, tokens: &[u32]) -> PreparedUtt {
        PreparedUtt {
            id: id.into(),
            audio: format!("{id}.flac").into(),
            segment: Segment::WHOLE,
            then: Vec::new(),
            text: id.into(),
            tokens: tokens.to_vec(),
            emotion,
            duration: tokens.len() as f64,
            gender: None,
            intensity: None,
            speaker: speaker.map(Into::into),
            session: None,
            intervals: Vec::new(),
        }
    }

    const N: usize = 3;
    const SPACE: u32 = 99;

    fn corpus() -> Vec<PreparedUtt> {
        vec![
            utt("a-n1", Some("a"), N, &[1]),
            utt("a-n2", Some("a"), N, &[2, 2]),
            utt("a-n3", Some("a"), N, &[3]),
            utt("a-hap", Some("a"), 0, &[4, 4]),
            utt("b-n1", Some("b"), N, &[5]),
            utt("b-ang", Some("b"), 1, &[6]),
        ]
    }

    #[test]
    fn joins_neutral_middle_neutral_of_one_speaker() {
        let utts = corpus();
        let cfg = JoinConfig {
            examples: 200,
            max_duration: None,
        };
        let out = joined_examples(&utts, &cfg, N, SPACE, 7);
        assert_eq!(out.len(), 200);
        let by_id = |id: &str| utts.iter().find(|u| u.id == id).unwrap();
        let mut middles = std::collections::BTreeSet::new();
        for x in &out {
            let ids: Vec<&str> = x.id.split('+').collect();
            let [f, m, l] = ids[..] else {
                panic!("id {} is not three ids", x.id)
            };
            // Speaker b has one neutral utterance: it never takes part.
            assert!(ids.iter().all(|i| i.starts_with("a-")), "{}", x.id);
            assert_ne!(f, l);
            assert_ne!(f, m);
            assert_ne!(l, m);
            assert_eq!(by_id(f).emotion, N);
            assert_eq!(by_id(l).emotion, N);
            assert_eq!(x.emotion, by_id(m).emotion);
            let mut tokens = by_id(f).tokens.clone();
            tokens.push(SPACE);
            tokens.extend(&by_id(m).tokens);
            tokens.push(SPACE);
            tokens.extend(&by_id(l).tokens);
            assert_eq!(x.tokens, tokens);
            assert_eq!(x.text, format!("{f} {m} {l}"));
            assert_eq!(x.audio, by_id(f).audio);
            assert_eq!(x.then, vec![Piece::of(by_id(m)), Piece::of(by_id(l))]);
            let d = by_id(f).duration + by_id(m).duration + by_id(l).duration;
            assert_eq!(x.duration, d);
            middles.insert(m);
        }
        // Every utterance of speaker a can be a middle (each leaves two other neutrals).
        assert_eq!(middles.len(), 4, "{middles:?}");
        assert_eq!(out, joined_examples(&utts, &cfg, N, SPACE, 7));
        assert_ne!(out, joined_examples(&utts, &cfg, N, SPACE, 8));
    }

    #[test]
    fn respects_the_duration_cap_and_gives_up_without_material() {
        let utts = corpus();
        let cfg = JoinConfig {
            examples: 50,
            max_duration: Some(5.0),
        };
        let out = joined_examples(&utts, &cfg, N, SPACE, 1);
        assert!(!out.is_empty());
        assert!(out.iter().all(|x| x.duration < 5.0));
        let cfg = JoinConfig {
            examples: 5,
            max_duration: Some(1.0),
        };
        assert!(joined_examples(&utts, &cfg, N, SPACE, 1).is_empty());
        let one_neutral = vec![utts[0].clone(), utts[3].clone(), utts[5].clone()];
        let cfg = JoinConfig {
            examples: 5,
            max_duration: None,
        };
        assert!(joined_examples(&one_neutral, &cfg, N, SPACE, 1).is_empty());
    }
}
