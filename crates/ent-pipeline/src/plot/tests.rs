//! Tests of the plots: the SVG is parsed as XML (roxmltree) and checked element by element.

use std::fs;

use plotters::prelude::*;

use super::confusion::*;
use super::style::*;
use super::timeline::*;
use super::*;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary folder")
}

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn tokens(list: &[(&str, f64, usize)]) -> Vec<(String, f64, usize)> {
    list.iter()
        .map(|&(s, t, e)| (s.to_string(), t, e))
        .collect()
}

/// An SVG element: name and attributes, and the text inside it.
#[derive(Debug)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
}

impl Element {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn num(&self, key: &str) -> i64 {
        self.attr(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(i64::MIN)
    }
}

/// Parses the SVG as XML (well-formed, a single `<svg>` root) and returns its elements in
/// document order, each with its own text (the trimmed text children, joined).
fn parse_svg(svg: &str) -> Vec<Element> {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg", "root element");
    doc.descendants()
        .filter(|n| n.is_element())
        .map(|n| Element {
            name: n.tag_name().name().to_string(),
            attrs: n
                .attributes()
                .map(|a| (a.name().to_string(), a.value().to_string()))
                .collect(),
            text: n
                .children()
                .filter(|c| c.is_text())
                .map(|c| c.text().unwrap_or("").trim())
                .collect(),
        })
        .collect()
}

fn texts(elements: &[Element]) -> Vec<&str> {
    elements
        .iter()
        .filter(|e| e.name == "text")
        .map(|e| e.text.as_str())
        .collect()
}

/// Filled rectangles with their top at `y` and the band height.
fn band_rects(elements: &[Element], y: i32) -> Vec<&Element> {
    elements
        .iter()
        .filter(|e| {
            e.name == "rect"
                && e.num("y") == i64::from(y)
                && e.num("height") == i64::from(BAND_HEIGHT)
                && e.attr("fill") != Some("none")
        })
        .collect()
}

fn color_hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

#[test]
fn plotters_draws_text_without_font_features() {
    // A chart with a caption and axis labels through plotters' own chart
    // machinery: the SVG backend must emit <text> elements.
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (320, 240)).into_drawing_area();
        root.fill(&WHITE).unwrap();
        let mut chart = ChartBuilder::on(&root)
            .caption("Caption here", ("sans-serif", 20))
            .x_label_area_size(30)
            .y_label_area_size(30)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .unwrap();
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("probability")
            .draw()
            .unwrap();
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], &RED))
            .unwrap();
        root.present().unwrap();
    }
    let elements = parse_svg(&svg);
    let t = texts(&elements);
    for expected in ["Caption here", "seconds", "probability"] {
        assert!(t.contains(&expected), "{expected:?} not in {t:?}");
    }
    assert!(
        t.iter().any(|s| s.starts_with("0.")),
        "tick labels in {t:?}"
    );
}

#[test]
fn long_text_wraps_then_is_cut() {
    let px = 10.0; // 6 px per Latin character
    assert_eq!(wrap_text("short", px, 60.0, 2), vec!["short"]);
    assert_eq!(
        wrap_text("aaaa bbbb cccc dddd", px, 60.0, 2),
        vec!["aaaa bbbb".to_string(), "cccc dddd".to_string()]
    );
    let lines = wrap_text("aaaa bbbb cccc dddd eeee", px, 60.0, 2);
    assert_eq!(lines[0], "aaaa bbbb");
    assert!(
        lines[1].starts_with("cccc") && lines[1].ends_with('…'),
        "{lines:?}"
    );
    assert!(text_width(&lines[1], px) <= 60.0);
    // No space to break at: cut.
    let lines = wrap_text(&"x".repeat(30), px, 60.0, 2);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].ends_with('…') && text_width(&lines[0], px) <= 60.0);
    assert_eq!(fit_text("你好世界", px, 25.0), "你…");
}

