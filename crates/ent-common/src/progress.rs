//! Progress as plain lines, for logs: when stderr is not a terminal (CI, `nohup`, a cluster
//! job's log), a line at most every few seconds with the rate and the time left, instead of a
//! bar that would only be drawn on a terminal.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Whether stderr is a terminal (bars) or not (plain lines).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Decides when a progress line is due and writes it.
#[derive(Debug, Clone)]
pub struct Ticker {
    what: String,
    unit: String,
    len: Option<f64>,
    started: Instant,
    last: Option<Instant>,
    every: Duration,
}

impl Ticker {
    /// Progress of `what` counted in `unit` (plural, e.g. `"files"`), out of `len` when known;
    /// at most one line per `every`.
    pub fn new(what: &str, unit: &str, len: Option<f64>, every: Duration) -> Self {
        Ticker {
            what: what.to_string(),
            unit: unit.to_string(),
            len,
            started: Instant::now(),
            last: None,
            every,
        }
    }

    /// The line for position `pos` when one is due (the first after `every`, then every
    /// `every`), else `None`.
    pub fn tick(&mut self, pos: f64) -> Option<String> {
        let now = Instant::now();
        let since = now.duration_since(self.last.unwrap_or(self.started));
        if since < self.every {
            return None;
        }
        self.last = Some(now);
        Some(self.line(pos))
    }

    /// `what: pos/len unit (rate unit/s, T left)`, or without a length, `what: pos unit
    /// (rate unit/s, T elapsed)`.
    pub fn line(&self, pos: f64) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = pos / secs.max(1e-9);
        let num = |x: f64| {
            if x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{x:.0}")
            } else {
                format!("{x:.1}")
            }
        };
        match self.len {
            Some(len) => {
                let left = if rate > 0.0 {
                    format!("{} left", duration((len - pos).max(0.0) / rate))
                } else {
                    "time left unknown".to_string()
                };
                format!(
                    "{}: {}/{} {} ({:.2} {}/s, {left})",
                    self.what,
                    num(pos),
                    num(len),
                    self.unit,
                    rate,
                    self.unit
                )
            }
            None => format!(
                "{}: {} {} ({:.2} {}/s, {} elapsed)",
                self.what,
                num(pos),
                self.unit,
                rate,
                self.unit,
                duration(secs)
            ),
        }
    }
}

/// Seconds as `1h02m`, `3m05s` or `12s`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0.4), "0s");
        assert_eq!(duration(59.6), "1m00s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(3720.0), "1h02m");
    }

    #[test]
    fn lines_are_rate_limited_and_carry_rate_and_time_left() {
        let mut t = Ticker::new("decoding", "files", Some(10.0), Duration::from_secs(3600));
        assert_eq!(t.tick(1.0), None, "not due before the interval");
        let mut t = Ticker::new("decoding", "files", Some(10.0), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(20));
        let line = t.tick(5.0).expect("due");
        assert!(line.starts_with("decoding: 5/10 files ("), "{line}");
        assert!(
            line.contains("files/s") && line.ends_with("left)"),
            "{line}"
        );
        let open = Ticker::new("reading", "s of audio", None, Duration::ZERO).line(2.5);
        assert!(
            open.starts_with("reading: 2.5 s of audio (") && open.ends_with("elapsed)"),
            "{open}"
        );
    }
}
