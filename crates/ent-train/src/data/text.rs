//! Transcript normalisation and the character vocabulary (spec §2, §6).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::DataError;

/// Normalises a transcript for training and scoring.
///
/// Spec §6: upper-case, map `[ ] . , ? ! - : ; "` to spaces, collapse whitespace runs into one
/// space, trim. Two additions, both decided here:
///
/// - Bracketed tokens (IEMOCAP's non-speech markers `[LAUGHTER]`, `[BREATHING]`, `[GARBAGE]`,
///   any `[...]` without a nested `[`) are dropped *before* brackets are mapped to spaces.
///   Mapping brackets alone would turn `[LAUGHTER]` into the word `LAUGHTER`, teaching the ASR
///   branch to spell noises. A `[` without a closing `]` is mapped to a space like the spec says.
///   Scoring code that keeps the markers' words in its references will count them as deletions.
/// - The typographic apostrophe `’` becomes `'`, which is in the vocabulary.
///
/// Every other character is kept (upper-cased); those outside the [`Vocab`] become `<unk>`
/// when encoded, and [`crate::data::prepare`] counts them.
///
/// ```
/// use ent_train::data::normalize_text;
/// assert_eq!(normalize_text("  Oh, [LAUGHTER] it's  you!"), "OH IT'S YOU");
/// assert_eq!(normalize_text("well--OK; \"fine\"."), "WELL OK FINE");
/// ```
pub fn normalize_text(s: &str) -> String {
    let mut dropped = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        dropped.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match (after.find(']'), after.find('[')) {
            (Some(close), nested) if nested.is_none_or(|n| n > close) => {
                dropped.push(' ');
                rest = &after[close + 1..];
            }
            _ => {
                dropped.push(' ');
                rest = after;
            }
        }
    }
    dropped.push_str(rest);

    let mut out = String::with_capacity(dropped.len());
    let mut pending_space = false;
    for c in dropped.chars().flat_map(char::to_uppercase) {
        let c = match c {
            '[' | ']' | '.' | ',' | '?' | '!' | '-' | ':' | ';' | '"' => ' ',
            '\u{2019}' => '\'',
            c => c,
        };
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

const BLANK: &str = "<blank>";
const UNK: &str = "<unk>";
const SOS_EOS: &str = "<sos/eos>";

/// What [`Vocab::decode`] writes for `<unk>` and ids outside the vocabulary (as SentencePiece
/// does).
pub const UNK_CHAR: char = '\u{2047}';

/// The character vocabulary of spec §2: V = 31 tokens, blank 0, `<unk>` 1, space 2, `A`..`Z`
/// 3..=28, apostrophe 29, `<sos/eos>` 30.
///
/// Serialised (into checkpoints) as its list of symbols, `["<blank>", "<unk>", " ", "A", ...,
/// "'", "<sos/eos>"]`, and checked when read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "VocabRepr", into = "VocabRepr")]
pub struct Vocab {
    /// Characters of ids `2..V-1` (index 0 is id 2).
    chars: Vec<char>,
    ids: HashMap<char, u32>,
}

#[derive(Serialize, Deserialize)]
struct VocabRepr {
    symbols: Vec<String>,
}

impl From<Vocab> for VocabRepr {
    fn from(v: Vocab) -> Self {
        let mut symbols = vec![BLANK.to_string(), UNK.to_string()];
        symbols.extend(v.chars.iter().map(|c| c.to_string()));
        symbols.push(SOS_EOS.to_string());
        VocabRepr { symbols }
    }
}

impl TryFrom<VocabRepr> for Vocab {
    type Error = DataError;

    fn try_from(r: VocabRepr) -> Result<Self, DataError> {
        let n = r.symbols.len();
        if n < 3 || r.symbols[0] != BLANK || r.symbols[1] != UNK || r.symbols[n - 1] != SOS_EOS {
            return Err(DataError::invalid(
                "vocabulary",
                format!(
                    "expected [\"{BLANK}\", \"{UNK}\", characters..., \"{SOS_EOS}\"], got {n} \
                     symbols starting {:?}",
                    r.symbols.iter().take(3).collect::<Vec<_>>()
                ),
            ));
        }
        let mut chars = Vec::with_capacity(n - 3);
        for s in &r.symbols[2..n - 1] {
            let mut it = s.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => chars.push(c),
                _ => {
                    return Err(DataError::invalid(
                        "vocabulary",
                        format!("symbol {s:?} is not a single character"),
                    ));
                }
            }
        }
        Vocab::from_chars(chars)
    }
}

