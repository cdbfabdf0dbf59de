//! The codebooks of an Ogg Vorbis setup header, checked before symphonia parses them.
//!
//! symphonia 0.6.1 reads each codebook's sizes twice (the Ogg demuxer skips the setup header
//! to find the modes, the decoder builds the codebooks) and panics on values no encoder writes:
//! its `lookup1_values` computes `floor(entries^(1/dimensions))` in f32 and asserts the result
//! exact (`symphonia-format-ogg` `mappings/vorbis.rs`, found by fuzzing a damaged header whose
//! checksums were right), and the demuxer's arithmetic on a dimension of 0, or of more than 32,
//! overflows. The decoder refuses dimensions of 0 or above 32 and more than 131,072 entries
//! anyway (`symphonia-codec-vorbis` `codebook.rs`); this check refuses them, and lookup tables
//! whose size symphonia would get wrong, before either parser runs, as corrupt audio.
//!
//! Vorbis I specification, sections 3.2.1 (codebooks) and 4.2.4 (setup header); Ogg, RFC 3533.

use std::io::{self, Seek, SeekFrom};

use super::source::{Source, read_up_to};

/// Bytes read from the start of the stream at most: the depth to which symphonia's probe looks
/// for a format's marker (1 MiB), far more than the three header packets take.
const MAX_SCAN: usize = 1 << 20;

/// The decoder's limits: a codebook of 0 or more than 32 dimensions, or of more than 131,072
/// entries, is refused by `symphonia-codec-vorbis` (`codebook.rs`).
const MAX_DIMENSIONS: u32 = 32;
const MAX_ENTRIES: u32 = 128 * 1024;

/// Why the Vorbis setup header of `src` (read from its start; rewound after) would panic
/// symphonia, if it would. Streams that are not Ogg Vorbis, or whose headers are cut short or
/// damaged in other ways, pass: symphonia reports those itself.
pub(super) fn setup_problem(src: &mut Box<dyn Source>) -> io::Result<Option<String>> {
    let mut bytes = vec![0u8; 4];
    let n = read_up_to(src, &mut bytes)?;
    // symphonia takes a FLAC or MP3 marker at the start for what it says, never looking for
    // Ogg pages further on.
    let other = bytes.starts_with(b"fLaC")
        || bytes.starts_with(b"ID3")
        || (n >= 2 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0);
    if !other {
        bytes.resize(MAX_SCAN, 0);
        let more = read_up_to(src, &mut bytes[n..])?;
        bytes.truncate(n + more);
    }
    src.seek(SeekFrom::Start(0))?;
    if other {
        return Ok(None);
    }
    let Some(start) = bytes.windows(4).position(|w| w == b"OggS") else {
        return Ok(None);
    };
    let packets = first_packets(&bytes[start..], 3);
    let vorbis = |p: &[u8], kind: u8| p.len() > 7 && p[0] == kind && &p[1..7] == b"vorbis";
    match packets.as_slice() {
        [ident, _, setup] if vorbis(ident, 1) && vorbis(setup, 5) => {
            Ok(codebook_problem(&setup[7..]))
        }
        _ => Ok(None),
    }
}

/// The first `want` packets of the first logical stream of the Ogg pages in `b` (fewer where
/// the pages end or break first).
fn first_packets(b: &[u8], want: usize) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut serial = None;
    let mut pos = 0;
    while packets.len() < want && pos + 27 <= b.len() && &b[pos..pos + 4] == b"OggS" {
        let segments = b[pos + 26] as usize;
        let Some(lacing) = b.get(pos + 27..pos + 27 + segments) else {
            break;
        };
        let mut at = pos + 27 + segments;
        let page_serial = u32::from_le_bytes([b[pos + 14], b[pos + 15], b[pos + 16], b[pos + 17]]);
        let ours = *serial.get_or_insert(page_serial) == page_serial;
        for &len in lacing {
            let Some(seg) = b.get(at..at + len as usize) else {
                return packets;
            };
            at += len as usize;
            if !ours {
                continue;
            }
            current.extend_from_slice(seg);
            if len < 255 {
                packets.push(std::mem::take(&mut current));
                if packets.len() == want {
                    break;
                }
            }
        }
        pos = at;
    }
    packets
}

/// Reads bits least significant first, as Vorbis packs them.
struct Bits<'a> {
    b: &'a [u8],
    bit: usize,
}

impl Bits<'_> {
    /// The next `n <= 32` bits; `None` past the end.
    fn read(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u64;
        for i in 0..n as usize {
            let byte = *self.b.get((self.bit + i) / 8)?;
            v |= u64::from((byte >> ((self.bit + i) % 8)) & 1) << i;
        }
        self.bit += n as usize;
        Some(v as u32)
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        self.bit = self.bit.checked_add(usize::try_from(n).ok()?)?;
        (self.bit <= self.b.len() * 8).then_some(())
    }
}

/// `ilog` of the specification (9.2.1): the position of the highest set bit, 0 for 0.
fn ilog(x: u32) -> u32 {
    32 - x.leading_zeros()
}

