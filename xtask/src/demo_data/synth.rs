//! Making the audio: espeak-ng, the resampler, silence trimming and padding, quantisation, FLAC.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail, ensure};

use super::plan::*;

/// Sample rate of the corpus.
pub(super) const RATE: u32 = 16_000;

/// Sample rate espeak-ng writes.
pub(super) const ESPEAK_RATE: u32 = 22_050;

/// Silence kept before and after each piece: 0.1 s.
pub(super) const PAD: usize = 1_600;

/// Leading and trailing samples below this fraction of the piece's peak (-40 dB) are silence.
pub(super) const TRIM_LEVEL: f64 = 0.01;

/// Samples are multiples of this: 16-bit files with 11 significant bits, which keeps the corpus
/// under [`MAX_BYTES`] (quantisation noise near -71 dBFS, about 34 dB below the quietest style).
pub(super) const STEP: i32 = 32;

/// espeak-ng's `-a` amplitude for every piece; the styles' volumes are percentages of it.
pub(super) const BASE_AMPLITUDE: u32 = 35;

/// What to install where a tool is missing (Debian and Ubuntu package names).
pub(super) const INSTALL: &str = "apt-get install espeak-ng flac";

/// Runs `f` over `items` on `threads` threads, keeping the order of the results and printing a
/// counter every tenth of the way.
pub(super) fn parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    verb: &str,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<R>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    let every = items.len().div_ceil(10).max(1);
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()).max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items.len() {
                        break;
                    }
                    let r = f(&items[i]);
                    let failed = r.is_err();
                    results.lock().expect("no panics while holding the lock")[i] = Some(r);
                    if failed {
                        // Stop handing out work; the error is reported below.
                        next.store(items.len(), Ordering::Relaxed);
                        break;
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_multiple_of(every) || n == items.len() {
                        println!("      {verb} {n}/{}", items.len());
                    }
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .expect("no panics while holding the lock");
    // Items left undone are those after an error: report the (first) error.
    if let Some(i) = results.iter().position(|r| matches!(r, Some(Err(_))))
        && let Some(Err(e)) = results.swap_remove(i)
    {
        return Err(e);
    }
    results
        .into_iter()
        .map(|r| r.context("an item was left undone")?)
        .collect()
}

/// The versions of the two tools, for the README.
pub(super) struct Tools {
    pub(super) espeak: String,
    pub(super) flac: String,
}

/// The first line of `cmd --version`, or `None` if it does not run.
pub(super) fn version(cmd: &str) -> Option<String> {
    let out = Command::new(cmd).arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next().unwrap_or_default().trim().to_string())
}

/// Finds espeak-ng and flac; as root with apt-get at hand, installs the missing ones.
pub(super) fn tools() -> Result<Tools> {
    let find = || (version("espeak-ng"), version("flac"));
    let (mut espeak, mut flac) = find();
    if espeak.is_none() || flac.is_none() {
        let missing: Vec<&str> = [("espeak-ng", &espeak), ("flac", &flac)]
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(name, _)| *name)
            .collect();
        let root_user = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let apt = Command::new("apt-get")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !(root_user && apt) {
            bail!(
                "{} not found: install espeak-ng and flac (Debian/Ubuntu: `sudo {INSTALL}`), \
                 then run `cargo xtask demo-data` again",
                missing.join(" and ")
            );
        }
        println!(
            "{} not found: running `apt-get update && {INSTALL} -y`",
            missing.join(" and ")
        );
        crate::run(Command::new("apt-get").args(["update", "-q"]))?;
        crate::run(
            Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    "espeak-ng",
                    "flac",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        (espeak, flac) = find();
    }
    match (espeak, flac) {
        (Some(espeak), Some(flac)) => Ok(Tools {
            espeak: espeak_name(&espeak),
            flac,
        }),
        _ => bail!("espeak-ng or flac still does not run after installing them ({INSTALL})"),
    }
}

/// `eSpeak NG text-to-speech: 1.51  Data at: ...` -> `eSpeak NG 1.51`.
pub(super) fn espeak_name(line: &str) -> String {
    let version = line
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or("(unknown version)");
    format!("eSpeak NG {version}")
}

