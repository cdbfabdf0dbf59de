//! Many recordings at once ([`Engine::transcribe_files`]): what `ent transcribe` and `ent
//! diarize` do with their list of files.

use std::ops::ControlFlow;
use std::path::PathBuf;

use ent_common::par::{MapOptions, ordered_map};
use ent_features::Segment;

use crate::engine::Engine;
use crate::error::{PipelineError, Result};
use crate::longform::FileDecoding;

/// How [`Engine::transcribe_files`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilesOptions {
    /// Stop at the first file that fails (cannot be read, or has damaged stretches).
    pub fail_fast: bool,
}

/// What became of a list of files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilesSummary {
    /// Files in the list.
    pub files: usize,
    /// Files whose result was handed over (all of them, unless stopped).
    pub handed: usize,
    /// Of those, files that could not be read or have damaged stretches.
    pub failed: usize,
    /// Whether the run stopped at a failure (`fail_fast`) before the end of the list.
    pub stopped: bool,
}

/// Whether a file's result counts as a failure: unreadable, or read with damaged stretches.
pub fn is_failure(r: &Result<FileDecoding>) -> bool {
    r.as_ref()
        .map_or(true, |d| !d.transcript.damaged.is_empty())
}

impl Engine {
    /// Decodes `files` (each of any length, as [`Engine::transcribe_file`] does) and hands
    /// each file's index and result to `emit`, in input order. Files are decoded
    /// [`Engine::jobs`] at a time, one file's windows on the threads the files leave it (all
    /// of them for a single file). A file that cannot be read is that file's `Err`, a panic
    /// while decoding it too ([`PipelineError::Panicked`]); a file with damaged stretches is
    /// decoded around them and lists them in `transcript.damaged`. Both count as failures
    /// ([`is_failure`]); the other files are still decoded unless `opts.fail_fast`.
    /// `progress(i, seconds, length)` follows file `i` as it is read. An error from `emit`
    /// stops the run and is returned.
    pub fn transcribe_files<X>(
        &self,
        files: &[PathBuf],
        opts: FilesOptions,
        progress: &(dyn Fn(usize, f64, Option<f64>) + Sync),
        mut emit: impl FnMut(usize, Result<FileDecoding>) -> std::result::Result<(), X>,
    ) -> std::result::Result<FilesSummary, X> {
        let workers = self.jobs.min(files.len()).max(1);
        let window_jobs = (self.jobs / workers).max(1);
        let decode = |(i, path): (usize, &PathBuf)| {
            let id = path.to_string_lossy();
            let mut report = |secs: f64, total: Option<f64>| progress(i, secs, total);
            self.transcribe_file_on(&id, path, Segment::WHOLE, window_jobs, &mut report)
        };
        let mut failed = 0;
        let run = ordered_map(
            files.iter().enumerate(),
            MapOptions::new(workers),
            decode,
            |i, r| {
                let r = r.map_err(PipelineError::from_item);
                let failure = is_failure(&r);
                failed += usize::from(failure);
                emit(i, r)?;
                Ok(if failure && opts.fail_fast {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            },
        )?;
        Ok(FilesSummary {
            files: files.len(),
            handed: run.emitted,
            failed,
            stopped: run.stopped,
        })
    }
}
