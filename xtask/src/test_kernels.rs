//! `cargo xtask test-kernels [--mutants]`: the CUDA kernels' own sources, compiled for the host
//! over emulated CUDA built-ins (ent-kernels' `emulate` feature): the lattice losses against
//! ent-lattice's CPU reference, the LSTM recurrence against its equations; then the same tests
//! with the kernels built under ThreadSanitizer. No GPU and no
//! CUDA toolkit needed: the system C++ compiler builds them.
//!
//! `--mutants` checks the checks: it breaks the kernels one way at a time (a barrier deleted,
//! `log1p` turned into `log`, a shuffle level skipped, ...) in a copy of `kernels/`, runs the
//! same tests on each, and fails unless every mutant is caught.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Property-test cases per test in the plain run and under ThreadSanitizer (each case is a
/// few launches of hundreds of threads; the sanitizer makes them about 5x slower).
const CASES: u32 = 256;
const TSAN_CASES: u32 = 48;

fn cargo_test(root: &Path, envs: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root)
        .args([
            "test",
            "-p",
            "ent-kernels",
            "-p",
            "ent-lattice",
            "--features",
            "ent-kernels/emulate,ent-lattice/emulate",
            "--lib",
            "--test",
            "it",
            "--",
            "emulated",
        ])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
    cmd
}

fn check_tsan() -> Result<()> {
    let out = Command::new("c++")
        .arg("-print-file-name=libtsan.so")
        .output()
        .context("running c++ (the emulated kernels need a C++20 compiler: apt-get install g++)")?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !path.is_absolute() || !path.exists() {
        bail!(
            "the C++ compiler has no ThreadSanitizer runtime (libtsan.so): apt-get install \
             libgcc-12-dev (or the libtsan package of your compiler)"
        );
    }
    Ok(())
}

/// Only the C++ of the kernels and the emulation is instrumented. The Rust test harness and
/// its libraries synchronise through futexes the sanitizer does not see, so their only
/// accesses it does see, through its interceptors (memcpy, free), would look racy:
/// `ignore_interceptors_accesses` drops those. The kernels' own loads and stores are
/// instrumented and fully checked.
fn tsan_env(cases: u32) -> Vec<(&'static str, String)> {
    vec![
        ("ENT_EMU_SANITIZE", "thread".into()),
        ("ENT_EMU_CASES", cases.to_string()),
        (
            "TSAN_OPTIONS",
            "halt_on_error=1 ignore_interceptors_accesses=1".into(),
        ),
    ]
}

fn plain_env(cases: u32) -> Vec<(&'static str, String)> {
    vec![("ENT_EMU_CASES", cases.to_string())]
}

pub fn test_kernels(root: &Path, mutants: bool) -> Result<()> {
    if mutants {
        return run_mutants(root);
    }
    check_tsan()?;
    println!("== emulated kernels against the CPU reference ({CASES} cases per property)");
    crate::run(&mut cargo_test(root, &plain_env(CASES)))?;
    println!(
        "== the same under ThreadSanitizer ({TSAN_CASES} cases per property; ENT_EMU_SANITIZE=thread)"
    );
    crate::run(&mut cargo_test(root, &tsan_env(TSAN_CASES)))?;
    println!("test-kernels: the emulated kernels match the CPU reference, ThreadSanitizer clean");
    Ok(())
}

/// One way to break the kernels.
struct Mutant {
    file: &'static str,
    what: &'static str,
    from: &'static str,
    to: &'static str,
    /// Which occurrence of `from` (0-based).
    nth: usize,
}