#[test]
fn runs_merge_equal_neighbours() {
    assert_eq!(runs(&[]), vec![]);
    assert_eq!(runs(&[2]), vec![(0, 1, 2)]);
    assert_eq!(
        runs(&[3, 3, 3, 0, 0, 1, 3, 3]),
        vec![(0, 3, 3), (3, 5, 0), (5, 6, 1), (6, 8, 3)]
    );
}

#[test]
fn words_group_characters_between_separators() {
    let words = group_words(&tokens(&[
        ("h", 0.1, 0),
        ("i", 0.2, 0),
        (" ", 0.25, 0),
        ("t", 0.4, 1),
        ("h", 0.5, 1),
        ("e", 0.6, 1),
        ("r", 0.7, 1),
        ("e", 0.8, 1),
        ("|", 0.85, 1),
        ("▁you", 1.0, 2),
        ("th", 1.1, 2),
        ("▁a", 1.2, 2),
        (" b", 1.3, 2),
        ("c ", 1.4, 2),
        ("d", 1.5, 2),
    ]));
    let got: Vec<(&str, f64)> = words.iter().map(|w| (w.text.as_str(), w.start)).collect();
    assert_eq!(
        got,
        vec![
            ("hi", 0.1),
            ("there", 0.4),
            ("youth", 1.0),
            ("a", 1.2),
            ("bc", 1.3),
            ("d", 1.5)
        ]
    );
    // CJK characters stand alone.
    let words = group_words(&tokens(&[("你", 0.1, 0), ("好", 0.2, 0), ("ok", 0.3, 0)]));
    let got: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
    assert_eq!(got, vec!["你", "好", "ok"]);
}

#[test]
fn colours_fixed_for_known_names_and_distinct_otherwise() {
    let c = class_colors(&labels(&["Happy", "ANG", "sad", "neu", "bored", "awe"]));
    assert_eq!(c[0], RGBColor(240, 190, 20));
    assert_eq!(c[1], RGBColor(214, 39, 40));
    assert_eq!(c[2], RGBColor(31, 119, 180));
    assert_eq!(c[3], RGBColor(158, 158, 158));
    assert_eq!(class_colors(&labels(&["neutral"]))[0], c[3]);
    assert_eq!(class_colors(&labels(&["HAPPY"]))[0], c[0]);
    // Unknown names get palette colours distinct from each other and
    // from the known ones in the same set, even past the palette's length.
    let mut many = labels(&["Happy", "ANG", "sad", "neu", "disgust", "fear"]);
    many.extend((0..40).map(|i| format!("class{i}")));
    let all = class_colors(&many);
    for i in 0..all.len() {
        for j in i + 1..all.len() {
            assert_ne!(all[i], all[j], "colours {i} and {j}");
        }
    }
    // A known name takes its colour out of the palette for the others.
    let c = class_colors(&labels(&["disgust", "other"]));
    assert_ne!(c[0], c[1]);
}

fn sample_labels() -> Vec<String> {
    labels(&["happy", "angry", "sad", "neutral"])
}