/// The SSML espeak-ng reads for a piece.
pub(super) fn ssml(style: &Style, text: &str) -> String {
    format!(
        "<speak><prosody pitch=\"{:+}%\" range=\"{}%\" rate=\"{}%\" volume=\"{}%\">{text}\
         </prosody></speak>",
        style.pitch, style.range, style.rate, style.volume
    )
}

/// The WAV espeak-ng writes for `text` in `voice` at [`BASE_AMPLITUDE`].
pub(super) fn espeak(voice: &str, options: &[&str], text: &str) -> Result<Vec<u8>> {
    let out = Command::new("espeak-ng")
        .args(["-v", voice, "-a", &BASE_AMPLITUDE.to_string(), "--stdout"])
        .args(options)
        .arg(text)
        .stderr(Stdio::piped())
        .output()
        .context("could not run espeak-ng")?;
    if !out.status.success() {
        bail!(
            "espeak-ng -v {voice} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Every voice exists, applies its variant (its audio differs from the language voice's) and
/// sounds unlike every other voice (different audio for the same sentence).
pub(super) fn check_voices() -> Result<()> {
    let text = SENTENCES[0];
    let mut seen: HashMap<Vec<u8>, &str> = HashMap::new();
    for v in &VOICES {
        let (language, variant) = v
            .name
            .split_once('+')
            .context("voices are language+variant")?;
        let own = espeak(v.name, &[], text)?;
        ensure!(
            own != espeak(language, &[], text)?,
            "espeak-ng ignores the variant {variant:?} of voice {}: it sounds like plain \
             {language}",
            v.name
        );
        if let Some(other) = seen.insert(own, v.name) {
            bail!("voices {other} and {} sound the same", v.name);
        }
    }
    Ok(())
}

/// A piece at 16 kHz: synthesised, resampled, trimmed, padded and quantised.
pub(super) fn synthesise(p: &Piece, resampler: &Resampler) -> Result<Vec<i16>> {
    let voice = &VOICES[p.voice];
    let style = &STYLES[p.style];
    let wav = espeak(voice.name, &["-m"], &ssml(style, SENTENCES[p.sentence]))?;
    let samples = parse_wav(&wav).context("reading espeak-ng's output")?;
    let clipped = samples
        .iter()
        .filter(|&&s| s == i16::MAX || s == i16::MIN)
        .count();
    ensure!(
        clipped == 0,
        "espeak-ng's output clips ({clipped} samples at full scale): lower BASE_AMPLITUDE"
    );
    let x: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
    let y = resampler.run(&x);
    let peak = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    ensure!(peak > 0.0, "espeak-ng produced silence");
    let level = peak * TRIM_LEVEL;
    let first = y.iter().position(|v| v.abs() >= level).unwrap_or(0);
    let last = y.iter().rposition(|v| v.abs() >= level).unwrap_or(0);
    let mut out = vec![0i16; PAD];
    for &v in &y[first..=last] {
        out.push(quantise(v)?);
    }
    out.extend(std::iter::repeat_n(0, PAD));
    Ok(out)
}

/// Rounds to a multiple of [`STEP`]; a value past full scale is an error.
pub(super) fn quantise(v: f64) -> Result<i16> {
    let q = (v / f64::from(STEP)).round() as i32 * STEP;
    ensure!(
        (i32::from(i16::MIN)..=i32::from(i16::MAX)).contains(&q),
        "the resampled audio clips ({v:.0}): lower BASE_AMPLITUDE"
    );
    Ok(q as i16)
}

/// The samples of a mono 16-bit PCM WAV at [`ESPEAK_RATE`]. A `data` chunk whose size runs past
/// the end (espeak-ng writing to a pipe cannot go back to fill it in) holds the rest.
pub(super) fn parse_wav(bytes: &[u8]) -> Result<Vec<i16>> {
    ensure!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "not a WAV file ({} bytes)",
        bytes.len()
    );
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let mut pos = 12;
    let mut format = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(pos + 4) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            ensure!(body + 16 <= bytes.len(), "truncated fmt chunk");
            format = Some((
                u16_at(body),
                u16_at(body + 2),
                u32_at(body + 4),
                u16_at(body + 14),
            ));
        } else if id == b"data" {
            let (tag, channels, rate, bits) = format.context("data chunk before fmt chunk")?;
            ensure!(
                tag == 1 && channels == 1 && rate == ESPEAK_RATE && bits == 16,
                "expected mono 16-bit PCM at {ESPEAK_RATE} Hz, got format {tag}, {channels} \
                 channels, {rate} Hz, {bits} bits"
            );
            let end = body.saturating_add(size).min(bytes.len());
            return Ok(bytes[body..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect());
        }
        pos = body.saturating_add(size).saturating_add(size & 1);
    }
    bail!("no data chunk")
}

/// A windowed-sinc resampler from [`ESPEAK_RATE`] to [`RATE`] (320/441): Kaiser window
/// (beta 8.6), cutoff 7.2 kHz, 48 input samples either side, one filter per output phase.
pub(super) struct Resampler {
    /// `taps[phase][j]`, the weight of input sample `i0 - HALF + 1 + j`.
    pub(super) taps: Vec<Vec<f64>>,
}

impl Resampler {
    const UP: usize = 320;
    const DOWN: usize = 441;
    const HALF: usize = 48;
    const CUTOFF_HZ: f64 = 7_200.0;
    const BETA: f64 = 8.6;

    pub(super) fn new() -> Self {
        let wc = Self::CUTOFF_HZ / f64::from(ESPEAK_RATE);
        let half = Self::HALF as f64;
        let taps = (0..Self::UP)
            .map(|phase| {
                let frac = phase as f64 / Self::UP as f64;
                let mut h: Vec<f64> = (0..2 * Self::HALF)
                    .map(|j| {
                        // Distance from the output instant to input sample i0 - HALF + 1 + j.
                        let x = j as f64 - half + 1.0 - frac;
                        let arg = 2.0 * wc * x;
                        let sinc = if arg == 0.0 {
                            1.0
                        } else {
                            (std::f64::consts::PI * arg).sin() / (std::f64::consts::PI * arg)
                        };
                        let r = x / half;
                        let window = if r.abs() >= 1.0 {
                            0.0
                        } else {
                            bessel_i0(Self::BETA * (1.0 - r * r).sqrt()) / bessel_i0(Self::BETA)
                        };
                        sinc * window
                    })
                    .collect();
                let sum: f64 = h.iter().sum();
                h.iter_mut().for_each(|v| *v /= sum);
                h
            })
            .collect();
        Resampler { taps }
    }

    pub(super) fn run(&self, x: &[f64]) -> Vec<f64> {
        let n_out = (x.len() * Self::UP).div_ceil(Self::DOWN);
        (0..n_out)
            .map(|n| {
                let pos = n * Self::DOWN;
                let (i0, phase) = (pos / Self::UP, pos % Self::UP);
                let taps = &self.taps[phase];
                let mut acc = 0.0;
                for (j, w) in taps.iter().enumerate() {
                    // Input index i0 - HALF + 1 + j, skipping those outside the signal.
                    let Some(i) = (i0 + 1 + j).checked_sub(Self::HALF) else {
                        continue;
                    };
                    if let Some(v) = x.get(i) {
                        acc += w * v;
                    }
                }
                acc
            })
            .collect()
    }
}

/// The modified Bessel function of the first kind, order 0 (its power series).
pub(super) fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..64 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// Encodes 16 kHz mono samples into `path` with fixed settings.
pub(super) fn encode(samples: &[i16], path: &Path) -> Result<()> {
    let mut child = Command::new("flac")
        .args([
            "--silent",
            "--force",
            "--best",
            "--no-padding",
            "--no-seektable",
            "--force-raw-format",
            "--endian=little",
            "--sign=signed",
            "--channels=1",
            "--bps=16",
        ])
        .arg(format!("--sample-rate={RATE}"))
        .arg("-o")
        .arg(path)
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("could not run flac")?;
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut stdin = child.stdin.take().context("flac's stdin")?;
    let written = stdin.write_all(&bytes);
    drop(stdin);
    let out = child.wait_with_output().context("waiting for flac")?;
    if !out.status.success() {
        bail!(
            "flac failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    written.context("writing to flac")
}
