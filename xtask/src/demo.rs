//! `cargo xtask demo-data [--check] [--out DIR]`: the synthetic demo corpus in `data/demo`.
//!
//! English sentences written for this project, synthesised with espeak-ng (formant synthesis, not
//! human speech) in several voices and four prosody styles that stand for neutral, happy, angry
//! and sad. The "emotions" are nothing but prosody settings (pitch, pitch range, rate, volume);
//! the corpus exists so that `ent demo` can train and evaluate a small model on CPU in minutes.
//!
//! Pipeline, per piece (one voice, one style, one sentence): espeak-ng writes a 22 050 Hz WAV to
//! its stdout, parsed here by hand; a windowed-sinc resampler brings it to 16 kHz; leading and
//! trailing silence is cut at a level relative to the piece's peak and exactly [`PAD`] samples
//! of digital silence are put back on each side; samples are rounded to multiples of [`STEP`]
//! (11 significant bits; FLAC stores the constant low bits as "wasted bits" for free). Utterances are one piece,
//! or for the diarization set three pieces of one voice back to back, so every boundary is an
//! exact sample count. `flac` encodes them (no padding, no seek table, fixed settings), so the
//! same espeak-ng and flac versions give byte-identical files.
//!
//! `--check` needs neither tool: it reads the manifests and every FLAC file's STREAMINFO header
//! and checks rates, channels, lengths against the stated durations, labels, transcripts, the
//! diarization intervals, stray files and the folder's size.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// Sample rate of the corpus.
const RATE: u32 = 16_000;
/// Sample rate espeak-ng writes.
const ESPEAK_RATE: u32 = 22_050;
/// Silence kept before and after each piece: 0.1 s.
const PAD: usize = 1_600;
/// Leading and trailing samples below this fraction of the piece's peak (-40 dB) are silence.
const TRIM_LEVEL: f64 = 0.01;
/// Samples are multiples of this: 16-bit files with 11 significant bits, which keeps the corpus
/// under [`MAX_BYTES`] (quantisation noise near -71 dBFS, about 34 dB below the quietest style).
const STEP: i32 = 32;
/// espeak-ng's `-a` amplitude for every piece; the styles' volumes are percentages of it.
const BASE_AMPLITUDE: u32 = 35;
/// The corpus folder may hold at most this many bytes.
const MAX_BYTES: u64 = 10_000_000;
/// The manifests, in the order they are described.
const MANIFESTS: [&str; 4] = ["train.json", "valid.json", "test.json", "diar.json"];
/// What to install where a tool is missing (Debian and Ubuntu package names).
const INSTALL: &str = "apt-get install espeak-ng flac";

/// One prosody style, written as SSML `<prosody>` attributes (percentages of the voice's own
/// settings; espeak-ng caps `range` at 200 %).
#[derive(Debug, Clone, Copy)]
struct Style {
    /// The emotion label it stands for.
    emo: &'static str,
    /// Base pitch change, percent.
    pitch: i32,
    /// Pitch range (excursions around the base), percent of the voice's.
    range: u32,
    /// Speaking rate, percent.
    rate: u32,
    /// Volume, percent of [`BASE_AMPLITUDE`].
    volume: u32,
}

const NEUTRAL: usize = 0;

