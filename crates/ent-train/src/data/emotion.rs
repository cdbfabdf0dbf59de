//! Emotion classes and the labels that map onto them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::DataError;

/// The emotion classes a model predicts (K of them) and the raw labels each one covers.
///
/// Labels are matched case-insensitively, ignoring surrounding whitespace, against the class
/// names and the aliases. The neutral class doubles as "non-emotional" (spec §2, §8.2): the
/// lattice loss pushes its probability up somewhere in every utterance.
///
/// Aliases are kept in a sorted map so that a checkpoint holding the map serialises the same
/// way every time. The map is checked when deserialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "EmotionMapRepr")]
pub struct EmotionMap {
    /// Class names; the index is the class id (`0..K`).
    pub classes: Vec<String>,
    /// Index of the neutral class in `classes`.
    pub neutral: usize,
    /// Lower-cased label -> class id (class names included).
    aliases: BTreeMap<String, usize>,
}

#[derive(Deserialize)]
struct EmotionMapRepr {
    classes: Vec<String>,
    neutral: usize,
    #[serde(default)]
    aliases: BTreeMap<String, usize>,
}

impl TryFrom<EmotionMapRepr> for EmotionMap {
    type Error = DataError;

    fn try_from(r: EmotionMapRepr) -> Result<Self, DataError> {
        let mut map = EmotionMap::new(r.classes, r.neutral)?;
        for (alias, class) in r.aliases {
            map = map.with_alias(&alias, class)?;
        }
        Ok(map)
    }
}

impl Default for EmotionMap {
    /// The spec's K = 4: happy 0 (IEMOCAP happy and excited), angry 1, sad 2, neutral 3, with
    /// the aliases hap/happiness/exc/excited, ang/anger, sadness, neu.
    fn default() -> Self {
        let classes = ["happy", "angry", "sad", "neutral"]
            .map(String::from)
            .to_vec();
        let mut map = EmotionMap::new(classes, 3).expect("the default classes are valid");
        for (alias, class) in [
            ("hap", 0),
            ("happiness", 0),
            ("exc", 0),
            ("excited", 0),
            ("ang", 1),
            ("anger", 1),
            ("sadness", 2),
            ("neu", 3),
        ] {
            map = map
                .with_alias(alias, class)
                .expect("the default aliases are valid");
        }
        map
    }
}

fn key(label: &str) -> String {
    label.trim().to_lowercase()
}

impl EmotionMap {
    /// Classes `classes` (each its own alias) with `neutral` as the neutral one. Names must be
    /// non-empty and distinct (ignoring case), and `neutral` an index into them.
    pub fn new(classes: Vec<String>, neutral: usize) -> Result<Self, DataError> {
        if classes.is_empty() {
            return Err(DataError::invalid("emotion classes", "no classes given"));
        }
        if neutral >= classes.len() {
            return Err(DataError::invalid(
                "neutral class",
                format!(
                    "index {neutral} is outside the {} classes [{}]",
                    classes.len(),
                    classes.join(", ")
                ),
            ));
        }
        let mut aliases = BTreeMap::new();
        for (i, c) in classes.iter().enumerate() {
            let k = key(c);
            if k.is_empty() {
                return Err(DataError::invalid(
                    "emotion classes",
                    format!("class {i} has an empty name"),
                ));
            }
            if aliases.insert(k, i).is_some() {
                return Err(DataError::invalid(
                    "emotion classes",
                    format!("class {c:?} is named twice (names ignore case)"),
                ));
            }
        }
        Ok(EmotionMap {
            classes,
            neutral,
            aliases,
        })
    }

    /// This map with `alias` (any case) also meaning class `class`. An alias may not be empty,
    /// nor name a different class than it already does.
    pub fn with_alias(mut self, alias: &str, class: usize) -> Result<Self, DataError> {
        if class >= self.classes.len() {
            return Err(DataError::invalid(
                "emotion alias",
                format!(
                    "{alias:?} -> class {class}, outside the {} classes",
                    self.classes.len()
                ),
            ));
        }
        let k = key(alias);
        if k.is_empty() {
            return Err(DataError::invalid("emotion alias", "empty label"));
        }
        match self.aliases.get(&k) {
            Some(&old) if old != class => Err(DataError::invalid(
                "emotion alias",
                format!(
                    "{alias:?} already means {:?}, cannot also mean {:?}",
                    self.classes[old], self.classes[class]
                ),
            )),
            _ => {
                self.aliases.insert(k, class);
                Ok(self)
            }
        }
    }

    /// The class id of a raw label, if the map knows it.
    pub fn class_of(&self, label: &str) -> Option<usize> {
        self.aliases.get(&key(label)).copied()
    }

    /// Number of classes K.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Always false: a map has at least one class.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The labels mapped to each class, sorted (class names included).
    pub fn aliases(&self) -> impl Iterator<Item = (&str, usize)> {
        self.aliases.iter().map(|(k, &v)| (k.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_map() {
        let m = EmotionMap::default();
        assert_eq!(m.len(), 4);
        assert_eq!(m.neutral, 3);
        for (label, class) in [
            ("hap", 0),
            ("Happy", 0),
            ("exc", 0),
            ("EXCITED", 0),
            ("happiness", 0),
            ("ang", 1),
            ("angry", 1),
            ("Anger", 1),
            ("sad", 2),
            ("sadness", 2),
            (" neu ", 3),
            ("Neutral", 3),
        ] {
            assert_eq!(m.class_of(label), Some(class), "{label}");
        }
        for label in ["fru", "xxx", "sur", "", "n"] {
            assert_eq!(m.class_of(label), None, "{label}");
        }
    }

    #[test]
    fn validation() {
        let classes = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(EmotionMap::new(vec![], 0).is_err());
        assert!(EmotionMap::new(classes(&["a", "b"]), 2).is_err());
        assert!(EmotionMap::new(classes(&["a", "A"]), 0).is_err());
        assert!(EmotionMap::new(classes(&["a", " "]), 0).is_err());
        let m = EmotionMap::new(classes(&["pos", "neg", "neu"]), 2).expect("valid");
        let m = m.with_alias("positive", 0).expect("valid alias");
        assert_eq!(m.class_of("POSITIVE"), Some(0));
        assert!(m.clone().with_alias("pos", 1).is_err());
        assert!(m.clone().with_alias("x", 3).is_err());
        assert!(m.clone().with_alias("pos", 0).is_ok());
    }

    #[test]
    fn serde_round_trip_and_checks() {
        let m = EmotionMap::default();
        let json = serde_json::to_string(&m).expect("serialises");
        assert_eq!(json, serde_json::to_string(&m.clone()).expect("again"));
        let back: EmotionMap = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, m);
        let bad = r#"{"classes":["a","b"],"neutral":1,"aliases":{"x":5}}"#;
        assert!(serde_json::from_str::<EmotionMap>(bad).is_err());
        let bad = r#"{"classes":["a","b"],"neutral":7}"#;
        assert!(serde_json::from_str::<EmotionMap>(bad).is_err());
    }
}