const MUTANTS: &[Mutant] = &[
    Mutant {
        file: "rnnt.cu",
        what: "rnnt.cu: the __syncthreads() of the alpha/beta wavefront deleted",
        from: "__syncthreads();",
        to: "",
        nth: 0,
    },
    Mutant {
        file: "common.cuh",
        what: "common.cuh: log_add with log instead of log1p",
        from: "hi + log1p(exp(lo - hi))",
        to: "hi + log(exp(lo - hi))",
        nth: 0,
    },
    Mutant {
        file: "common.cuh",
        what: "common.cuh: warp_lse skips the last shuffle level",
        from: "off > 0; off >>= 1",
        to: "off > 1; off >>= 1",
        nth: 0,
    },
    Mutant {
        file: "rnnt.cu",
        what: "rnnt.cu: FastEmit scales the blank term too",
        from: "bc = exp(a + bl + beta_next_t - lpp);",
        to: "bc = (1.0 + (double)lambda) * exp(a + bl + beta_next_t - lpp);",
        nth: 0,
    },
    Mutant {
        file: "rnnt.cu",
        what: "rnnt.cu: padded rows of the gradient left unwritten",
        from: "for (int64_t i = lane; i < d.V; i += 32) g_row[i] = from_acc<T>(A(0));",
        to: "",
        nth: 0,
    },
    Mutant {
        file: "pool.cu",
        what: "pool.cu: first __syncthreads() of the arg-max reduction deleted",
        from: "__syncthreads();",
        to: "",
        nth: 0,
    },
    Mutant {
        file: "pool.cu",
        what: "pool.cu: the __syncthreads() after each tree step of the arg-max reduction deleted",
        from: "__syncthreads();",
        to: "",
        nth: 1,
    },
    Mutant {
        file: "pool.cu",
        what: "pool.cu: __syncthreads_or replaced by the thread's own flag",
        from: "nan = __syncthreads_or(nan);",
        to: "",
        nth: 0,
    },
    Mutant {
        file: "pool.cu",
        what: "pool.cu: ties go to the later node",
        from: "if (a.v == b.v) return a.i < b.i;",
        to: "if (a.v == b.v) return a.i > b.i;",
        nth: 0,
    },
    Mutant {
        file: "lstm.cu",
        what: "lstm.cu: the barrier between the recurrent product and the gates deleted",
        from: "__syncthreads();  // a complete; every read of h_prev done",
        to: "",
        nth: 0,
    },
    Mutant {
        file: "lstm.cu",
        what: "lstm.cu: padded frames of the hidden states left unwritten",
        from: "hidden[i] = F(0);",
        to: ";",
        nth: 0,
    },
    Mutant {
        file: "lstm.cu",
        what: "lstm.cu: the barrier before W_hh^T da in the backward pass deleted",
        from: "__syncthreads();  // da complete; every read of dh_rec done",
        to: "",
        nth: 0,
    },
    Mutant {
        file: "lstm.cu",
        what: "lstm.cu: the backward pass reads this step's cell as c_prev",
        from: "const F cp = s > 0 ? cells[(b * T + tp) * H + j] : F(0);\n            const F dh",
        to: "const F cp = s > 0 ? cells[(b * T + t) * H + j] : F(0);\n            const F dh",
        nth: 0,
    },
];

fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

fn apply(m: &Mutant, dir: &Path) -> Result<()> {
    let path = dir.join(m.file);
    let text = std::fs::read_to_string(&path)?;
    let at = text
        .match_indices(m.from)
        .nth(m.nth)
        .map(|(i, _)| i)
        .with_context(|| {
            format!(
                "mutant {:?}: no occurrence {} of {:?}",
                m.what, m.nth, m.from
            )
        })?;
    let mutated = format!("{}{}{}", &text[..at], m.to, &text[at + m.from.len()..]);
    std::fs::write(&path, mutated)?;
    Ok(())
}

/// Runs the tests quietly; true when they pass.
fn passes(mut cmd: Command) -> Result<bool> {
    let out = cmd.output().context("running cargo test")?;
    Ok(out.status.success())
}

fn run_mutants(root: &Path) -> Result<()> {
    check_tsan()?;
    let base = crate::target_dir(root)?.join("kernel-mutants");
    let mut missed = Vec::new();
    println!("| mutant | plain emulation | ThreadSanitizer |");
    println!("|---|---|---|");
    for (i, m) in MUTANTS.iter().enumerate() {
        let dir = base.join(format!("m{i}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        copy_dir(&root.join("kernels"), &dir)?;
        apply(m, &dir)?;
        let with_dir = |mut env: Vec<(&'static str, String)>| {
            env.push(("ENT_KERNELS_DIR", dir.display().to_string()));
            env
        };
        let plain = !passes(cargo_test(root, &with_dir(plain_env(64))))?;
        let tsan = !passes(cargo_test(root, &with_dir(tsan_env(16))))?;
        let mark = |caught: bool| if caught { "caught" } else { "missed" };
        println!("| {} | {} | {} |", m.what, mark(plain), mark(tsan));
        if !plain && !tsan {
            missed.push(m.what);
        }
    }
    if !missed.is_empty() {
        bail!("mutants the tests did not catch: {missed:?}");
    }
    println!("\nevery mutant was caught");
    Ok(())
}
