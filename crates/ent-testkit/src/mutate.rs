//! Mutations of a file's bytes, the damage real files suffer: cut short, bytes flipped, junk
//! spliced in or written over a stretch (random bytes read as float samples give values of any
//! size), stretches zeroed, header fields changed.

use proptest::prelude::*;
use proptest::sample::Index;

/// One mutation of a byte string.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Cut after the given position.
    Truncate(Index),
    /// Overwrite single bytes anywhere.
    Overwrite(Vec<(Index, u8)>),
    /// Insert a run of bytes.
    Splice(Index, Vec<u8>),
    /// Overwrite a run of bytes (its length kept: sample data stays aligned).
    Junk(Index, Vec<u8>),
    /// Zero a stretch of up to the given number of bytes.
    Zero(Index, usize),
    /// Overwrite in the first 64 bytes (headers), where most length fields live.
    Header(Vec<(u8, u8)>),
}

/// Any [`Mutation`], each kind equally likely.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        prop::collection::vec((any::<Index>(), any::<u8>()), 1..16).prop_map(Mutation::Overwrite),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(i, v)| Mutation::Splice(i, v)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..256))
            .prop_map(|(i, v)| Mutation::Junk(i, v)),
        (any::<Index>(), 1usize..8192).prop_map(|(i, n)| Mutation::Zero(i, n)),
        prop::collection::vec((0u8..64, any::<u8>()), 1..6).prop_map(Mutation::Header),
    ]
}

/// `b` with `m` applied.
pub fn apply(mut b: Vec<u8>, m: &Mutation) -> Vec<u8> {
    match m {
        Mutation::Truncate(i) => {
            b.truncate(i.index(b.len() + 1));
        }
        Mutation::Overwrite(edits) if !b.is_empty() => {
            for (i, v) in edits {
                let at = i.index(b.len());
                b[at] = *v;
            }
        }
        Mutation::Overwrite(_) => {}
        Mutation::Splice(i, v) => {
            let at = i.index(b.len() + 1);
            b.splice(at..at, v.iter().copied());
        }
        Mutation::Junk(i, v) => {
            let at = i.index(b.len() + 1);
            let end = (at + v.len()).min(b.len());
            b[at..end].copy_from_slice(&v[..end - at]);
        }
        Mutation::Zero(i, n) => {
            let at = i.index(b.len() + 1);
            let end = (at + n).min(b.len());
            b[at..end].fill(0);
        }
        Mutation::Header(edits) => {
            for &(i, v) in edits {
                if let Some(x) = b.get_mut(i as usize) {
                    *x = v;
                }
            }
        }
    }
    b
}

/// Recomputes the CRC-32 of every Ogg page (polynomial 0x04c11db7, no reflection) from the
/// start of `b` on, as far as whole pages go: after a mutation, the damaged packet then
/// reaches the Vorbis decoder instead of failing the page's checksum.
pub fn fix_ogg_crcs(b: &mut [u8]) {
    let crc = |data: &[u8]| {
        data.iter().fold(0u32, |mut c, &byte| {
            c ^= (byte as u32) << 24;
            for _ in 0..8 {
                c = if c & 0x8000_0000 != 0 {
                    (c << 1) ^ 0x04c1_1db7
                } else {
                    c << 1
                };
            }
            c
        })
    };
    let mut pos = 0;
    while pos + 27 <= b.len() && &b[pos..pos + 4] == b"OggS" {
        let segments = b[pos + 26] as usize;
        let Some(table) = b.get(pos + 27..pos + 27 + segments) else {
            return;
        };
        let end = pos + 27 + segments + table.iter().map(|&x| x as usize).sum::<usize>();
        if end > b.len() {
            return;
        }
        b[pos + 22..pos + 26].fill(0);
        let c = crc(&b[pos..end]);
        b[pos + 22..pos + 26].copy_from_slice(&c.to_le_bytes());
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    /// The checksums of a real Ogg Vorbis file (ent-features' fixture, written by oggenc,
    /// libogg's own CRC) are recomputed to what they are; a changed byte changes its page's.
    #[test]
    fn ogg_checksums_are_libogg_s() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../ent-features/tests/fixtures/tone.ogg"
        );
        let real = std::fs::read(path).unwrap();
        let mut fixed = real.clone();
        fix_ogg_crcs(&mut fixed);
        assert_eq!(fixed, real);
        fixed[4200] ^= 0x10;
        fix_ogg_crcs(&mut fixed);
        assert_ne!(fixed, real);
        let changed: Vec<usize> = (0..real.len()).filter(|&i| fixed[i] != real[i]).collect();
        assert!(changed.len() <= 5 && changed.contains(&4200), "{changed:?}");
    }

    /// Each mutation changes what it says and nothing else: lengths as stated, bytes outside
    /// the edited stretch untouched.
    #[test]
    fn mutations_do_what_they_say() {
        let b: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut runner = TestRunner::deterministic();
        for _ in 0..500 {
            let m = mutation().new_tree(&mut runner).unwrap().current();
            let out = apply(b.clone(), &m);
            match &m {
                Mutation::Truncate(_) => assert!(out.len() <= b.len() && b.starts_with(&out)),
                Mutation::Splice(_, v) => assert_eq!(out.len(), b.len() + v.len()),
                Mutation::Junk(i, v) => {
                    let at = i.index(b.len() + 1);
                    assert_eq!(out.len(), b.len());
                    assert_eq!(out[..at], b[..at]);
                    let end = (at + v.len()).min(b.len());
                    assert_eq!(out[at..end], v[..end - at]);
                    assert_eq!(out[end..], b[end..]);
                }
                Mutation::Zero(i, n) => {
                    let at = i.index(b.len() + 1);
                    let end = (at + n).min(b.len());
                    assert!(out[at..end].iter().all(|&x| x == 0));
                    assert_eq!(out[end..], b[end..]);
                }
                Mutation::Overwrite(_) | Mutation::Header(_) => {
                    assert_eq!(out.len(), b.len());
                    if let Mutation::Header(_) = m {
                        assert_eq!(out[64..], b[64..]);
                    }
                }
            }
        }
    }
}
