//! Writes that fail on purpose, for tests (the `testing` feature): a full disk or a folder that
//! turns read-only, under a folder of the test's own, after a number of writes that succeed.
//!
//! ```
//! use ent_common::fs::{faults::{Fault, fail_writes}, write_atomic};
//! let dir = std::env::temp_dir().join(format!("ent-faults-doc-{}", std::process::id()));
//! let path = dir.join("a.json");
//! let guard = fail_writes(&dir, 1, Fault::DiskFull);
//! write_atomic(&path, b"first").unwrap(); // the one write allowed
//! assert!(write_atomic(&path, b"second").is_err()); // the disk is full
//! assert_eq!(std::fs::read(&path).unwrap(), b"first"); // the old file is whole
//! assert_eq!(guard.struck(), 1);
//! drop(guard); // writes succeed again
//! write_atomic(&path, b"third").unwrap();
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::Injected;

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The disk fills up half-way through the write (`ENOSPC`, "No space left on device").
    DiskFull,
    /// The folder became read-only: the file cannot be opened for writing (`EROFS`).
    ReadOnly,
}

#[derive(Debug)]
struct Rule {
    id: u64,
    dir: PathBuf,
    /// Writes under `dir` still allowed to succeed.
    allowed: usize,
    fault: Fault,
    struck: usize,
}

static RULES: Mutex<Vec<Rule>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn rules() -> MutexGuard<'static, Vec<Rule>> {
    // A test that panicked while holding the lock left nothing half-changed.
    RULES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes every write ([`super::write_atomic`], [`super::append`]) to a file under `dir` fail as
/// `fault` says, after `allowed` more writes there succeed, until the returned guard is dropped.
/// Only paths under `dir` are touched, so tests running beside each other are not.
pub fn fail_writes(dir: &Path, allowed: usize, fault: Fault) -> FaultGuard {
    let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
    rules().push(Rule {
        id,
        dir: dir.to_path_buf(),
        allowed,
        fault,
        struck: 0,
    });
    FaultGuard { id }
}

/// Ends the fault of [`fail_writes`] when dropped.
#[derive(Debug)]
#[must_use = "the fault ends when the guard is dropped"]
pub struct FaultGuard {
    id: u64,
}

impl FaultGuard {
    /// Writes that failed so far.
    pub fn struck(&self) -> usize {
        rules()
            .iter()
            .find(|r| r.id == self.id)
            .map_or(0, |r| r.struck)
    }
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        rules().retain(|r| r.id != self.id);
    }
}

/// The fault for a write of `len` bytes to `path`, counting it against the rule.
pub(super) fn strike(path: &Path, len: usize) -> Option<Injected> {
    let mut rules = rules();
    let rule = rules.iter_mut().find(|r| path.starts_with(&r.dir))?;
    if rule.allowed > 0 {
        rule.allowed -= 1;
        return None;
    }
    rule.struck += 1;
    Some(match rule.fault {
        Fault::DiskFull => Injected::AfterBytes(
            len / 2,
            io::Error::new(
                io::ErrorKind::StorageFull,
                "No space left on device (os error 28)",
            ),
        ),
        Fault::ReadOnly => Injected::AtOpen(io::Error::new(
            io::ErrorKind::ReadOnlyFilesystem,
            "Read-only file system (os error 30)",
        )),
    })
}
