//! One ordered parallel map: items taken from an iterator on the calling thread, worked on by
//! a fixed number of threads, their results handed back on the calling thread in input order.
//!
//! - **Bounded look-ahead**: at most [`MapOptions::ahead`] items are taken and not yet handed
//!   back, so that a slow item holds up memory for a few results only, and an iterator that
//!   reads (audio from disk) reads no further ahead than that.
//! - **Errors are the item's**: an error, or a panic in the work (caught, with its message), is
//!   handed back as that item's [`ItemError`]; the other items go on.
//! - **Stopping**: when the consumer says so ([`ControlFlow::Break`] or an error of its own),
//!   or at the first failed item when [`MapOptions::stop_on_error`] is set, no further item is
//!   taken or started; items already running finish and are dropped.
//!
//! Batch transcription (many files), long-form decoding (the windows of one file) and
//! evaluation (batches of utterances) all run on it.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

/// Why an item has no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemError<E> {
    /// The work returned an error.
    Failed(E),
    /// The work panicked: the panic's message.
    Panicked(String),
}

impl<E: std::fmt::Display> std::fmt::Display for ItemError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ItemError::Failed(e) => e.fmt(f),
            ItemError::Panicked(m) => write!(f, "internal error (a panic): {m}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ItemError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ItemError::Failed(e) => e.source(),
            ItemError::Panicked(_) => None,
        }
    }
}

/// How [`ordered_map`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapOptions {
    /// Worker threads (at least 1).
    pub workers: usize,
    /// Items taken and not yet handed back, at most (at least `workers`).
    pub ahead: usize,
    /// Stop after the first failed item (which is still handed back).
    pub stop_on_error: bool,
}

impl MapOptions {
    /// `workers` threads (at least 1), `2 * workers` items ahead, going on after errors.
    pub fn new(workers: usize) -> Self {
        let workers = workers.max(1);
        MapOptions {
            workers,
            ahead: 2 * workers,
            stop_on_error: false,
        }
    }

    /// Whether to stop after the first failed item.
    pub fn stop_on_error(self, stop: bool) -> Self {
        MapOptions {
            stop_on_error: stop,
            ..self
        }
    }
}

/// What an [`ordered_map`] run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MapSummary {
    /// Items handed back.
    pub emitted: usize,
    /// Of those, items that failed or panicked.
    pub failed: usize,
    /// Whether the run stopped before the iterator's end.
    pub stopped: bool,
}

