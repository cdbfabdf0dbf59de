//! Progress of long work: a bar on a terminal, plain lines with rate and time left in a log.
//! [`Progress`] is the one implementation; [`TrainProgress`] draws a training run with it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ent_common::progress::{Ticker, duration, stderr_is_terminal};
use ent_train::{EpochStart, EpochSummary, StepStats, TrainObserver};
use indicatif::{ProgressBar, ProgressStyle};

/// Seconds between plain progress lines in a log.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A progress bar on stderr when it is a terminal; otherwise a plain line at most every
/// [`LOG_EVERY`] (and none at all when not `shown`).
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    ticker: Option<Mutex<Ticker>>,
    pos: AtomicU64,
    /// In a log: the item being followed ([`Progress::item`]) and its lines.
    item: Mutex<Option<(String, Ticker)>>,
}

impl Progress {
    /// Progress of `what` over `len` items named `unit` (plural).
    pub fn new(len: u64, what: &str, unit: &str, shown: bool) -> Self {
        Self::resumed(len, 0, what, unit, shown)
    }

    /// [`Progress::new`] with `done` of the `len` items done before (a resumed run): the bar
    /// starts there, the rate and time left count only what is done from now on.
    pub fn resumed(len: u64, done: u64, what: &str, unit: &str, shown: bool) -> Self {
        let done = done.min(len);
        if !shown {
            return Progress {
                bar: ProgressBar::hidden(),
                ticker: None,
                pos: AtomicU64::new(0),
                item: Mutex::new(None),
            };
        }
        if !stderr_is_terminal() {
            return Progress {
                bar: ProgressBar::hidden(),
                ticker: Some(Mutex::new(Ticker::new(
                    what,
                    unit,
                    Some((len - done) as f64),
                    LOG_EVERY,
                ))),
                pos: AtomicU64::new(0),
                item: Mutex::new(None),
            };
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{prefix}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}}) {{msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(what.to_string());
        bar.set_position(done);
        bar.reset_eta();
        Progress {
            bar,
            ticker: None,
            pos: AtomicU64::new(0),
            item: Mutex::new(None),
        }
    }

    /// `n` more items done.
    pub fn inc(&self, n: u64) {
        self.inc_noted(n, None);
    }

    /// `n` more items done, with a note on how it goes (`loss 1.234`): beside the bar on a
    /// terminal, at the end of the next line in a log.
    pub fn inc_noted(&self, n: u64, note: Option<String>) {
        let pos = self.pos.fetch_add(n, Ordering::Relaxed) + n;
        self.bar.inc(n);
        if let Some(t) = &self.ticker
            && let Ok(mut t) = t.lock()
            && let Some(line) = t.tick(pos as f64)
        {
            match &note {
                Some(note) => eprintln!("{line}, {note}"),
                None => eprintln!("{line}"),
            }
        }
        if let Some(note) = note {
            self.bar.set_message(note);
        }
    }

    /// A note beside the bar, on a terminal only.
    pub fn set_message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    /// How far the item being worked on has got (a file read up to `secs` seconds of audio,
    /// of `total` when known): beside the bar on a terminal; in a log, a line for it every
    /// [`LOG_EVERY`] with its rate and time left.
    pub fn item(&self, name: &str, secs: f64, total: Option<f64>) {
        let clock = |s: f64| {
            let c = ent_features::clock(s);
            c.rsplit_once('.').map_or(c.clone(), |(a, _)| a.to_string())
        };
        let of = total.map_or(String::new(), |t| format!(" of {}", clock(t)));
        self.bar.set_message(format!("{name} {}{of}", clock(secs)));
        if self.ticker.is_none() {
            return;
        }
        let Ok(mut item) = self.item.lock() else {
            return;
        };
        if item.as_ref().is_none_or(|(n, _)| n != name) {
            *item = Some((
                name.to_string(),
                Ticker::new(name, "s of audio", total, LOG_EVERY),
            ));
        }
        if let Some((_, t)) = item.as_mut()
            && let Some(line) = t.tick(secs)
        {
            eprintln!("{line}");
        }
    }

    /// Runs `f` (which prints) with the bar out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Clears the bar; in a log, a last line with the totals.
    pub fn finish(&mut self) {
        self.bar.finish_and_clear();
        if let Some(t) = &self.ticker
            && let Ok(t) = t.lock()
        {
            eprintln!("{}", t.line(self.pos.load(Ordering::Relaxed) as f64));
        }
        self.ticker = None;
    }

    /// Clears the bar and prints `line` in its place (on a terminal and in a log alike), when
    /// progress is shown.
    pub fn finish_with(&mut self, line: &str) {
        let shown = self.ticker.is_some() || !self.bar.is_hidden();
        self.bar.finish_and_clear();
        self.ticker = None;
        if shown {
            eprintln!("{line}");
        }
    }
}

/// Draws a training run ([`ent_train::Trainer::run_observed`]): a bar per epoch with the loss
/// and the rate, and a line per epoch with the training loss, the validation scores and the
/// time left.
#[derive(Debug)]
pub struct TrainProgress {
    shown: bool,
    bar: Option<Progress>,
    started: std::time::Instant,
    epochs_run: u64,
}

impl TrainProgress {
    /// Progress of a run; nothing is drawn when not `shown`.
    pub fn new(shown: bool) -> Self {
        TrainProgress {
            shown,
            bar: None,
            started: std::time::Instant::now(),
            epochs_run: 0,
        }
    }
}

impl TrainObserver for TrainProgress {
    fn epoch_started(&mut self, s: &EpochStart) {
        let what = format!("epoch {}/{}", s.epoch + 1, s.epochs);
        self.bar = Some(Progress::resumed(
            s.batches, s.done, &what, "batches", self.shown,
        ));
    }

    fn step(&mut self, s: &StepStats) {
        if let Some(bar) = &self.bar {
            let note = format!("loss {:.3}  {:.1} utt/s", s.loss, s.utt_per_sec);
            bar.inc_noted(s.batches, Some(note));
        }
    }

    fn epoch_finished(&mut self, s: &EpochSummary) {
        self.epochs_run += 1;
        let valid = s.valid.as_ref().map_or(String::new(), |v| {
            format!(", valid loss {:.3} WA {:.1}% UA {:.1}%", v.loss, v.wa, v.ua)
        });
        let per_epoch = self.started.elapsed().as_secs_f64() / self.epochs_run as f64;
        let left = s.epochs.saturating_sub(s.epoch + 1) as f64 * per_epoch;
        let line = format!(
            "epoch {}/{} done in {}: train loss {:.3}{valid}{}; about {} left",
            s.epoch + 1,
            s.epochs,
            duration(s.seconds),
            s.train_loss,
            if s.improved { " (best so far)" } else { "" },
            duration(left)
        );
        if let Some(mut bar) = self.bar.take() {
            bar.finish_with(&line);
        }
    }

    fn stopped(&mut self, step: u64) {
        if let Some(mut bar) = self.bar.take() {
            bar.finish_with(&format!("stopped at step {step} (max_steps)"));
        }
    }
}