#[test]
fn timeline_has_bands_legend_curves_and_words() {
    let dir = tempdir();
    // Nested folders that do not exist yet.
    let path = dir.path().join("a/b/utt.svg");
    let labels = sample_labels();
    let frames = [3, 3, 3, 0, 0, 0, 0, 1, 1, 3, 3];
    let probs: Vec<Vec<f32>> = frames
        .iter()
        .map(|&e| (0..4).map(|k| if k == e { 0.7 } else { 0.1 }).collect())
        .collect();
    let toks = tokens(&[
        ("h", 0.08, 0),
        ("i", 0.10, 0),
        (" ", 0.12, 3),
        ("y", 0.30, 1),
        ("o", 0.32, 1),
    ]);
    let reference = [(0.0, 0.1, 3), (0.1, 0.3, 0), (0.3, 0.44, 3)];
    let t = Timeline {
        title: "utt<1> & \"hi yo\"",
        frame_shift: 0.04,
        frame_emotions: &frames,
        frame_probs: Some(&probs),
        labels: &labels,
        tokens: &toks,
        reference: Some(&reference),
    };
    emotion_timeline(&path, &t).unwrap();
    let svg = fs::read_to_string(&path).unwrap();
    let elements = parse_svg(&svg);
    let layout = TimelineLayout::new(&t);
    assert_eq!(elements[0].num("width"), i64::from(layout.width));
    assert!(layout.width >= 800);

    let text = texts(&elements);
    assert!(text.contains(&"utt<1> & \"hi yo\""), "title in {text:?}");
    for name in &labels {
        assert!(text.contains(&name.as_str()), "{name} in {text:?}");
    }
    for word in [
        "hi",
        "yo",
        "decoded",
        "reference",
        "probability",
        "time (s)",
    ] {
        assert!(text.contains(&word), "{word:?} in {text:?}");
    }
    // Characters were grouped: no single-letter labels.
    assert!(!text.contains(&"h") && !text.contains(&"y"), "{text:?}");

    // One band rectangle per run, coloured by class.
    let colors = class_colors(&labels);
    let decoded = band_rects(&elements, layout.decoded_top);
    let fills: Vec<&str> = decoded.iter().map(|r| r.attr("fill").unwrap()).collect();
    let expected: Vec<String> = [3, 0, 1, 3].iter().map(|&k| color_hex(colors[k])).collect();
    assert_eq!(fills, expected);
    // The runs tile the plot area without gaps.
    let xs: Vec<(i64, i64)> = decoded
        .iter()
        .map(|r| (r.num("x"), r.num("x") + r.num("width")))
        .collect();
    for pair in xs.windows(2) {
        assert_eq!(pair[0].1, pair[1].0);
    }
    assert_eq!(xs[0].0, i64::from(layout.plot_left));
    let reference_rects = band_rects(&elements, layout.reference_top.unwrap());
    assert_eq!(reference_rects.len(), reference.len());

    // A probability curve per class with a point per frame.
    let curves: Vec<&Element> = elements
        .iter()
        .filter(|e| e.name == "polyline" && e.attr("stroke-width") == Some("2"))
        .filter(|e| e.attr("points").unwrap().split_whitespace().count() == frames.len())
        .collect();
    assert_eq!(curves.len(), labels.len());
    // A marker per non-separator token.
    let markers = elements
        .iter()
        .filter(|e| {
            e.name == "polyline"
                && e.attr("points").is_some_and(|p| {
                    p.contains(&format!(",{} ", layout.marker_top))
                        && p.contains(&format!(",{} ", layout.marker_top + MARKER_HEIGHT))
                })
        })
        .count();
    assert_eq!(markers, 4);
    // No temporary file left behind.
    let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn timeline_without_probs_or_reference() {
    let dir = tempdir();
    let path = dir.path().join("plain.svg");
    let labels = labels(&["neu", "hap"]);
    let frames: Vec<usize> = (0..500).map(|i| usize::from((i / 7) % 3 == 0)).collect();
    let t = Timeline {
        title: "long",
        frame_shift: 0.02,
        frame_emotions: &frames,
        frame_probs: None,
        labels: &labels,
        tokens: &[],
        reference: None,
    };
    emotion_timeline(&path, &t).unwrap();
    let elements = parse_svg(&fs::read_to_string(&path).unwrap());
    let layout = TimelineLayout::new(&t);
    assert_eq!(
        band_rects(&elements, layout.decoded_top).len(),
        runs(&frames).len()
    );
    let text = texts(&elements);
    assert!(!text.contains(&"reference") && !text.contains(&"probability"));
    assert_eq!(layout.plot_width, 1600);
    // 10 s at 160 px/s: ticks every half second, 0.0 to 10.0.
    assert!(text.contains(&"0.0") && text.contains(&"10.0"), "{text:?}");
    assert!(text.contains(&"9.5") && !text.contains(&"10.5"), "{text:?}");
}

#[test]
fn dense_words_widen_the_plot_and_do_not_overlap() {
    let labels = sample_labels();
    let frames = vec![3usize; 25]; // 1 s
    let words: Vec<String> = (0..30).map(|i| format!("word{i}")).collect();
    let mut toks = Vec::new();
    for (i, w) in words.iter().enumerate() {
        toks.push((w.clone(), i as f64 / 30.0, 3));
        toks.push((" ".to_string(), i as f64 / 30.0, 3));
    }
    let t = Timeline {
        title: "dense",
        frame_shift: 0.04,
        frame_emotions: &frames,
        frame_probs: None,
        labels: &labels,
        tokens: &toks,
        reference: None,
    };
    let layout = TimelineLayout::new(&t);
    assert_eq!(layout.words.len(), 30);
    assert!(layout.words.iter().all(|w| w.row < MAX_WORD_ROWS));
    for a in &layout.words {
        for b in &layout.words {
            if a.x < b.x && a.row == b.row {
                let end = f64::from(a.x) + text_width(&a.text, WORD_PX);
                assert!(end <= f64::from(b.x), "{a:?} overlaps {b:?}");
            }
        }
    }
}

#[test]
fn empty_utterance_writes_a_valid_plot() {
    let dir = tempdir();
    let path = dir.path().join("empty.svg");
    let labels = sample_labels();
    let t = Timeline {
        title: "nothing",
        frame_shift: 0.04,
        frame_emotions: &[],
        frame_probs: Some(&[]),
        labels: &labels,
        tokens: &[],
        reference: Some(&[]),
    };
    emotion_timeline(&path, &t).unwrap();
    let elements = parse_svg(&fs::read_to_string(&path).unwrap());
    let layout = TimelineLayout::new(&t);
    assert!(band_rects(&elements, layout.decoded_top).is_empty());
    assert!(texts(&elements).contains(&"no frames"));
}

#[test]
fn timeline_rejects_invalid_input() {
    let dir = tempdir();
    let path = dir.path().join("bad.svg");
    let labels = sample_labels();
    let frames = [0usize, 1, 2];
    let probs = vec![vec![0.25f32; 4]; 3];
    let good = Timeline {
        title: "t",
        frame_shift: 0.04,
        frame_emotions: &frames,
        frame_probs: Some(&probs),
        labels: &labels,
        tokens: &[],
        reference: None,
    };
    emotion_timeline(&path, &good).unwrap();
    fs::remove_file(&path).unwrap();

    let expect_err = |t: Timeline, needle: &str| {
        let err = emotion_timeline(&path, &t).expect_err(needle);
        let msg = format!("{err:#}");
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        assert!(!path.exists());
    };
    expect_err(
        Timeline {
            labels: &[],
            ..good.clone()
        },
        "no class labels",
    );
    for shift in [0.0, -0.02, f64::NAN, f64::INFINITY] {
        expect_err(
            Timeline {
                frame_shift: shift,
                ..good.clone()
            },
            "frame shift",
        );
    }
    expect_err(
        Timeline {
            frame_emotions: &[0, 4, 1],
            ..good.clone()
        },
        "frame 1 has emotion index 4",
    );
    let short = vec![vec![0.25f32; 4]; 2];
    expect_err(
        Timeline {
            frame_probs: Some(&short),
            ..good.clone()
        },
        "cover 2 frames",
    );
    let ragged = vec![vec![0.25f32; 4], vec![0.5f32; 3], vec![0.25f32; 4]];
    expect_err(
        Timeline {
            frame_probs: Some(&ragged),
            ..good.clone()
        },
        "frame 1 has 3 class probabilities",
    );
    let nan = vec![
        vec![0.25f32; 4],
        vec![0.25, f32::NAN, 0.25, 0.25],
        vec![0.25f32; 4],
    ];
    expect_err(
        Timeline {
            frame_probs: Some(&nan),
            ..good.clone()
        },
        "non-finite",
    );
    let bad_token = tokens(&[("a", 0.1, 0), ("b", 0.2, 7)]);
    expect_err(
        Timeline {
            tokens: &bad_token,
            ..good.clone()
        },
        "token 1 (\"b\") has emotion index 7",
    );
    let bad_time = tokens(&[("a", -0.1, 0)]);
    expect_err(
        Timeline {
            tokens: &bad_time,
            ..good.clone()
        },
        "emission time",
    );
    let nan_time = tokens(&[("a", f64::NAN, 0)]);
    expect_err(
        Timeline {
            tokens: &nan_time,
            ..good.clone()
        },
        "emission time",
    );
    expect_err(
        Timeline {
            reference: Some(&[(0.0, 0.1, 4)]),
            ..good.clone()
        },
        "reference segment 0 has class index 4",
    );
    expect_err(
        Timeline {
            reference: Some(&[(0.3, 0.1, 0)]),
            ..good.clone()
        },
        "reference segment 0 spans",
    );
    expect_err(
        Timeline {
            reference: Some(&[(f64::NAN, 0.1, 0)]),
            ..good.clone()
        },
        "reference segment 0 spans",
    );
}

#[test]
fn unwritable_path_names_the_path() {
    let dir = tempdir();
    fs::create_dir_all(dir.path()).unwrap();
    // A file where a folder is needed.
    let blocker = dir.path().join("file");
    fs::write(&blocker, "x").unwrap();
    let path = blocker.join("plot.svg");
    let labels = sample_labels();
    let counts = vec![vec![1u64; 4]; 4];
    let err = confusion_matrix(&path, "t", &labels, &counts).unwrap_err();
    assert!(
        format!("{err:#}").contains(&path.display().to_string()),
        "{err:#}"
    );
    // A path that is an existing folder.
    let err = confusion_matrix(dir.path(), "t", &labels, &counts).unwrap_err();
    assert!(
        format!("{err:#}").contains(&dir.path().display().to_string()),
        "{err:#}"
    );
}

#[test]
fn confusion_matrix_prints_counts_and_row_shares() {
    let dir = tempdir();
    let path = dir.path().join("cm.svg");
    let labels = sample_labels();
    let counts = vec![
        vec![50, 3, 0, 7],
        vec![4, 81, 2, 13],
        vec![0, 0, 0, 0],
        vec![9, 11, 17, 263],
    ];
    confusion_matrix(&path, "test set <all>", &labels, &counts).unwrap();
    let elements = parse_svg(&fs::read_to_string(&path).unwrap());
    let text = texts(&elements);
    assert!(text.contains(&"test set <all>"));
    for name in &labels {
        // Column and row headers.
        assert_eq!(
            text.iter().filter(|t| **t == name.as_str()).count(),
            2,
            "{name}"
        );
    }
    for expected in [
        "263",
        "81",
        "13",
        "83.3%",
        "81.0%",
        "87.7%",
        "–",
        "n = 60",
        "n = 0",
        "hypothesis",
        "reference",
    ] {
        assert!(text.contains(&expected), "{expected:?} in {text:?}");
    }
    // 4 x 4 zeros plus... count the cells exactly.
    let layout = ConfusionLayout::new("test set <all>", &labels);
    let c = i64::from(layout.cell);
    let cells: Vec<&Element> = elements
        .iter()
        .filter(|e| e.name == "rect" && e.num("width") == c && e.num("height") == c)
        .collect();
    assert_eq!(cells.len(), 16);
    // Shade by row share: the 263/300 cell is darker than the 9/300 one,
    // and the empty row is unshaded.
    let fill = |r: i32, col: i32| {
        let x = i64::from(layout.grid_left + col * layout.cell);
        let y = i64::from(layout.grid_top + r * layout.cell);
        let cell = cells
            .iter()
            .find(|e| e.num("x") == x && e.num("y") == y)
            .unwrap();
        cell.attr("fill").unwrap().to_string()
    };
    assert_eq!(fill(3, 3), color_hex(shade(263.0 / 300.0)));
    assert_eq!(fill(3, 0), color_hex(shade(9.0 / 300.0)));
    assert_eq!(fill(2, 2), color_hex(shade(0.0)));
    let total: u64 = counts.iter().flatten().sum();
    let summary = format!(
        "n = {total} · accuracy {:.1}%",
        100.0 * 394.0 / total as f64
    );
    assert!(
        text.iter().any(|t| t.starts_with(&summary)),
        "{summary:?} in {text:?}"
    );
    // Unweighted average recall over the three rows with samples.
    let uar = (50.0 / 60.0 + 81.0 / 100.0 + 263.0 / 300.0) / 3.0 * 100.0;
    assert!(
        text.iter()
            .any(|t| t.ends_with(&format!("recall {uar:.1}%"))),
        "{text:?}"
    );
}

#[test]
fn confusion_matrix_with_no_samples_and_long_names() {
    let dir = tempdir();
    let path = dir.path().join("cm.svg");
    let labels = labels(&["a rather long emotion class name that will not fit", "x"]);
    confusion_matrix(&path, "", &labels, &[vec![0, 0], vec![0, 0]]).unwrap();
    let elements = parse_svg(&fs::read_to_string(&path).unwrap());
    let text = texts(&elements);
    assert!(text.contains(&"n = 0 (no samples)"), "{text:?}");
    assert!(
        text.iter()
            .any(|t| t.starts_with("a rather") && t.ends_with('…')),
        "{text:?}"
    );
}

#[test]
fn confusion_matrix_rejects_invalid_input() {
    let dir = tempdir();
    let path = dir.path().join("cm.svg");
    let labels = labels(&["a", "b"]);
    let check = |labels: &[String], counts: &[Vec<u64>], needle: &str| {
        let err = confusion_matrix(&path, "t", labels, counts).expect_err(needle);
        let msg = format!("{err:#}");
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        assert!(!path.exists());
    };
    check(&[], &[], "no class labels");
    check(&labels, &[vec![1, 2]], "1 rows but there are 2 labels");
    check(&labels, &[vec![1, 2], vec![3], vec![4, 5]], "3 rows");
    check(
        &labels,
        &[vec![1, 2], vec![3]],
        "row 1 (b) has 1 columns, expected 2",
    );
    check(
        &labels,
        &[vec![1, 2, 3], vec![3, 4, 5]],
        "row 0 (a) has 3 columns",
    );
}

/// Writes sample plots for looking at: set `ENT_PLOT_EXAMPLES` to a folder
/// and run this test with `--ignored`.
#[test]
#[ignore]
fn render_examples() {
    let Some(dir) = std::env::var_os("ENT_PLOT_EXAMPLES") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let labels = sample_labels();
    let shift = 0.04;
    let n = 105; // 4.2 s
    let (start, end) = (1.2, 3.0);
    let mut frame_probs = Vec::new();
    let mut frames = Vec::new();
    for i in 0..n {
        let t = (i as f64 + 0.5) * shift;
        let inside = (t - start).min(end - t);
        let a = (1.0 / (1.0 + (-inside * 8.0).exp())) as f32;
        let wobble = (0.15 * (t * 5.0).sin()) as f32;
        let row = [
            (0.75 * a + wobble * a).clamp(0.0, 1.0),
            (0.12 * a + 0.05) - wobble * a * 0.5,
            0.06,
            1.0 - a,
        ];
        let sum: f32 = row.iter().map(|p| p.max(0.0)).sum();
        let row: Vec<f32> = row.iter().map(|p| p.max(0.0) / sum).collect();
        let best = (0..4).max_by(|&x, &y| row[x].total_cmp(&row[y])).unwrap();
        frames.push(best);
        frame_probs.push(row);
    }
    let text = "oh wow that is such wonderful news i am so glad";
    let mut toks = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let t = 0.3 + 3.6 * i as f64 / chars.len() as f64;
        let f = ((t / shift) as usize).min(n - 1);
        toks.push((c.to_string(), t, frames[f]));
    }
    let reference = [(0.0, start, 3), (start, end, 0), (end, n as f64 * shift, 3)];
    let title = format!("Ses01F_script01_3_F012: \"{text}\" (happy)");
    emotion_timeline(
        &dir.join("timeline.svg"),
        &Timeline {
            title: &title,
            frame_shift: shift,
            frame_emotions: &frames,
            frame_probs: Some(&frame_probs),
            labels: &labels,
            tokens: &toks,
            reference: Some(&reference),
        },
    )
    .unwrap();
    // A long utterance in characters without spaces, and no extras.
    let frames: Vec<usize> = (0..600).map(|i| [3, 3, 0, 1, 3, 2][i / 100]).collect();
    let text = "今天的天气真的很好我们一起去公园散步吧然后去吃晚饭好不好";
    let toks: Vec<(String, f64, usize)> = text
        .chars()
        .enumerate()
        .map(|(i, c)| {
            (
                c.to_string(),
                0.4 + 0.4 * i as f64,
                frames[(10 + 20 * i).min(599)],
            )
        })
        .collect();
    emotion_timeline(
        &dir.join("timeline-long.svg"),
        &Timeline {
            title: "long utterance",
            frame_shift: 0.02,
            frame_emotions: &frames,
            frame_probs: None,
            labels: &labels,
            tokens: &toks,
            reference: None,
        },
    )
    .unwrap();
    let counts = vec![
        vec![212, 31, 9, 70],
        vec![25, 168, 4, 52],
        vec![8, 3, 190, 61],
        vec![44, 39, 50, 410],
    ];
    confusion_matrix(
        &dir.join("confusion.svg"),
        "dev: utterance emotion",
        &labels,
        &counts,
    )
    .unwrap();
}

