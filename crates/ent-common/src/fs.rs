//! Writing files so that a failure loses nothing: [`write_atomic`] replaces a file whole or not
//! at all, [`append`] adds a line whole or not at all.
//!
//! Under the `testing` feature, [`faults`] makes these writes fail on purpose (a full disk, a
//! folder turned read-only), so that tests can show what every writer does then.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[cfg(feature = "testing")]
pub mod faults;

/// How an injected fault strikes a write (only under the `testing` feature).
#[cfg_attr(
    not(feature = "testing"),
    allow(dead_code, reason = "made only by `faults`, under the testing feature")
)]
enum Injected {
    /// Opening the file for writing fails.
    AtOpen(io::Error),
    /// This many bytes are written, then the write fails.
    AfterBytes(usize, io::Error),
}

/// The fault a test injected for a write of `len` bytes to `path`, if any.
fn injected(path: &Path, len: usize) -> Option<Injected> {
    #[cfg(feature = "testing")]
    {
        faults::strike(path, len)
    }
    #[cfg(not(feature = "testing"))]
    {
        let _ = (path, len);
        None
    }
}

/// `bytes` written to `f`, failing part-way where a fault was injected for `path`.
fn write_bytes(f: &mut File, bytes: &[u8], fault: Option<Injected>) -> io::Result<()> {
    match fault {
        Some(Injected::AfterBytes(n, e)) => {
            f.write_all(&bytes[..n.min(bytes.len())])?;
            Err(e)
        }
        Some(Injected::AtOpen(e)) => Err(e),
        None => f.write_all(bytes),
    }
}

/// Writes `bytes` to `path` so that readers see the old file or the new one, never a mixture:
/// missing parent folders are created, the bytes go to a temporary sibling
/// `.<name>.tmp-<process id>-<thread id>` (no two writers share one), which is synced, renamed
/// over `path`, and
/// the folder synced so that the rename survives a crash (where the platform allows syncing a
/// folder). On failure (a full disk, a read-only folder) the temporary file is removed and
/// `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:?}",
        name.to_string_lossy(),
        std::process::id(),
        std::thread::current().id()
    ));
    let fault = injected(path, bytes.len());
    if let Some(Injected::AtOpen(e)) = fault {
        return Err(e);
    }
    let result = (|| {
        let mut f = File::create(&tmp)?;
        write_bytes(&mut f, bytes, fault)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(&dir) {
            // Persists the rename; not possible on every platform, so not an error.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Appends `bytes` (a line of a log, say) to `file`, opened for appending from `path`, whole
/// or not at all: if the write fails part-way (a full disk), the file is cut back to its
/// length before, so that no partial line is left for a reader to choke on.
pub fn append(file: &mut File, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let before = file.seek(SeekFrom::End(0))?;
    let fault = injected(path, bytes.len());
    match write_bytes(file, bytes, fault).and_then(|()| file.flush()) {
        Ok(()) => Ok(()),
        Err(e) => {
            // Best effort: the write's error is the one to report.
            let _ = file.set_len(before);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        append(&mut f, &path, b"one\n").unwrap();
        append(&mut f, &path, b"two\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one\ntwo\n");
    }

    #[test]
    fn replaces_and_creates_folders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/file.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        // Nothing but the file is left in its folder.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.json")]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        write_atomic(&path, b"old").unwrap();
        // A folder where the file should go: the rename fails.
        let blocked = dir.path().join("blocked");
        fs::create_dir_all(blocked.join("x")).unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary file left"
        );
        assert!(write_atomic(Path::new("/"), b"x").is_err());
    }
}
