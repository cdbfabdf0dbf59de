//! Progress of long work: a bar on a terminal, plain lines with rate and time left in a log.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ent_common::progress::{Ticker, stderr_is_terminal};
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
}

impl Progress {
    /// Progress of `what` over `len` items named `unit` (plural).
    pub fn new(len: u64, what: &str, unit: &str, shown: bool) -> Self {
        if !shown {
            return Progress {
                bar: ProgressBar::hidden(),
                ticker: None,
                pos: AtomicU64::new(0),
            };
        }
        if !stderr_is_terminal() {
            return Progress {
                bar: ProgressBar::hidden(),
                ticker: Some(Mutex::new(Ticker::new(
                    what,
                    unit,
                    Some(len as f64),
                    LOG_EVERY,
                ))),
                pos: AtomicU64::new(0),
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
        Progress {
            bar,
            ticker: None,
            pos: AtomicU64::new(0),
        }
    }

    /// `n` more items done.
    pub fn inc(&self, n: u64) {
        let pos = self.pos.fetch_add(n, Ordering::Relaxed) + n;
        self.bar.inc(n);
        if let Some(t) = &self.ticker
            && let Ok(mut t) = t.lock()
            && let Some(line) = t.tick(pos as f64)
        {
            eprintln!("{line}");
        }
    }

    /// A note beside the bar (the file being read and how far), on a terminal only.
    pub fn set_message(&self, msg: String) {
        self.bar.set_message(msg);
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
}
