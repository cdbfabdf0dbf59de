//! Any bytes, as an audio file: `Engine::transcribe_file` gives a transcript or an error, and
//! the training data path (`prepare`, then the loader's features) keeps the file with finite
//! features or refuses it; never a panic, caught or not (the process aborts on any panic, so
//! a panic that a guard would turn into an error is found too).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::Device;
use ent_pipeline::Engine;
use ent_train::data::{BadDataPolicy, EmotionMap, Utterance, Vocab, prepare};
use ent_train::features::FeatureSource;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    engine: Engine,
    source: FeatureSource,
    dir: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // Guards catch panics and turn them into errors; here every panic is a finding.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            hook(info);
            std::process::abort();
        }));
        let engine = Engine::demo(&Device::Cpu, ent_decode::Search::default()).unwrap();
        let source = FeatureSource::new(&engine.meta.model, None, false, &Device::Cpu).unwrap();
        let dir = std::env::temp_dir().join(format!("ent-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Fixture {
            engine,
            source,
            dir,
        }
    })
}

/// The extension the bytes' format would have, so that the decoders' hints are as for a real
/// file.
fn extension(data: &[u8]) -> &'static str {
    match data.get(..4) {
        Some(b"RIFF") => "wav",
        Some(b"fLaC") => "flac",
        Some(b"OggS") => "ogg",
        _ => "mp3",
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let path = f.dir.join(format!("input.{}", extension(data)));
    std::fs::write(&path, data).unwrap();
    if let Ok(d) = f
        .engine
        .transcribe_file("input", &path, ent_features::Segment::WHOLE, &mut |_, _| {})
    {
        assert!(d.transcript.score.is_finite());
        for x in &d.transcript.damaged {
            assert!(x.start >= 0.0 && x.end.is_none_or(|e| e >= x.start));
        }
    }
    let utt = Utterance {
        text: Some("A".into()),
        emotion: Some("neu".into()),
        ..Utterance::new("input", &path)
    };
    let policy = BadDataPolicy::default();
    if let Ok(p) = prepare(&[utt], &Vocab::characters(), &EmotionMap::default(), &policy) {
        let u = &p.utterances[0];
        let inputs = f
            .source
            .inputs(&[(&u.id, &u.audio, u.segment)], &Device::Cpu)
            .expect("a prepared utterance loads");
        let values = inputs.features.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()));
    }
});
