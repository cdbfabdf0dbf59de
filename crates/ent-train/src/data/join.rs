//! Longer training examples made by joining utterances of one speaker: neutral, then any
//! utterance, then neutral (or only one neutral, before or after), labelled with the joined-in
//! utterance's emotion.
//!
//! Utterance-level corpora whose emotional utterances are emotional from the first frame to the
//! last (acted corpora, the synthetic demo corpus) never show the model an emotion starting or
//! ending inside an utterance, nor an utterance of several sentences. Joined examples show both,
//! in the shapes that emotion diarization scores (docs/method.md §6) and that SpeechBrain's
//! emotion-diarization recipe trains on (neutral-emotion, emotion-neutral,
//! neutral-emotion-neutral; "emotion only" is the plain utterance, already in the training
//! set). The boundaries are known, so each joined example also carries where its emotion lies
//! ([`PreparedUtt::spans`]), for the optional frame-level loss; with utterance-level losses
//! only, the lattice pooling decides which frames carry the emotion. Off by default; the paper
//! trains on IEMOCAP utterances as they are.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ent_common::rng::SplitMix64;
use ent_features::Segment;
use serde::{Deserialize, Serialize};

use super::utterance::segment_serde;
use super::{EmotionSpan, PreparedUtt};

/// The order of a joined example's pieces ("emotion" stands for the joined-in utterance,
/// which may be neutral too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinPattern {
    /// Neutral, the utterance, another neutral.
    NeutralEmotionNeutral,
    /// Neutral, then the utterance.
    NeutralEmotion,
    /// The utterance, then neutral.
    EmotionNeutral,
}

impl JoinPattern {
    /// Neutral utterances of the speaker the pattern needs besides the joined-in one.
    fn neutrals(self) -> usize {
        match self {
            JoinPattern::NeutralEmotionNeutral => 2,
            JoinPattern::NeutralEmotion | JoinPattern::EmotionNeutral => 1,
        }
    }
}

/// How many joined examples to add to the training set, and in which shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JoinConfig {
    /// Joined examples added to the training set (built once, from the run's seed).
    pub examples: usize,
    /// Joined examples this long or longer are not built (another draw is made).
    pub max_duration: Option<f64>,
    /// The shapes to draw from, each equally likely [default: neutral-emotion-neutral only].
    pub patterns: Vec<JoinPattern>,
    /// Bring every later part of a joined example to its first part's level (mean power), as
    /// SpeechBrain's recipe matches the loudness of what it concatenates, so that a jump in
    /// level does not mark where the emotion starts [default: off].
    pub match_loudness: bool,
}

impl std::fmt::Display for JoinPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JoinPattern::NeutralEmotionNeutral => "neutral-emotion-neutral",
            JoinPattern::NeutralEmotion => "neutral-emotion",
            JoinPattern::EmotionNeutral => "emotion-neutral",
        })
    }
}

impl JoinConfig {
    /// The patterns drawn from, for messages: `neutral-emotion-neutral, emotion-neutral`.
    pub fn describe_patterns(&self) -> String {
        let names: Vec<String> = self.patterns.iter().map(|p| p.to_string()).collect();
        names.join(", ")
    }
}