/// The first codebook of a setup header (after its packet type and signature) whose values
/// symphonia cannot take; `None` when all can, or the header ends or breaks first.
fn codebook_problem(setup: &[u8]) -> Option<String> {
    let mut bs = Bits { b: setup, bit: 0 };
    let count = bs.read(8)? + 1;
    for i in 0..count {
        if bs.read(24)? != 0x56_4342 {
            return None;
        }
        let dimensions = bs.read(16)?;
        let entries = bs.read(24)?;
        if dimensions == 0 || dimensions > MAX_DIMENSIONS || entries > MAX_ENTRIES {
            return Some(format!(
                "codebook {i} has {dimensions} dimensions and {entries} entries (at most \
                 {MAX_DIMENSIONS} and {MAX_ENTRIES}, dimensions at least 1)"
            ));
        }
        // The codeword lengths.
        if bs.read(1)? == 0 {
            if bs.read(1)? == 1 {
                for _ in 0..entries {
                    if bs.read(1)? == 1 {
                        bs.read(5)?;
                    }
                }
            } else {
                bs.skip(u64::from(entries) * 5)?;
            }
        } else {
            let mut entry = 0u32;
            bs.read(5)?;
            while entry < entries {
                entry = entry.checked_add(bs.read(ilog(entries - entry))?)?;
            }
            if entry > entries {
                return None;
            }
        }
        let lookup = bs.read(4)?;
        if lookup == 0 {
            continue;
        }
        if lookup > 2 {
            return None;
        }
        bs.read(32)?;
        bs.read(32)?;
        let value_bits = bs.read(4)? + 1;
        bs.read(1)?;
        let values = if lookup == 1 {
            lookup1_values(entries, dimensions).ok_or_else(|| {
                format!(
                    "codebook {i}: no exact lookup table size for {entries} entries in \
                     {dimensions} dimensions in f32"
                )
            })
        } else {
            Ok(entries * dimensions)
        };
        match values {
            Ok(v) => bs.skip(u64::from(v) * u64::from(value_bits))?,
            Err(why) => return Some(why),
        }
    }
    None
}

/// `lookup1_values` of the specification (9.2.3) as symphonia computes it,
/// `floor(entries^(1 / dimensions))` in f32, when that is the exact answer (the greatest
/// `v` with `v^dimensions <= entries`) and `(v + 1)^dimensions` fits 32 bits, as symphonia's
/// assertions need; `None` otherwise.
fn lookup1_values(entries: u32, dimensions: u32) -> Option<u32> {
    let v = (entries as f32).powf(1.0 / dimensions as f32).floor() as u32;
    let exact = v.checked_pow(dimensions)? <= entries;
    let next = v.checked_add(1)?.checked_pow(dimensions)?;
    (exact && next > entries).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact answer, by counting up.
    fn reference(entries: u32, dimensions: u32) -> u32 {
        let mut v = 0u64;
        while (v + 1).pow(dimensions) <= u64::from(entries) {
            v += 1;
        }
        v as u32
    }

    #[test]
    fn lookup1_values_is_exact_or_refused() {
        for dimensions in 1..=8 {
            for entries in (0..5000).chain([65_536, 131_071, 131_072]) {
                if let Some(v) = lookup1_values(entries, dimensions) {
                    assert_eq!(v, reference(entries, dimensions), "{entries} {dimensions}");
                }
            }
        }
        // The codebooks libvorbis writes: 2 or 4 dimensions, up to a few thousand entries.
        assert_eq!(lookup1_values(81, 4), Some(3));
        assert_eq!(lookup1_values(625, 4), Some(5));
        assert_eq!(lookup1_values(361, 2), Some(19));
        // One entry in 32 dimensions: 2^32 does not fit (symphonia's assertion fails).
        assert_eq!(lookup1_values(1, 32), None);
    }

    /// A setup header of one codebook, packed as the specification says.
    fn setup(dimensions: u32, entries: u32, lookup: u32) -> Vec<u8> {
        let mut bits: Vec<(u32, u32)> = vec![(0, 8), (0x56_4342, 24), (dimensions, 16)];
        bits.extend([(entries, 24), (0, 1), (0, 1)]);
        bits.extend(std::iter::repeat_n((0, 5), entries as usize));
        bits.push((lookup, 4));
        if lookup > 0 {
            bits.extend([(0, 32), (0, 32), (3, 4), (0, 1)]);
            bits.extend(std::iter::repeat_n((0, 4), 64));
        }
        let mut out = Vec::new();
        let mut at = 0usize;
        for (v, n) in bits {
            for i in 0..n {
                if at / 8 == out.len() {
                    out.push(0u8);
                }
                out[at / 8] |= (((v >> i) & 1) as u8) << (at % 8);
                at += 1;
            }
        }
        out
    }

    #[test]
    fn codebooks_symphonia_cannot_take_are_found() {
        assert_eq!(codebook_problem(&setup(2, 16, 1)), None);
        assert_eq!(codebook_problem(&setup(2, 16, 0)), None);
        assert_eq!(codebook_problem(&setup(4, 5, 2)), None);
        for (d, e, l) in [(0, 4, 1), (33, 4, 0), (2, 200_000, 0), (32, 1, 1)] {
            assert!(codebook_problem(&setup(d, e, l)).is_some(), "{d} {e} {l}");
        }
        // Cut short: left to symphonia.
        assert_eq!(codebook_problem(&setup(0, 4, 1)[..3]), None);
    }

    #[test]
    fn packets_span_pages() {
        // Two pages of one stream: a packet of 300 bytes (laced 255 + 45) across them, then a
        // packet of 2; a page of another stream between them is skipped.
        let page = |serial: u32, lacing: &[u8], body: &[u8]| {
            let mut p = b"OggS\0\0".to_vec();
            p.extend([0u8; 8]);
            p.extend(serial.to_le_bytes());
            p.extend([0u8; 8]);
            p.push(lacing.len() as u8);
            p.extend(lacing);
            p.extend(body);
            p
        };
        let mut b = page(7, &[255], &[1; 255]);
        b.extend(page(9, &[3], &[9; 3]));
        b.extend(page(7, &[45, 2], &[[2; 45].as_slice(), &[3, 3]].concat()));
        let p = first_packets(&b, 3);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].len(), 300);
        assert_eq!(p[1], [3, 3]);
    }
}
