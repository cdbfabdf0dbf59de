//! What the corpus says: sentences, voices, prosody styles, and which voice says which
//! sentence in which style in which split.

use std::collections::BTreeMap;

/// One prosody style, written as SSML `<prosody>` attributes (percentages of the voice's own
/// settings; espeak-ng caps `range` at 200 %).
#[derive(Debug, Clone, Copy)]
pub(super) struct Style {
    /// The emotion label it stands for.
    pub(super) emo: &'static str,
    /// Base pitch change, percent.
    pub(super) pitch: i32,
    /// Pitch range (excursions around the base), percent of the voice's.
    pub(super) range: u32,
    /// Speaking rate, percent.
    pub(super) rate: u32,
    /// Volume, percent of [`BASE_AMPLITUDE`].
    pub(super) volume: u32,
}

pub(super) const NEUTRAL: usize = 0;

/// The four styles; index 0 is neutral.
pub(super) const STYLES: [Style; 4] = [
    Style {
        emo: "neu",
        pitch: 0,
        range: 100,
        rate: 100,
        volume: 100,
    },
    Style {
        emo: "hap",
        pitch: 50,
        range: 200,
        rate: 115,
        volume: 140,
    },
    Style {
        emo: "ang",
        pitch: 20,
        range: 130,
        rate: 130,
        volume: 200,
    },
    Style {
        emo: "sad",
        pitch: -20,
        range: 20,
        rate: 70,
        volume: 50,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Split {
    Train,
    Valid,
    Test,
}

/// An espeak-ng voice: a language voice and a variant.
#[derive(Debug, Clone, Copy)]
pub(super) struct Voice {
    /// `-v` argument, also the speaker id.
    pub(super) name: &'static str,
    /// `f` or `m`, the variant's.
    pub(super) gender: &'static str,
    pub(super) split: Split,
}

pub(super) const fn voice(name: &'static str, gender: &'static str, split: Split) -> Voice {
    Voice {
        name,
        gender,
        split,
    }
}

/// Training, validation and held-out test voices. Each variant (`+m1`, `+f2`, ...) is used once,
/// so held-out voices differ from the training ones in timbre and base pitch, not only accent.
/// British English is `en`: espeak-ng 1.51 resolves `en-gb+VARIANT` to a voice without the
/// variant, which [`check_voices`] catches.
pub(super) const VOICES: [Voice; 14] = [
    voice("en-us+m1", "m", Split::Train),
    voice("en-us+f2", "f", Split::Train),
    voice("en+m3", "m", Split::Train),
    voice("en+f3", "f", Split::Train),
    voice("en-gb-scotland+m4", "m", Split::Train),
    voice("en-gb-x-rp+f4", "f", Split::Train),
    voice("en-029+m6", "m", Split::Train),
    voice("en-gb-x-gbclan+f5", "f", Split::Train),
    voice("en-us-nyc+m7", "m", Split::Train),
    voice("en-gb-x-gbcwmd+linda", "f", Split::Train),
    voice("en-gb-x-rp+m5", "m", Split::Valid),
    voice("en+m2", "m", Split::Test),
    voice("en-us-nyc+f1", "f", Split::Test),
    voice("en-gb-x-gbcwmd+m8", "m", Split::Test),
];

/// Sentences per voice and style: training, validation and test voices.
pub(super) const TRAIN_PER_STYLE: usize = 12;

pub(super) const VALID_PER_STYLE: usize = 8;

pub(super) const TEST_PER_STYLE: usize = 8;

/// Diarization utterances per test voice of the neutral -> emotion -> neutral pattern.
pub(super) const DIAR_PER_VOICE: usize = 10;

/// Neutral -> emotion -> neutral utterances of the validation voice (a multiple of the three
/// emotions, so that the one voice is balanced).
pub(super) const VALID_DIAR_PER_VOICE: usize = 9;

/// Diarization utterances per test voice of each other pattern (emotion first, emotion last,
/// emotion only): the four patterns of SpeechBrain's emotion-diarization recipe.
pub(super) const DIAR_PER_OTHER_PATTERN: usize = 3;

/// The closed set of sentences, written for this corpus (lower case for espeak-ng; the
/// manifests hold them upper-cased, which is what the transcripts normalise to).
pub(super) const SENTENCES: [&str; 48] = [
    "the cat sat by the door",
    "we walked home in the rain",
    "please open the window",
    "the bus is late again",
    "she found her blue coat",
    "my brother likes green apples",
    "the dog ran across the park",
    "turn off the kitchen light",
    "we ate soup for dinner",
    "the river is very cold",
    "he lost his new phone",
    "i will call you tomorrow",
    "the shop closes at noon",
    "they painted the fence white",
    "can you pass the salt",
    "the baby is asleep now",
    "our train leaves soon",
    "the garden needs more water",
    "i made a cup of tea",
    "the children played outside",
    "put the book on the table",
    "the wind blew all night",
    "she sings in the morning",
    "we need a bigger car",
    "the letter came today",
    "my feet are tired",
    "the moon is bright tonight",
    "he fixed the old clock",
    "bring your jacket with you",
    "the milk is in the fridge",
    "we're going to the beach",
    "the birds sing in spring",
    "i forgot my keys again",
    "the room smells of bread",
    "she reads a book every week",
    "the road is wet and dark",
    "let's meet after work",
    "the fish swam under the boat",
    "your sister called this morning",
    "the snow covered the hills",
    "i don't like this song",
    "the door was left open",
    "he drinks coffee with sugar",
    "the film starts at eight",
    "we planted a small tree",
    "the lamp is on the desk",
    "they won the last game",
    "it's time to go home",
];

/// One synthesised piece: a voice saying a sentence in a style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Piece {
    pub(super) voice: usize,
    pub(super) style: usize,
    pub(super) sentence: usize,
}

/// One output file.
#[derive(Debug, Clone)]
pub(super) struct Utt {
    pub(super) id: String,
    /// Pieces back to back.
    pub(super) pieces: Vec<Piece>,
    /// The indices in `pieces` of the emotional ones, one run (diarization utterances).
    pub(super) emotional: Option<std::ops::Range<usize>>,
}

/// The file name part of a voice: `en-us+m1` -> `en-us-m1`.
pub(super) fn voice_tag(v: &Voice) -> String {
    v.name.replace('+', "-")
}

/// The `per_style` sentences voice `v` says in each style. Voice `v` says sentence `s` only in
/// style `(s + v) % 4`, so a voice never says a sentence twice and, across voices, every
/// sentence is said in every style; within a style the voice's sentences start at a rotating
/// offset so that subsets differ between voices.
pub(super) fn pick(v: usize, per_style: usize) -> Vec<Piece> {
    let mut out = Vec::with_capacity(per_style * STYLES.len());
    for style in 0..STYLES.len() {
        let own: Vec<usize> = (0..SENTENCES.len())
            .filter(|s| (s + v) % STYLES.len() == style)
            .collect();
        let start = (v * per_style) % own.len();
        for j in 0..per_style.min(own.len()) {
            out.push(Piece {
                voice: v,
                style,
                sentence: own[(start + j) % own.len()],
            });
        }
    }
    out
}

/// The utterances of each split, in manifest order.
pub(super) fn plan() -> BTreeMap<&'static str, Vec<Utt>> {
    let mut splits: BTreeMap<&'static str, Vec<Utt>> = BTreeMap::new();
    for (v, voice) in VOICES.iter().enumerate() {
        let (name, per_style) = match voice.split {
            Split::Train => ("train", TRAIN_PER_STYLE),
            Split::Valid => ("valid", VALID_PER_STYLE),
            Split::Test => ("test", TEST_PER_STYLE),
        };
        let utts = splits.entry(name).or_default();
        for p in pick(v, per_style) {
            utts.push(Utt {
                id: format!(
                    "{}_{}_s{:02}",
                    voice_tag(voice),
                    STYLES[p.style].emo,
                    p.sentence
                ),
                pieces: vec![p],
                emotional: None,
            });
        }
    }
    let voices_of = |split: Split| {
        VOICES
            .iter()
            .enumerate()
            .filter(move |(_, v)| v.split == split)
    };
    let diar: Vec<Utt> = voices_of(Split::Test)
        .enumerate()
        .flat_map(|(t, (v, voice))| diarization(t, v, voice, DIAR_PER_VOICE))
        .collect();
    splits.entry("diar").or_default().extend(diar);
    // The same patterns by the validation voice, for choosing how to decode and train for
    // diarization without looking at the held-out voices.
    let valid_diar: Vec<Utt> = voices_of(Split::Valid)
        .enumerate()
        .flat_map(|(t, (v, voice))| diarization(t, v, voice, VALID_DIAR_PER_VOICE))
        .collect();
    splits.entry("valid_diar").or_default().extend(valid_diar);
    for utts in splits.values_mut() {
        utts.sort_by(|a, b| a.id.cmp(&b.id));
    }
    splits
}