impl Default for JoinConfig {
    fn default() -> Self {
        Self {
            examples: 0,
            max_duration: Some(18.75),
            patterns: vec![JoinPattern::NeutralEmotionNeutral],
            match_loudness: false,
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
/// themselves). For each, a pattern is drawn from `cfg.patterns` (no draw when it lists one),
/// then the joined-in utterance uniformly from the utterances whose speaker has enough other
/// neutral utterances for it, then different neutral utterances of that speaker (utterances
/// without a speaker count as one speaker). The pieces play in the pattern's order; the
/// transcript is theirs joined by spaces (`space` is the space token); emotion, intensity and
/// speaker are the joined-in utterance's; `spans` say where it lies (its own spans, shifted, if
/// it has any; else the whole of it with its class), the rest being neutral. Ids are the
/// pieces' ids joined by `+`.
///
/// Returns fewer examples (possibly none) when no speaker has enough neutral utterances or when
/// draws keep exceeding `cfg.max_duration` (after `20 * examples` attempts). Deterministic in
/// `seed`; with the default pattern, the same examples as before patterns existed.
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
    // The joined-in candidates of each pattern.
    let middles: Vec<(JoinPattern, Vec<usize>)> = cfg
        .patterns
        .iter()
        .map(|&p| {
            let m = (0..utts.len())
                .filter(|&i| others(i).len() >= p.neutrals())
                .collect();
            (p, m)
        })
        .filter(|(_, m): &(_, Vec<usize>)| !m.is_empty())
        .collect();
    let mut out = Vec::with_capacity(cfg.examples);
    if middles.is_empty() {
        return out;
    }
    let mut rng = SplitMix64::new(seed ^ 0x101E_D000_0000_0000);
    let mut attempts = 0usize;
    while out.len() < cfg.examples && attempts < 20 * cfg.examples {
        attempts += 1;
        let (pattern, cands) = if middles.len() == 1 {
            &middles[0]
        } else {
            &middles[rng.range_inclusive(0, middles.len() - 1)]
        };
        let m = cands[rng.range_inclusive(0, cands.len() - 1)];
        let pool = others(m);
        let a = rng.range_inclusive(0, pool.len() - 1);
        let mid = &utts[m];
        let pieces: Vec<&PreparedUtt> = match pattern {
            JoinPattern::NeutralEmotionNeutral => {
                let mut b = rng.range_inclusive(0, pool.len() - 2);
                if b >= a {
                    b += 1;
                }
                vec![&utts[pool[a]], mid, &utts[pool[b]]]
            }
            JoinPattern::NeutralEmotion => vec![&utts[pool[a]], mid],
            JoinPattern::EmotionNeutral => vec![mid, &utts[pool[a]]],
        };
        let duration: f64 = pieces.iter().map(|u| u.duration).sum();
        if cfg.max_duration.is_some_and(|d| duration >= d) {
            continue;
        }
        let offset = match pattern {
            JoinPattern::EmotionNeutral => 0.0,
            _ => pieces[0].duration,
        };
        let spans = if mid.spans.is_empty() {
            vec![EmotionSpan {
                start: offset,
                end: offset + mid.duration,
                class: mid.emotion,
            }]
        } else {
            mid.spans
                .iter()
                .map(|s| EmotionSpan {
                    start: s.start + offset,
                    end: s.end + offset,
                    class: s.class,
                })
                .collect()
        };
        let mut tokens = pieces[0].tokens.clone();
        for u in &pieces[1..] {
            tokens.push(space);
            tokens.extend_from_slice(&u.tokens);
        }
        let join = |f: &dyn Fn(&PreparedUtt) -> &str, sep: &str| {
            pieces.iter().map(|u| f(u)).collect::<Vec<_>>().join(sep)
        };
        out.push(PreparedUtt {
            id: join(&|u| u.id.as_str(), "+"),
            audio: pieces[0].audio.clone(),
            segment: pieces[0].segment,
            then: pieces[1..].iter().map(|u| Piece::of(u)).collect(),
            text: join(&|u| u.text.as_str(), " "),
            tokens,
            emotion: mid.emotion,
            duration,
            gender: mid.gender,
            intensity: mid.intensity,
            speaker: mid.speaker.clone(),
            session: mid.session,
            intervals: Vec::new(),
            spans,
            sentences: Vec::new(),
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
            spans: Vec::new(),
            sentences: Vec::new(),
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
            ..Default::default()
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
            let start = by_id(f).duration;
            assert_eq!(
                x.spans,
                vec![EmotionSpan {
                    start,
                    end: start + by_id(m).duration,
                    class: by_id(m).emotion
                }]
            );
            middles.insert(m);
        }
        // Every utterance of speaker a can be a middle (each leaves two other neutrals).
        assert_eq!(middles.len(), 4, "{middles:?}");
        assert_eq!(out, joined_examples(&utts, &cfg, N, SPACE, 7));
        assert_ne!(out, joined_examples(&utts, &cfg, N, SPACE, 8));
    }

    /// Neutral-emotion and emotion-neutral examples: two pieces in the pattern's order, the
    /// span where the joined-in utterance plays (its own spans shifted when it has some), both
    /// patterns drawn when both are listed, and a speaker with one neutral utterance takes part.
    #[test]
    fn two_piece_patterns_put_the_span_where_the_utterance_plays() {
        let mut utts = corpus();
        // b-ang is angry only in its second half.
        utts[5].spans = vec![EmotionSpan {
            start: 0.5,
            end: 1.0,
            class: 1,
        }];
        let by_id = |id: &str| utts.iter().find(|u| u.id == id).unwrap();
        let run = |patterns: Vec<JoinPattern>| {
            let cfg = JoinConfig {
                examples: 100,
                max_duration: None,
                patterns,
                ..JoinConfig::default()
            };
            let out = joined_examples(&utts, &cfg, N, SPACE, 3);
            assert_eq!(out.len(), 100);
            out.into_iter()
                .map(|x| {
                    let ids: Vec<String> = x.id.split('+').map(String::from).collect();
                    assert_eq!(ids.len(), 2, "{}", x.id);
                    (x, ids)
                })
                .collect::<Vec<_>>()
        };
        for (pattern, mid_at) in [
            (JoinPattern::NeutralEmotion, 1),
            (JoinPattern::EmotionNeutral, 0),
        ] {
            let mut speaker_b = 0;
            for (x, ids) in run(vec![pattern]) {
                let (p, q) = (by_id(&ids[0]), by_id(&ids[1]));
                let mid = [p, q][mid_at];
                assert_eq!([p, q][1 - mid_at].emotion, N, "{}", x.id);
                assert_eq!(x.emotion, mid.emotion);
                assert_eq!(x.duration, p.duration + q.duration);
                assert_eq!(x.text, format!("{} {}", p.text, q.text));
                let offset = if mid_at == 1 { p.duration } else { 0.0 };
                // b-ang keeps its own span, moved by the offset; the others span themselves.
                let (start, end) = if mid.id == "b-ang" {
                    (offset + 0.5, offset + 1.0)
                } else {
                    (offset, offset + mid.duration)
                };
                let want = vec![EmotionSpan {
                    start,
                    end,
                    class: mid.emotion,
                }];
                assert_eq!(x.spans, want, "{}", x.id);
                speaker_b += (mid.id == "b-ang") as usize;
            }
            assert!(speaker_b > 0, "{pattern:?}: b-ang never joined in");
        }
        // Both listed: both shapes come out (an emotional first or second piece tells which).
        let both = run(vec![
            JoinPattern::NeutralEmotion,
            JoinPattern::EmotionNeutral,
        ]);
        let emotional = |id: &str| by_id(id).emotion != N;
        assert!(both.iter().any(|(_, ids)| emotional(&ids[0])));
        assert!(both.iter().any(|(_, ids)| emotional(&ids[1])));
    }

    #[test]
    fn respects_the_duration_cap_and_gives_up_without_material() {
        let utts = corpus();
        let cfg = JoinConfig {
            examples: 50,
            max_duration: Some(5.0),
            ..Default::default()
        };
        let out = joined_examples(&utts, &cfg, N, SPACE, 1);
        assert!(!out.is_empty());
        assert!(out.iter().all(|x| x.duration < 5.0));
        let cfg = JoinConfig {
            examples: 5,
            max_duration: Some(1.0),
            ..Default::default()
        };
        assert!(joined_examples(&utts, &cfg, N, SPACE, 1).is_empty());
        let one_neutral = vec![utts[0].clone(), utts[3].clone(), utts[5].clone()];
        let cfg = JoinConfig {
            examples: 5,
            max_duration: None,
            ..Default::default()
        };
        assert!(joined_examples(&one_neutral, &cfg, N, SPACE, 1).is_empty());
    }
}