impl Vocab {
    /// The vocabulary of spec §2 (V = 31).
    pub fn characters() -> Self {
        let mut chars = vec![' '];
        chars.extend('A'..='Z');
        chars.push('\'');
        Vocab::from_chars(chars).expect("the spec's characters are distinct")
    }

    /// A vocabulary of `<blank>`, `<unk>`, `chars` (ids 2, 3, ...; distinct, the space among
    /// them) and `<sos/eos>`.
    fn from_chars(chars: Vec<char>) -> Result<Self, DataError> {
        let mut ids = HashMap::with_capacity(chars.len());
        for (i, &c) in chars.iter().enumerate() {
            if ids.insert(c, i as u32 + 2).is_some() {
                return Err(DataError::invalid(
                    "vocabulary",
                    format!("character {c:?} occurs twice"),
                ));
            }
        }
        if !ids.contains_key(&' ') {
            return Err(DataError::invalid(
                "vocabulary",
                "no space character (word boundaries need one)",
            ));
        }
        Ok(Vocab { chars, ids })
    }

    /// Number of tokens V, blank and `<sos/eos>` included (31).
    pub fn len(&self) -> usize {
        self.chars.len() + 3
    }

    /// Always false: a vocabulary holds at least blank, `<unk>` and `<sos/eos>`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The blank id (0), also the predictor's start symbol.
    pub fn blank(&self) -> u32 {
        0
    }

    /// The `<unk>` id (1).
    pub fn unk(&self) -> u32 {
        1
    }

    /// The id of the space (2).
    pub fn space(&self) -> u32 {
        self.ids[&' ']
    }

    /// The `<sos/eos>` id (V - 1 = 30).
    pub fn sos_eos(&self) -> u32 {
        self.len() as u32 - 1
    }

    /// The id of `c`, if it is in the vocabulary.
    pub fn id(&self, c: char) -> Option<u32> {
        self.ids.get(&c).copied()
    }

    /// The character of `id`: `None` for blank, `<sos/eos>` and ids outside `0..V`;
    /// [`UNK_CHAR`] for `<unk>`.
    pub fn token(&self, id: u32) -> Option<char> {
        match id {
            1 => Some(UNK_CHAR),
            0 => None,
            id => self.chars.get(id as usize - 2).copied(),
        }
    }

    /// Token ids of a normalised transcript (see [`normalize_text`]), one per character;
    /// characters outside the vocabulary (lower case included) become `<unk>`.
    pub fn encode(&self, normalized: &str) -> Vec<u32> {
        normalized
            .chars()
            .map(|c| self.id(c).unwrap_or(self.unk()))
            .collect()
    }

    /// Like [`Vocab::encode`], also returning each character that became `<unk>`, in order
    /// (repeated as often as it occurs).
    pub fn encode_checked(&self, normalized: &str) -> (Vec<u32>, Vec<char>) {
        let mut unknown = Vec::new();
        let ids = normalized
            .chars()
            .map(|c| {
                self.id(c).unwrap_or_else(|| {
                    unknown.push(c);
                    self.unk()
                })
            })
            .collect();
        (ids, unknown)
    }

    /// The text of token ids: blank and `<sos/eos>` are skipped, `<unk>` and ids outside the
    /// vocabulary are written as [`UNK_CHAR`].
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .filter(|&&id| id != self.blank() && id != self.sos_eos())
            .map(|&id| self.token(id).unwrap_or(UNK_CHAR))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_layout() {
        let v = Vocab::characters();
        assert_eq!(v.len(), 31);
        assert_eq!((v.blank(), v.unk(), v.space(), v.sos_eos()), (0, 1, 2, 30));
        assert_eq!(v.id('A'), Some(3));
        assert_eq!(v.id('Z'), Some(28));
        assert_eq!(v.id('\''), Some(29));
        assert_eq!(v.token(0), None);
        assert_eq!(v.token(30), None);
        assert_eq!(v.token(31), None);
        assert_eq!(v.token(2), Some(' '));
        assert_eq!(v.token(1), Some(UNK_CHAR));
    }