/// An hour-long recording: a fixed-width plot with a minute axis, the emotional stretch where
/// it is, and a file small enough to open.
#[test]
fn hour_long_timelines_stay_readable() {
    let dir = tempdir();
    let names = labels(&["neu", "ang", "hap", "sad"]);
    let shift = 0.04;
    let n = (3600.0 / shift) as usize;
    let angry = (20.0 * 60.0 / shift) as usize..(25.0 * 60.0 / shift) as usize;
    let emotions: Vec<usize> = (0..n).map(|f| usize::from(angry.contains(&f))).collect();
    let probs: Vec<Vec<f32>> = emotions
        .iter()
        .map(|&e| {
            let mut p = vec![0.1f32; 4];
            p[e] = 0.7;
            p
        })
        .collect();
    let path = dir.path().join("long.svg");
    emotion_timeline(
        &path,
        &Timeline {
            title: "meeting.wav",
            frame_shift: shift,
            frame_emotions: &emotions,
            frame_probs: Some(&probs),
            labels: &names,
            tokens: &[],
            reference: None,
        },
    )
    .unwrap();
    let svg = fs::read_to_string(&path).unwrap();
    assert!(svg.len() < 200_000, "{} bytes", svg.len());
    let doc = roxmltree::Document::parse(&svg).expect("valid XML");
    let root = doc.root_element();
    assert_eq!(root.attribute("width"), Some("1600"));
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    assert!(texts.contains(&"time (minutes)"), "{texts:?}");
    for m in ["0", "5", "30", "60"] {
        assert!(texts.contains(&m), "tick {m} in {texts:?}");
    }
    assert!(
        texts.iter().any(|t| t.starts_with("meeting.wav (1h00m)")),
        "{texts:?}"
    );
    // The angry run: from 20/60 to 25/60 of the plot width, within a pixel.
    let colors = class_colors(&names);
    let ang = color_hex(colors[1]);
    let runs: Vec<(f64, f64)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some(ang.as_str()))
        .filter(|n| n.attribute("height") == Some("36"))
        .map(|n| {
            let x: f64 = n.attribute("x").unwrap().parse().unwrap();
            let w: f64 = n.attribute("width").unwrap().parse().unwrap();
            (x, w)
        })
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let plot = (long::WIDTH - 96 - 28) as f64;
    assert!((runs[0].0 - (96.0 + plot / 3.0)).abs() <= 1.0, "{runs:?}");
    assert!((runs[0].1 - plot / 12.0).abs() <= 1.0, "{runs:?}");
}
