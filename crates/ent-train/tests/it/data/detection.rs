//! Detecting the manifest format.

use super::lhotse::cut;
use super::*;

#[test]
fn detection() {
    let sb = load_manifest(
        &fixtures().join("speechbrain.json"),
        None,
        Some(Path::new("/r")),
    )
    .expect("speechbrain");
    assert_eq!(sb.len(), 3);
    let explicit = load_manifest(
        &fixtures().join("speechbrain.json"),
        Some(ManifestFormat::SpeechBrain),
        Some(Path::new("/r")),
    )
    .expect("explicit");
    assert_eq!(sb, explicit);
    let kaldi = load_manifest(&fixtures().join("kaldi"), None, None).expect("kaldi");
    assert_eq!(kaldi, read_kaldi(&fixtures().join("kaldi")).expect("kaldi"));

    let t = TempDir::new("detect");
    let e = load_manifest(t.path(), None, None).expect_err("empty dir");
    assert!(matches!(e, DataError::UnknownFormat { .. }), "{e:?}");
    let lhotse_no_ext = t.write("cuts", format!("{}\n", cut("c", "c.wav", "")));
    assert_eq!(
        load_manifest(&lhotse_no_ext, None, None)
            .expect("lines")
            .len(),
        1
    );
    let garbage = t.write("x.json", "[1, 2");
    assert!(matches!(
        load_manifest(&garbage, None, None),
        Err(DataError::Syntax { .. })
    ));
    assert!(matches!(
        load_manifest(&t.path().join("absent.json"), None, None),
        Err(DataError::Io { .. })
    ));
}