/// The four styles; index 0 is neutral.
const STYLES: [Style; 4] = [
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
enum Split {
    Train,
    Valid,
    Test,
}

/// An espeak-ng voice: a language voice and a variant.
#[derive(Debug, Clone, Copy)]
struct Voice {
    /// `-v` argument, also the speaker id.
    name: &'static str,
    /// `f` or `m`, the variant's.
    gender: &'static str,
    split: Split,
}

const fn voice(name: &'static str, gender: &'static str, split: Split) -> Voice {
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
const VOICES: [Voice; 14] = [
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
const TRAIN_PER_STYLE: usize = 12;
const VALID_PER_STYLE: usize = 8;
const TEST_PER_STYLE: usize = 8;
/// Diarization utterances per test voice.
const DIAR_PER_VOICE: usize = 10;

/// The closed set of sentences, written for this corpus (lower case for espeak-ng; the
/// manifests hold them upper-cased, which is what the transcripts normalise to).
const SENTENCES: [&str; 48] = [
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
struct Piece {
    voice: usize,
    style: usize,
    sentence: usize,
}

/// One output file.
#[derive(Debug, Clone)]
struct Utt {
    id: String,
    /// Pieces back to back.
    pieces: Vec<Piece>,
    /// Index in `pieces` of the emotional one (diarization utterances).
    emotional: Option<usize>,
}

/// The file name part of a voice: `en-us+m1` -> `en-us-m1`.
fn voice_tag(v: &Voice) -> String {
    v.name.replace('+', "-")
}

/// The `per_style` sentences voice `v` says in each style. Voice `v` says sentence `s` only in
/// style `(s + v) % 4`, so a voice never says a sentence twice and, across voices, every
/// sentence is said in every style; within a style the voice's sentences start at a rotating
/// offset so that subsets differ between voices.
fn pick(v: usize, per_style: usize) -> Vec<Piece> {
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
fn plan() -> BTreeMap<&'static str, Vec<Utt>> {
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
    let diar = splits.entry("diar").or_default();
    let test_voices = VOICES
        .iter()
        .enumerate()
        .filter(|(_, v)| v.split == Split::Test);
    for (t, (v, voice)) in test_voices.enumerate() {
        for j in 0..DIAR_PER_VOICE {
            // hap, ang, sad in turn; three consecutive sentences, a different run per voice.
            let style = 1 + (j + t) % 3;
            let first = (t * 16 + 3 * j) % SENTENCES.len();
            let sentence = |k: usize| (first + k) % SENTENCES.len();
            diar.push(Utt {
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
                emotional: Some(1),
            });
        }
    }
    for utts in splits.values_mut() {
        utts.sort_by(|a, b| a.id.cmp(&b.id));
    }
    splits
}

/// `cargo xtask demo-data [--check] [--out DIR]`.
pub fn generate(root: &Path, args: &[String]) -> Result<()> {
    let mut check_only = false;
    let mut out = root.join("data/demo");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--check" => check_only = true,
            "--out" => out = PathBuf::from(it.next().context("--out needs a folder")?),
            other => bail!("unknown option {other:?}\n{}", crate::USAGE),
        }
    }
    if check_only {
        let summary = check(&out)?;
        println!("{}: {summary}", out.display());
        return Ok(());
    }
    let started = Instant::now();
    let tools = tools()?;
    let splits = plan();
    let pieces: BTreeSet<Piece> = splits
        .values()
        .flatten()
        .flat_map(|u| u.pieces.iter().copied())
        .collect();
    let pieces: Vec<Piece> = pieces.into_iter().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let resampler = Resampler::new();

    println!("[1/5] checking the {} voices", VOICES.len());
    check_voices()?;
    println!(
        "[2/5] synthesising {} pieces with {} ({threads} threads)",
        pieces.len(),
        tools.espeak
    );
    let audio: Vec<Vec<i16>> = parallel(&pieces, threads, "synthesised", |p| {
        synthesise(p, &resampler).with_context(|| {
            format!(
                "voice {}, style {}, sentence {:?}",
                VOICES[p.voice].name, STYLES[p.style].emo, SENTENCES[p.sentence]
            )
        })
    })?;
    let audio: HashMap<Piece, Vec<i16>> = pieces.iter().copied().zip(audio).collect();

    let audio_dir = out.join("audio");
    if audio_dir.exists() {
        std::fs::remove_dir_all(&audio_dir)
            .with_context(|| format!("removing the old {}", audio_dir.display()))?;
    }
    std::fs::create_dir_all(&audio_dir)
        .with_context(|| format!("creating {}", audio_dir.display()))?;
    let utts: Vec<&Utt> = splits.values().flatten().collect();
    println!(
        "[3/5] encoding {} utterances with {} into {}",
        utts.len(),
        tools.flac,
        audio_dir.display()
    );
    let lengths: Vec<Vec<usize>> = parallel(&utts, threads, "encoded", |u| {
        let parts: Vec<&Vec<i16>> = u.pieces.iter().map(|p| &audio[p]).collect();
        let samples: Vec<i16> = parts.iter().flat_map(|s| s.iter().copied()).collect();
        let path = audio_dir.join(format!("{}.flac", u.id));
        encode(&samples, &path).with_context(|| format!("encoding {}", path.display()))?;
        Ok(parts.iter().map(|s| s.len()).collect())
    })?;
    let lengths: HashMap<&str, Vec<usize>> =
        utts.iter().map(|u| u.id.as_str()).zip(lengths).collect();

    println!("[4/5] writing the manifests and README.md");
    for (name, utts) in &splits {
        let text = if *name == "diar" {
            zed_manifest(utts, &lengths)
        } else {
            speechbrain_manifest(utts, &lengths)
        };
        let path = out.join(format!("{name}.json"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let stats = Stats::new(&splits, &lengths);
    let audio_bytes = folder_bytes(&out)?;
    let readme = out.join("README.md");
    // The README states the folder's size, its own bytes included: rewritten until the number
    // it states no longer changes (once or twice).
    let mut text = readme_text(&stats, &tools, audio_bytes);
    for _ in 0..3 {
        std::fs::write(&readme, &text).with_context(|| format!("writing {}", readme.display()))?;
        let bytes = folder_bytes(&out)?;
        let next = readme_text(&stats, &tools, bytes);
        if next == text {
            break;
        }
        text = next;
    }

    println!("[5/5] checking {}", out.display());
    let summary = check(&out)?;
    println!(
        "{}: {summary} (generated in {:.0} s)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `f` over `items` on `threads` threads, keeping the order of the results and printing a
/// counter every tenth of the way.
fn parallel<T: Sync, R: Send>(
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
struct Tools {
    espeak: String,
    flac: String,
}

/// The first line of `cmd --version`, or `None` if it does not run.
fn version(cmd: &str) -> Option<String> {
    let out = Command::new(cmd).arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next().unwrap_or_default().trim().to_string())
}

/// Finds espeak-ng and flac; as root with apt-get at hand, installs the missing ones.
fn tools() -> Result<Tools> {
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
fn espeak_name(line: &str) -> String {
    let version = line
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or("(unknown version)");
    format!("eSpeak NG {version}")
}

/// The SSML espeak-ng reads for a piece.
fn ssml(style: &Style, text: &str) -> String {
    format!(
        "<speak><prosody pitch=\"{:+}%\" range=\"{}%\" rate=\"{}%\" volume=\"{}%\">{text}\
         </prosody></speak>",
        style.pitch, style.range, style.rate, style.volume
    )
}

/// The WAV espeak-ng writes for `text` in `voice` at [`BASE_AMPLITUDE`].
fn espeak(voice: &str, options: &[&str], text: &str) -> Result<Vec<u8>> {
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
fn check_voices() -> Result<()> {
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
fn synthesise(p: &Piece, resampler: &Resampler) -> Result<Vec<i16>> {
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
fn quantise(v: f64) -> Result<i16> {
    let q = (v / f64::from(STEP)).round() as i32 * STEP;
    ensure!(
        (i32::from(i16::MIN)..=i32::from(i16::MAX)).contains(&q),
        "the resampled audio clips ({v:.0}): lower BASE_AMPLITUDE"
    );
    Ok(q as i16)
}

/// The samples of a mono 16-bit PCM WAV at [`ESPEAK_RATE`]. A `data` chunk whose size runs past
/// the end (espeak-ng writing to a pipe cannot go back to fill it in) holds the rest.
fn parse_wav(bytes: &[u8]) -> Result<Vec<i16>> {
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
struct Resampler {
    /// `taps[phase][j]`, the weight of input sample `i0 - HALF + 1 + j`.
    taps: Vec<Vec<f64>>,
}

impl Resampler {
    const UP: usize = 320;
    const DOWN: usize = 441;
    const HALF: usize = 48;
    const CUTOFF_HZ: f64 = 7_200.0;
    const BETA: f64 = 8.6;

    fn new() -> Self {
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

    fn run(&self, x: &[f64]) -> Vec<f64> {
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
fn bessel_i0(x: f64) -> f64 {
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
fn encode(samples: &[i16], path: &Path) -> Result<()> {
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

/// Seconds of `samples` samples, written exactly (a multiple of 1/16000 s has at most 7 decimals).
fn secs(samples: usize) -> String {
    let s = samples as f64 / f64::from(RATE);
    let text = format!("{s:.7}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

fn words(sentence: usize) -> String {
    SENTENCES[sentence].to_uppercase()
}

/// `{id: {wav, duration, emo, words, spk_id, gender}}`, keys in this order (written by hand so
/// that the layout does not depend on serde_json's features).
fn speechbrain_manifest(utts: &[Utt], lengths: &HashMap<&str, Vec<usize>>) -> String {
    let mut s = String::from("{\n");
    for (i, u) in utts.iter().enumerate() {
        let p = u.pieces[0];
        let voice = &VOICES[p.voice];
        let n: usize = lengths[u.id.as_str()].iter().sum();
        let _ = write!(
            s,
            "  {}: {{\"wav\": {}, \"duration\": {}, \"emo\": {}, \"words\": {}, \"spk_id\": {}, \
             \"gender\": {}}}",
            json_str(&u.id),
            json_str(&format!("audio/{}.flac", u.id)),
            secs(n),
            json_str(STYLES[p.style].emo),
            json_str(&words(p.sentence)),
            json_str(voice.name),
            json_str(voice.gender),
        );
        s.push_str(if i + 1 < utts.len() { ",\n" } else { "\n" });
    }
    s.push_str("}\n");
    s
}

/// ZED style: `{id: {wav, duration, emotion: [{emo, start, end}], transcription}}`, only the
/// emotional interval listed, plus `spk_id` and `gender`.
fn zed_manifest(utts: &[Utt], lengths: &HashMap<&str, Vec<usize>>) -> String {
    let mut s = String::from("{\n");
    for (i, u) in utts.iter().enumerate() {
        let lens = &lengths[u.id.as_str()];
        let k = u
            .emotional
            .expect("diarization utterances have an emotional piece");
        let start: usize = lens[..k].iter().sum();
        let end = start + lens[k];
        let voice = &VOICES[u.pieces[0].voice];
        let text: Vec<String> = u.pieces.iter().map(|p| words(p.sentence)).collect();
        let _ = write!(
            s,
            "  {}: {{\"wav\": {}, \"duration\": {}, \"emotion\": [{{\"emo\": {}, \"start\": {}, \
             \"end\": {}}}], \"transcription\": {}, \"spk_id\": {}, \"gender\": {}}}",
            json_str(&u.id),
            json_str(&format!("audio/{}.flac", u.id)),
            secs(lens.iter().sum()),
            json_str(STYLES[u.pieces[k].style].emo),
            secs(start),
            secs(end),
            json_str(&text.join(" ")),
            json_str(voice.name),
            json_str(voice.gender),
        );
        s.push_str(if i + 1 < utts.len() { ",\n" } else { "\n" });
    }
    s.push_str("}\n");
    s
}

/// Counts and durations per split and label, for the README.
struct Stats {
    /// split -> label -> (utterances, samples); diarization by its emotional label.
    per: BTreeMap<&'static str, BTreeMap<&'static str, (usize, usize)>>,
    /// Mean, shortest and longest piece of the single-sentence splits, in samples.
    piece_lengths: (f64, usize, usize),
}

impl Stats {
    fn new(
        splits: &BTreeMap<&'static str, Vec<Utt>>,
        lengths: &HashMap<&str, Vec<usize>>,
    ) -> Stats {
        let mut per: BTreeMap<&'static str, BTreeMap<&'static str, (usize, usize)>> =
            BTreeMap::new();
        let mut singles = Vec::new();
        for (name, utts) in splits {
            for u in utts {
                let label = STYLES[u.pieces[u.emotional.unwrap_or(0)].style].emo;
                let lens = &lengths[u.id.as_str()];
                let e = per.entry(name).or_default().entry(label).or_default();
                e.0 += 1;
                e.1 += lens.iter().sum::<usize>();
                if u.emotional.is_none() {
                    singles.extend(lens.iter().copied());
                }
            }
        }
        let mean = singles.iter().sum::<usize>() as f64 / singles.len().max(1) as f64;
        let min = singles.iter().copied().min().unwrap_or(0);
        let max = singles.iter().copied().max().unwrap_or(0);
        Stats {
            per,
            piece_lengths: (mean, min, max),
        }
    }
}

/// Total bytes of the files under `dir`.
fn folder_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            folder_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn minutes(samples: usize) -> String {
    format!("{:.1} min", samples as f64 / f64::from(RATE) / 60.0)
}

fn readme_text(stats: &Stats, tools: &Tools, bytes: u64) -> String {
    let mut s = String::new();
    let count = |split: &str| -> (usize, usize) {
        stats.per.get(split).map_or((0, 0), |m| {
            m.values().fold((0, 0), |(n, t), &(a, b)| (n + a, t + b))
        })
    };
    let total_samples: usize = ["train", "valid", "test", "diar"]
        .iter()
        .map(|n| count(n).1)
        .sum();
    let voices_of = |split: Split| VOICES.iter().filter(|v| v.split == split).count();
    let _ = writeln!(
        s,
        "# Demo corpus (synthetic speech)\n\n\
         **Everything here is synthetic.** The audio is espeak-ng formant synthesis, not human \
         speech, and the \"emotions\" are four prosody settings (pitch, pitch range, speaking \
         rate, volume) that stand for neutral, happy, angry and sad. The corpus exists so that `ent demo` can train and evaluate a small model on a CPU in \
         minutes; scores on it say that the pipeline works, not how well a model recognises \
         emotion in people.\n\n\
         {} utterances, {} of audio, {:.1} MB, generated by `cargo xtask demo-data` with {} and \
         {}.\n",
        ["train", "valid", "test", "diar"]
            .iter()
            .map(|n| count(n).0)
            .sum::<usize>(),
        minutes(total_samples),
        bytes as f64 / 1e6,
        tools.espeak,
        tools.flac,
    );
    let _ = writeln!(
        s,
        "## Contents\n\n\
         | file | what | utterances | neu | hap | ang | sad | audio |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for (name, what) in [
        (
            "train",
            format!("{} training voices", voices_of(Split::Train)),
        ),
        (
            "valid",
            format!("{} validation voice", voices_of(Split::Valid)),
        ),
        (
            "test",
            format!("{} held-out voices", voices_of(Split::Test)),
        ),
        (
            "diar",
            "held-out voices, neutral -> emotion -> neutral (columns: the emotional part)".into(),
        ),
    ] {
        let m = stats.per.get(name);
        let n = |label: &str| m.and_then(|m| m.get(label)).map_or(0, |e| e.0);
        let (total, samples) = count(name);
        let _ = writeln!(
            s,
            "| `{name}.json` | {what} | {total} | {} | {} | {} | {} | {} |",
            n("neu"),
            n("hap"),
            n("ang"),
            n("sad"),
            minutes(samples)
        );
    }
    let (mean, min, max) = stats.piece_lengths;
    let _ = writeln!(
        s,
        "\n`audio/*.flac`: 16 kHz, mono, 16-bit FLAC. Single sentences last {:.2} s on average \
         ({:.2} to {:.2} s).\n\n\
         - `train.json`, `valid.json`, `test.json`: SpeechBrain-style JSON, `{{id: {{wav, \
         duration, emo, words, spk_id, gender}}}}`; `emo` is `neu`, `hap`, `ang` or `sad`, \
         `words` the sentence in upper case, `spk_id` the espeak-ng voice, `gender` `f` or `m`.\n\
         - `diar.json`: ZED-style JSON for emotion diarization, `{{id: {{wav, duration, emotion: \
         [{{emo, start, end}}], transcription}}}}` (with `spk_id` and `gender`): a neutral \
         sentence, an emotional one and another neutral one by the same voice, back to back. \
         Only the emotional interval is listed (seconds); the rest is neutral. Its boundaries \
         are exact sample counts: each one lies in the middle of the {:.1} s of silence between \
         two sentences.\n\
         - Paths are relative to this folder; durations are exact (samples / 16000).\n",
        mean / f64::from(RATE),
        min as f64 / f64::from(RATE),
        max as f64 / f64::from(RATE),
        2.0 * PAD as f64 / f64::from(RATE),
    );
    let _ = writeln!(
        s,
        "## Styles\n\n\
         SSML `<prosody>` settings given to espeak-ng, relative to each voice's own (espeak-ng \
         amplitude `-a {BASE_AMPLITUDE}` is 100 % volume):\n\n\
         | label | stands for | pitch | pitch range | rate | volume |\n\
         |---|---|---|---|---|---|"
    );
    for (style, name) in STYLES.iter().zip(["neutral", "happy", "angry", "sad"]) {
        let _ = writeln!(
            s,
            "| `{}` | {name} | {:+} % | {} % | {} % | {} % |",
            style.emo, style.pitch, style.range, style.rate, style.volume
        );
    }
    let _ = writeln!(
        s,
        "\n## Voices\n\n\
         espeak-ng voices `language+variant`; each variant is used by one voice only.\n\n\
         | voice | gender | split |\n|---|---|---|"
    );
    for v in &VOICES {
        let split = match v.split {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test, diar",
        };
        let _ = writeln!(s, "| `{}` | {} | {split} |", v.name, v.gender);
    }
    let _ = writeln!(
        s,
        "\n## Sentences and splits\n\n\
         {} short English sentences (3 to 7 words, letters, spaces and apostrophes only) written \
         for this corpus. The set is closed: validation and test use the same sentences as \
         training; what is held out is the voice.\n\n\
         - A voice says sentence `s` only in style `(s + v) % 4` (`v` its index in the table \
         above), so no voice says a sentence twice and every sentence is heard in every style \
         across voices. From its {} sentences per style a voice says {TRAIN_PER_STYLE} \
         (training), {VALID_PER_STYLE} (validation) or {TEST_PER_STYLE} (test), starting at an \
         offset that turns with the voice. Every split has the four labels in equal numbers.\n\
         - `diar.json`: {DIAR_PER_VOICE} utterances per test voice; the emotional sentence is \
         happy, angry and sad in turn, and the three sentences are consecutive ones of the list.\n",
        SENTENCES.len(),
        SENTENCES.len() / STYLES.len(),
    );
    let _ = writeln!(
        s,
        "## Processing\n\n\
         espeak-ng writes 22 050 Hz audio; `cargo xtask demo-data` resamples it to 16 kHz \
         (windowed sinc, Kaiser window, cutoff 7.2 kHz), cuts leading and trailing samples \
         quieter than 1 % of the sentence's peak, puts back exactly {:.1} s of digital silence \
         on each side, and rounds samples to multiples of {STEP} ({} significant bits; FLAC \
         stores the constant low bits at no cost) to keep the corpus small. Files are encoded with `flac --best \
         --no-padding --no-seektable`. The same espeak-ng and flac versions give byte-identical \
         files.\n",
        PAD as f64 / f64::from(RATE),
        16 - STEP.trailing_zeros(),
    );
    let _ = writeln!(
        s,
        "## Regenerating\n\n\
         ```sh\n\
         sudo {INSTALL}   # Debian/Ubuntu; the command installs them itself when run as root\n\
         cargo xtask demo-data           # rewrites data/demo (about a minute)\n\
         cargo xtask demo-data --check   # checks the manifests against the FLAC headers\n\
         ```\n\n\
         The sentences, voices, styles and splits are fixed in `xtask/src/demo.rs`.\n"
    );
    let _ = writeln!(
        s,
        "## Licence\n\n\
         The sentences were written for this project. The audio is the output of espeak-ng \
         (GPL-3.0-or-later), which is run to produce it and not included here. The sentences, \
         the manifests and the audio are distributed under the project's licence (MIT OR \
         Apache-2.0)."
    );
    s
}

/// What a FLAC file's STREAMINFO says.
#[derive(Debug, Clone, Copy)]
struct StreamInfo {
    rate: u32,
    channels: u32,
    bits: u32,
    samples: u64,
}

/// Reads the STREAMINFO block, which a FLAC file must start with.
fn stream_info(path: &Path) -> Result<StreamInfo> {
    use std::io::Read as _;
    let mut head = [0u8; 42];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("reading the header of {}", path.display()))?;
    ensure!(
        &head[..4] == b"fLaC",
        "{} is not a FLAC file",
        path.display()
    );
    let block_type = head[4] & 0x7f;
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]);
    ensure!(
        block_type == 0 && len == 34,
        "{}: the first metadata block is not STREAMINFO",
        path.display()
    );
    let b = &head[8..42];
    // Bytes 10..18: sample rate (20 bits), channels - 1 (3), bits - 1 (5), total samples (36).
    let packed = u64::from_be_bytes([b[10], b[11], b[12], b[13], b[14], b[15], b[16], b[17]]);
    Ok(StreamInfo {
        rate: (packed >> 44) as u32,
        channels: ((packed >> 41) & 0x7) as u32 + 1,
        bits: ((packed >> 36) & 0x1f) as u32 + 1,
        samples: packed & 0xf_ffff_ffff,
    })
}

/// Checks the corpus in `dir` and returns a one-line summary.
pub fn check(dir: &Path) -> Result<String> {
    let labels = ["neu", "hap", "ang", "sad"];
    let mut referenced = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut summary = Vec::new();
    let mut total_secs = 0.0;
    for name in MANIFESTS {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (run `cargo xtask demo-data`)", path.display()))?;
        let json: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let entries = json
            .as_object()
            .with_context(|| format!("{} is not a JSON object", path.display()))?;
        ensure!(!entries.is_empty(), "{} is empty", path.display());
        let diar = name == "diar.json";
        let mut per_label: BTreeMap<String, usize> = BTreeMap::new();
        let mut secs_sum = 0.0;
        for (id, e) in entries {
            let ctx = || format!("{}: utterance {id}", path.display());
            ensure!(ids.insert(id.clone()), "{}: id used twice", ctx());
            let wav = e["wav"]
                .as_str()
                .with_context(|| format!("{}: no wav", ctx()))?;
            ensure!(
                referenced.insert(wav.to_string()),
                "{}: {wav} is used twice",
                ctx()
            );
            let info = stream_info(&dir.join(wav)).with_context(ctx)?;
            ensure!(
                info.rate == RATE && info.channels == 1 && info.bits == 16,
                "{}: {} Hz, {} channels, {} bits instead of {RATE} Hz mono 16-bit",
                ctx(),
                info.rate,
                info.channels,
                info.bits
            );
            let duration = e["duration"]
                .as_f64()
                .with_context(|| format!("{}: no duration", ctx()))?;
            let actual = info.samples as f64 / f64::from(RATE);
            ensure!(
                info.samples > 0 && (duration - actual).abs() <= 0.001,
                "{}: the manifest says {duration} s, the file holds {actual} s",
                ctx()
            );
            secs_sum += actual;
            let text_key = if diar { "transcription" } else { "words" };
            let text = e[text_key]
                .as_str()
                .with_context(|| format!("{}: no {text_key}", ctx()))?;
            ensure!(
                !text.is_empty()
                    && text
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c == ' ' || c == '\'')
                    && !text.contains("  ")
                    && text.trim() == text,
                "{}: transcript {text:?} is not upper-case letters, apostrophes and single spaces",
                ctx()
            );
            ensure!(
                matches!(e["gender"].as_str(), Some("f" | "m")),
                "{}: gender is not f or m",
                ctx()
            );
            ensure!(e["spk_id"].is_string(), "{}: no spk_id", ctx());
            let label = if diar {
                let intervals = e["emotion"]
                    .as_array()
                    .with_context(|| format!("{}: emotion is not a list", ctx()))?;
                ensure!(
                    intervals.len() == 1,
                    "{}: {} intervals instead of one",
                    ctx(),
                    intervals.len()
                );
                let iv = &intervals[0];
                let (start, end) = (
                    iv["start"].as_f64().unwrap_or(-1.0),
                    iv["end"].as_f64().unwrap_or(-1.0),
                );
                ensure!(
                    0.0 < start && start < end && end < duration,
                    "{}: interval [{start}, {end}] is not inside (0, {duration})",
                    ctx()
                );
                iv["emo"].as_str().unwrap_or_default()
            } else {
                e["emo"].as_str().unwrap_or_default()
            };
            ensure!(
                labels.contains(&label) && !(diar && label == "neu"),
                "{}: label {label:?}",
                ctx()
            );
            *per_label.entry(label.to_string()).or_default() += 1;
        }
        total_secs += secs_sum;
        let counts: Vec<String> = labels
            .iter()
            .filter_map(|l| per_label.get(*l).map(|n| format!("{l} {n}")))
            .collect();
        summary.push(format!(
            "{} {} ({}, {:.1} min)",
            name.trim_end_matches(".json"),
            entries.len(),
            counts.join(" "),
            secs_sum / 60.0
        ));
    }
    let audio = dir.join("audio");
    for entry in
        std::fs::read_dir(&audio).with_context(|| format!("listing {}", audio.display()))?
    {
        let name = format!("audio/{}", entry?.file_name().to_string_lossy());
        ensure!(
            referenced.contains(&name),
            "{}: {name} is in no manifest",
            dir.display()
        );
    }
    ensure!(
        dir.join("README.md").is_file(),
        "{}: no README.md",
        dir.display()
    );
    let bytes = folder_bytes(dir)?;
    ensure!(
        bytes <= MAX_BYTES,
        "{} holds {bytes} bytes, more than {MAX_BYTES}",
        dir.display()
    );
    Ok(format!(
        "ok: {}; {:.1} min, {:.2} MB",
        summary.join(", "),
        total_secs / 60.0,
        bytes as f64 / 1e6
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_split_is_balanced_and_no_voice_repeats_a_sentence() {
        let splits = plan();
        for (name, utts) in &splits {
            let mut per_label: BTreeMap<&str, usize> = BTreeMap::new();
            for u in utts {
                let label = STYLES[u.pieces[u.emotional.unwrap_or(0)].style].emo;
                *per_label.entry(label).or_default() += 1;
            }
            let counts: BTreeSet<usize> = per_label.values().copied().collect();
            assert_eq!(counts.len(), 1, "{name}: {per_label:?}");
        }
        let mut said: BTreeSet<(usize, usize)> = BTreeSet::new();
        let mut styles_of: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for u in splits.values().flatten().filter(|u| u.emotional.is_none()) {
            let p = u.pieces[0];
            assert!(said.insert((p.voice, p.sentence)), "{} twice", u.id);
            if VOICES[p.voice].split == Split::Train {
                styles_of.entry(p.sentence).or_default().insert(p.style);
            }
        }
        assert_eq!(styles_of.len(), SENTENCES.len(), "every sentence trains");
        assert!(styles_of.values().all(|s| s.len() == STYLES.len()));
    }

    #[test]
    fn sentences_are_in_the_vocabulary() {
        let distinct: BTreeSet<&str> = SENTENCES.iter().copied().collect();
        assert_eq!(distinct.len(), SENTENCES.len());
        for s in SENTENCES {
            let n = s.split(' ').count();
            assert!((3..=7).contains(&n), "{s:?}");
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_lowercase() || c == ' ' || c == '\'')
            );
        }
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(secs(16_000), "1");
        assert_eq!(secs(1), "0.0000625");
        assert_eq!(secs(24_425), "1.5265625");
        assert_eq!(secs(24_425).parse::<f64>().unwrap() * 16_000.0, 24_425.0);
    }

    #[test]
    fn resampler_keeps_a_tone_and_the_length() {
        let r = Resampler::new();
        let n = 22_050;
        let x: Vec<f64> = (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * 1_000.0 * i as f64 / 22_050.0).sin())
            .collect();
        let y = r.run(&x);
        assert_eq!(y.len(), 16_000);
        // Away from the edges the 1 kHz tone keeps its amplitude and phase.
        for (k, v) in y.iter().enumerate().take(15_900).skip(100) {
            let want = (2.0 * std::f64::consts::PI * 1_000.0 * k as f64 / 16_000.0).sin();
            assert!((v - want).abs() < 1e-3, "sample {k}: {v} vs {want}");
        }
        // A tone above the new Nyquist frequency is removed.
        let x: Vec<f64> = (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * 9_000.0 * i as f64 / 22_050.0).sin())
            .collect();
        let peak = r.run(&x)[100..15_900]
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(peak < 1e-3, "9 kHz leaks through at {peak}");
    }

    #[test]
    fn wav_from_a_pipe_is_read_to_its_end() {
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&ESPEAK_RATE.to_le_bytes());
        b.extend_from_slice(&(ESPEAK_RATE * 2).to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        for s in [1i16, -2, 300] {
            b.extend_from_slice(&s.to_le_bytes());
        }
        assert_eq!(parse_wav(&b).unwrap(), vec![1, -2, 300]);
        assert!(parse_wav(&b[..20]).is_err());
    }
}