/// Runs `work` on each item of `items` on [`MapOptions::workers`] threads and hands each
/// item's index and result to `emit`, on the calling thread, in input order. `emit` returns
/// [`ControlFlow::Break`] to stop, or an error, which stops and is returned.
pub fn ordered_map<T, R, E, X>(
    items: impl IntoIterator<Item = T>,
    opts: MapOptions,
    work: impl Fn(T) -> Result<R, E> + Sync,
    mut emit: impl FnMut(usize, Result<R, ItemError<E>>) -> Result<ControlFlow<()>, X>,
) -> Result<MapSummary, X>
where
    T: Send,
    R: Send,
    E: Send,
{
    let workers = opts.workers.max(1);
    let ahead = opts.ahead.max(workers);
    let stop = AtomicBool::new(false);
    let (job_tx, job_rx) = mpsc::channel::<(usize, T)>();
    let job_rx = Mutex::new(job_rx);
    let (res_tx, res_rx) = mpsc::channel::<(usize, Result<R, ItemError<E>>)>();
    let (work, stop_ref, job_rx) = (&work, &stop, &job_rx);
    std::thread::scope(|scope| {
        // Owned by this closure: however it ends, the workers' queue closes.
        let job_tx = job_tx;
        for _ in 0..workers {
            let res_tx = res_tx.clone();
            scope.spawn(move || {
                loop {
                    // The lock is held only while waiting for the next item, never while
                    // working: a panic in the work cannot poison it.
                    let next = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((i, item)) = next else { return };
                    if stop_ref.load(Ordering::SeqCst) {
                        return;
                    }
                    let r = match catch_unwind(AssertUnwindSafe(|| work(item))) {
                        Ok(Ok(v)) => Ok(v),
                        Ok(Err(e)) => Err(ItemError::Failed(e)),
                        Err(payload) => Err(ItemError::Panicked(panic_message(&*payload))),
                    };
                    if res_tx.send((i, r)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(res_tx);
        let run = || -> Result<MapSummary, X> {
            let mut items = items.into_iter();
            let mut summary = MapSummary::default();
            let (mut taken, mut exhausted) = (0usize, false);
            let mut waiting = BTreeMap::new();
            loop {
                while !exhausted && taken - summary.emitted < ahead {
                    match items.next() {
                        // The workers hold the receiver until this scope ends.
                        Some(item) => {
                            let _ = job_tx.send((taken, item));
                            taken += 1;
                        }
                        None => exhausted = true,
                    }
                }
                if exhausted && summary.emitted == taken {
                    return Ok(summary);
                }
                match res_rx.recv() {
                    Ok((i, r)) => {
                        waiting.insert(i, r);
                    }
                    // Every worker has ended with items outstanding (not while the queue is
                    // open, short of a bug): those items are lost.
                    Err(_) => {
                        for i in summary.emitted..taken {
                            waiting.entry(i).or_insert_with(|| {
                                Err(ItemError::Panicked("its worker thread ended".into()))
                            });
                        }
                    }
                }
                while let Some(r) = waiting.remove(&summary.emitted) {
                    let failed = r.is_err();
                    let flow = emit(summary.emitted, r)?;
                    summary.emitted += 1;
                    summary.failed += usize::from(failed);
                    if flow.is_break() || (failed && opts.stop_on_error) {
                        summary.stopped = !(exhausted && summary.emitted == taken);
                        return Ok(summary);
                    }
                }
            }
        };
        let outcome = run();
        // Items queued but not started are dropped; running ones finish first.
        stop.store(true, Ordering::SeqCst);
        outcome
    })
}

/// The message of a panic's payload (`panic!` with a string or a format).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Work that takes a different time per item (later items often finish first).
    fn slow_square(i: u64) -> Result<u64, String> {
        std::thread::sleep(Duration::from_millis((7 * i) % 5));
        Ok(i * i)
    }

    #[test]
    fn results_come_back_in_input_order_from_every_worker_count() {
        for workers in [1, 2, 3, 8] {
            let mut got = Vec::new();
            let s = ordered_map(
                0..40u64,
                MapOptions::new(workers),
                slow_square,
                |i, r| -> Result<_, ()> {
                    got.push((i, r.unwrap()));
                    Ok(ControlFlow::Continue(()))
                },
            )
            .unwrap();
            let want: Vec<(usize, u64)> = (0..40).map(|i| (i as usize, i * i)).collect();
            assert_eq!(got, want, "{workers} workers");
            assert_eq!((s.emitted, s.failed, s.stopped), (40, 0, false));
        }
        let empty = ordered_map(
            std::iter::empty::<u64>(),
            MapOptions::new(4),
            slow_square,
            |_, _| -> Result<_, ()> { panic!("nothing to emit") },
        );
        assert_eq!(empty, Ok(MapSummary::default()));
    }

    /// The iterator is never more than `ahead` items ahead of the consumer, and the workers
    /// do run at the same time.
    #[test]
    fn look_ahead_is_bounded_and_workers_overlap() {
        let taken = AtomicUsize::new(0);
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let opts = MapOptions {
            workers: 3,
            ahead: 5,
            stop_on_error: false,
        };
        let items = (0..30u64).inspect(|_| {
            taken.fetch_add(1, Ordering::SeqCst);
        });
        let mut worst = 0;
        ordered_map(
            items,
            opts,
            |i| -> Result<u64, ()> {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(3));
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(i)
            },
            |i, _| -> Result<_, ()> {
                // Item i is being handed back: i items were before it.
                worst = worst.max(taken.load(Ordering::SeqCst) - i);
                Ok(ControlFlow::Continue(()))
            },
        )
        .unwrap();
        assert!(worst <= 5, "{worst} items ahead of the consumer");
        assert!(
            most.load(Ordering::SeqCst) > 1,
            "the workers never overlapped"
        );
        assert!(most.load(Ordering::SeqCst) <= 3);
    }

    /// A panic or an error is that item's; the others go on, unless asked to stop.
    #[test]
    fn a_failing_item_is_reported_as_its_own_and_can_stop_the_run() {
        let work = |i: u64| -> Result<u64, String> {
            match i {
                3 => panic!("item {i} is broken"),
                5 => Err(format!("item {i} is bad")),
                _ => Ok(i),
            }
        };
        let mut seen = Vec::new();
        let s = ordered_map(0..8u64, MapOptions::new(2), work, |i, r| -> Result<_, ()> {
            seen.push((i, r));
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
        assert_eq!((s.emitted, s.failed, s.stopped), (8, 2, false));
        assert_eq!(
            seen[3].1,
            Err(ItemError::Panicked("item 3 is broken".into()))
        );
        assert_eq!(seen[5].1, Err(ItemError::Failed("item 5 is bad".into())));
        assert_eq!(seen[7].1, Ok(7));
        assert_eq!(
            seen[3].1.as_ref().unwrap_err().to_string(),
            "internal error (a panic): item 3 is broken"
        );

        let started = AtomicUsize::new(0);
        let counted = |i: u64| {
            started.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(2));
            work(i)
        };
        let mut last = 0;
        let opts = MapOptions::new(2).stop_on_error(true);
        let s = ordered_map(0..1000u64, opts, counted, |i, _| -> Result<_, ()> {
            last = i;
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
        assert_eq!((s.emitted, s.failed, s.stopped), (4, 1, true));
        assert_eq!(last, 3);
        // No more than the look-ahead was started after the failure.
        assert!(started.load(Ordering::SeqCst) <= 4 + 4, "{started:?}");
    }

    /// The consumer stops the run by breaking or by failing; its error is returned.
    #[test]
    fn the_consumer_stops_the_run() {
        let s = ordered_map(0..100u64, MapOptions::new(3), slow_square, |i, _| {
            Ok::<_, ()>(if i == 9 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })
        .unwrap();
        assert_eq!((s.emitted, s.stopped), (10, true));
        let e = ordered_map(0..100u64, MapOptions::new(3), slow_square, |i, _| {
            if i == 4 {
                Err("disk full")
            } else {
                Ok(ControlFlow::Continue(()))
            }
        });
        assert_eq!(e, Err("disk full"));
    }
}