/// The diarization recordings of voice `v` (the `t`-th of its split): `nen` neutral ->
/// emotion -> neutral and [`DIAR_PER_OTHER_PATTERN`] of each other pattern.
fn diarization(t: usize, v: usize, voice: &Voice, nen: usize) -> Vec<Utt> {
    let mut out = Vec::new();
    for j in 0..nen {
        // hap, ang, sad in turn; three consecutive sentences, a different run per voice.
        let style = 1 + (j + t) % 3;
        let first = (t * 16 + 3 * j) % SENTENCES.len();
        let sentence = |k: usize| (first + k) % SENTENCES.len();
        out.push(Utt {
            id: format!("diar_{}_{j:02}", voice_tag(voice)),
            pieces: vec![
                Piece {
                    voice: v,
                    style: NEUTRAL,
                    sentence: sentence(0),
                },
                Piece {
                    voice: v,
                    style,
                    sentence: sentence(1),
                },
                Piece {
                    voice: v,
                    style: NEUTRAL,
                    sentence: sentence(2),
                },
            ],
            emotional: Some(1..2),
        });
    }
    // The other patterns, two sentences each: neutral then emotion, emotion then neutral,
    // emotion only (two sentences in one style); a different run of sentences again.
    let patterns: [(&str, [bool; 2]); 3] = [
        ("ne", [false, true]),
        ("en", [true, false]),
        ("ee", [true, true]),
    ];
    for (q, (tag, emotional)) in patterns.iter().enumerate() {
        for j in 0..DIAR_PER_OTHER_PATTERN {
            let style = 1 + (j + t) % 3;
            let first = (t * 16 + 3 * DIAR_PER_VOICE + 2 * (q * DIAR_PER_OTHER_PATTERN + j))
                % SENTENCES.len();
            let pieces: Vec<Piece> = emotional
                .iter()
                .enumerate()
                .map(|(k, &e)| Piece {
                    voice: v,
                    style: if e { style } else { NEUTRAL },
                    sentence: (first + k) % SENTENCES.len(),
                })
                .collect();
            let start = emotional
                .iter()
                .position(|&e| e)
                .expect("an emotional piece");
            let end = emotional
                .iter()
                .rposition(|&e| e)
                .expect("an emotional piece")
                + 1;
            out.push(Utt {
                id: format!("diar_{}_{tag}{j}", voice_tag(voice)),
                pieces,
                emotional: Some(start..end),
            });
        }
    }
    out
}