    #[test]
    fn round_trip() {
        let v = Vocab::characters();
        let text = normalize_text("It's a [LAUGHTER] test, isn't it?");
        assert_eq!(text, "IT'S A TEST ISN'T IT");
        let ids = v.encode(&text);
        assert_eq!(ids[..4], [11, 22, 29, 21]);
        assert_eq!(v.decode(&ids), text);
        // Blank and sos/eos are skipped.
        let mut padded = vec![0, 30];
        padded.extend(&ids);
        padded.push(0);
        assert_eq!(v.decode(&padded), text);
    }

    #[test]
    fn unknown_characters() {
        let v = Vocab::characters();
        let (ids, unknown) = v.encode_checked("CAFÉ 42");
        assert_eq!(unknown, vec!['É', '4', '2']);
        assert_eq!(ids, vec![5, 3, 8, 1, 2, 1, 1]);
        assert_eq!(v.encode("CAFÉ 42"), ids);
        assert_eq!(v.decode(&ids), "CAF\u{2047} \u{2047}\u{2047}");
        // Lower case is not normalised by `encode`.
        assert_eq!(v.encode("a"), vec![1]);
    }

    #[test]
    fn serde_round_trip_and_checks() {
        let v = Vocab::characters();
        let json = serde_json::to_string(&v).expect("serialises");
        assert!(json.starts_with(r#"{"symbols":["<blank>","<unk>"," ","A""#));
        let back: Vocab = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, v);
        let bad = r#"{"symbols":["<blank>","<unk>"," ","A","A","<sos/eos>"]}"#;
        let e = serde_json::from_str::<Vocab>(bad).expect_err("duplicate");
        assert!(e.to_string().contains("occurs twice"), "{e}");
        let bad = r#"{"symbols":["<unk>","<blank>"," ","<sos/eos>"]}"#;
        assert!(serde_json::from_str::<Vocab>(bad).is_err());
        let bad = r#"{"symbols":["<blank>","<unk>","AB","<sos/eos>"]}"#;
        assert!(serde_json::from_str::<Vocab>(bad).is_err());
        let bad = r#"{"symbols":["<blank>","<unk>","A","<sos/eos>"]}"#;
        let e = serde_json::from_str::<Vocab>(bad).expect_err("no space");
        assert!(e.to_string().contains("no space"), "{e}");
    }

    #[test]
    fn normalisation_examples() {
        // The spec's punctuation becomes spaces; runs collapse; ends are trimmed.
        assert_eq!(normalize_text("Hello, world!"), "HELLO WORLD");
        assert_eq!(normalize_text("a.b,c?d!e-f:g;h\"i"), "A B C D E F G H I");
        assert_eq!(normalize_text("\t two \n\n lines  "), "TWO LINES");
        // Markers are dropped whole, wherever they are.
        assert_eq!(normalize_text("[BREATHING] Yes [GARBAGE]."), "YES");
        assert_eq!(normalize_text("no[LAUGHTER]way"), "NO WAY");
        assert_eq!(normalize_text("[LAUGHTER]"), "");
        // Unbalanced brackets are plain punctuation.
        assert_eq!(normalize_text("a [b [c] d"), "A B D");
        assert_eq!(normalize_text("a ] b ["), "A B");
        // Apostrophes stay, the typographic one is folded in.
        assert_eq!(normalize_text("don\u{2019}t 'em"), "DON'T 'EM");
        // Other characters stay (upper-cased) to be counted as unknown.
        assert_eq!(normalize_text("naïve 2"), "NAÏVE 2");
        assert_eq!(normalize_text(""), "");
        assert_eq!(normalize_text(" . , "), "");
    }
}
