#!/usr/bin/env bash
# GPU checks of ent's CUDA kernels, for a machine with an NVIDIA GPU, a CUDA 13 driver and
# Python with torch and torchaudio, but no Rust. Built by `cargo xtask gpu-bundle`.
#
#   bash run.sh [OUT_DIR]          (default: out/ beside this script)
#
# 1. parity: ent-lattice's GPU tests against the CPU reference, ENT_REQUIRE_CUDA=1 (no skips;
#    with the 2^31-logit case), ent-model's (the LSTM recurrence kernels against the CPU op) and
#    ent-train's (the first training step's losses on the GPU against the CPU);
# 2. compute-sanitizer memcheck and racecheck over a few parity cases, where the tool works;
# 3. the criterion groups cuda/rnnt_loss and cuda/lattice_pool, torchaudio's rnnt_loss on the
#    same shapes, and the comparison table (also in OUT_DIR/table.md);
# 4. `ent eval` of the demo's test and diarization sets with the built-in demo model on the CPU
#    and on the GPU, timed, and the two compared (compare_eval.py). The demo data is looked for
#    in ENT_DEMO_DATA, else in data/demo of the checkout the bundle was built in.
# 5. one epoch of the demo recipe (`ent train`, warm-up shortened to half an epoch) on the CPU
#    and on the GPU, timed (at most ENT_TRAIN_TIMEOUT seconds each, default 150).
# 6. one training step (batch 8, 5 s, U 60) of ent on the GPU (criterion cuda/train_step) beside
#    benches/train_torch.py --device cuda, one line per model (train_table.py); then the whole
#    demo (`ent --device cuda demo`), timed (at most ENT_DEMO_TIMEOUT seconds, default 900).
# ENT_GPU_STEPS="1 3" runs only those steps. Each step has a time limit (timeout(1)); a step that runs past it counts as failed.
# Exits non-zero if a check failed; every log is in OUT_DIR.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out}
mkdir -p "$out"
failed=()

# The binaries travel xz-compressed; unpack them into a temporary folder.
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
for name in ent-lattice-tests ent-model-tests ent-train-tests lattice-cuda train-bench ent; do
    python3 -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.open(sys.argv[1]).read())' \
        "$here/$name.xz" "$bin/$name" && chmod +x "$bin/$name" || { echo "cannot unpack $name"; exit 1; }
done

# The CUDA libraries the binaries link (cuBLAS, cuRAND, NVRTC, the runtime) come with the
# Python wheels of torch; the driver with the system.
libs=$(python3 - <<'PY'
import glob, os
dirs = set()
try:
    import nvidia
    for root in nvidia.__path__:
        for so in glob.glob(os.path.join(root, "**", "lib*.so*"), recursive=True):
            dirs.add(os.path.dirname(so))
except ImportError:
    pass
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="${libs}:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
for name in ent-lattice-tests ent-model-tests ent-train-tests lattice-cuda train-bench ent; do
    if ldd "$bin/$name" | grep "not found"; then
        echo "$name: libraries not found (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"
        exit 1
    fi
done

# The steps to run (ENT_GPU_STEPS, default all): a rerun can repeat only the ones that failed.
want() { [[ " ${ENT_GPU_STEPS:-1 2 3 4 5 6} " == *" $1 "* ]]; }

if want 1; then
echo "== 1. parity against the CPU reference (ENT_REQUIRE_CUDA=1)"
ENT_REQUIRE_CUDA=1 timeout 300 "$bin/ent-lattice-tests" cuda:: --test-threads=1 2>&1 | tee "$out/parity.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("parity")
ENT_REQUIRE_CUDA=1 timeout 300 "$bin/ent-model-tests" cuda_lstm --test-threads=1 2>&1 | tee "$out/parity-model.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("LSTM parity")
ENT_BACKBONE_FIXTURE="$here/../../crates/ent-backbone/tests/fixtures/wav2vec2-base" \
    ENT_REQUIRE_CUDA=1 timeout 300 "$bin/ent-train-tests" cuda_ --test-threads=1 2>&1 | tee "$out/parity-train.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("first training step and SpecAugment cpu/cuda")
fi

echo "== 2. compute-sanitizer"
if ! want 2; then
    echo "skipped (ENT_GPU_STEPS)"
elif command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
        ENT_REQUIRE_CUDA=1 ENT_CUDA_CASES=4 timeout "${ENT_SANITIZER_TIMEOUT:-180}" compute-sanitizer --tool "$tool" --error-exitcode 9 \
            "$bin/ent-lattice-tests" cuda::rnnt_matches cuda::pooling_matches \
            cuda::best_path cuda::with_grad --test-threads=1 >"$out/sanitizer-$tool.log" 2>&1
        rc=$?
        echo "compute-sanitizer --tool $tool: exit $rc ($(grep -c 'ERROR SUMMARY: 0 errors' \
            "$out/sanitizer-$tool.log") clean summaries; log in sanitizer-$tool.log)"
        grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$out/sanitizer-$tool.log" | sort | uniq -c
        [ "$rc" -eq 0 ] || failed+=("compute-sanitizer $tool")
    done
else
    echo "compute-sanitizer not found: skipped"
fi

if want 3; then
echo "== 3. benchmarks: criterion cuda/rnnt_loss, cuda/lattice_pool; torchaudio"
CRITERION_HOME="$out/criterion" timeout 400 "$bin/lattice-cuda" --bench 2>&1 | tee "$out/criterion.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("criterion")
PYTHONUNBUFFERED=1 python3 "$here/torchaudio_rnnt.py" --device cuda --dtypes float32,float16 \
    --runs 10 --json "$out/torchaudio.json" 2>&1 | tee "$out/torchaudio.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("torchaudio")
python3 "$here/gpu_table.py" "$out/criterion" "$out/torchaudio.json" | tee "$out/table.md"
fi

echo "== 4. ent eval of the demo sets, cpu and cuda"
demo=${ENT_DEMO_DATA:-$here/../../data/demo}
if [ -f "$demo/test.json" ] && [ -f "$demo/diar.json" ]; then
    want 4 && for dev in cpu cuda; do
        for set in test diar; do
            t0=$(date +%s.%N)
            timeout 120 "$bin/ent" --device "$dev" eval "$demo/$set.json" --out "$out/eval-$dev" \
                --timelines 0 >"$out/eval-$dev-$set.log" 2>&1
            rc=$?
            t1=$(date +%s.%N)
            echo "ent --device $dev eval $set.json: exit $rc, $(python3 -c \
                "print(f'{$t1 - $t0:.2f}')") s; $(grep -v '^report and plots' "$out/eval-$dev-$set.log" | tail -1)"
            [ "$rc" -eq 0 ] || failed+=("ent eval $set on $dev")
        done
    done
    if want 4; then
        python3 "$here/compare_eval.py" "$out/eval-cpu" "$out/eval-cuda" | tee "$out/compare.txt"
        [ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("cpu/cuda agreement")
    fi

    echo "== 5. one epoch of the demo recipe, cpu and cuda"
    python3 - "$demo/config.json" "$out/demo-1epoch.json" <<'PY'
import json, os, sys
c = json.load(open(sys.argv[1]))
home = os.path.dirname(os.path.abspath(sys.argv[1]))
c["epochs"] = 1
c["optim"]["warmup_epochs"] = 0.5
c["data"] = {k: os.path.join(home, v) for k, v in c["data"].items()}
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
    want 5 && for dev in cpu cuda; do
        t0=$(date +%s.%N)
        timeout "${ENT_TRAIN_TIMEOUT:-150}" "$bin/ent" --device "$dev" train \
            -c "$out/demo-1epoch.json" --out "$out/train-$dev" >"$out/train-$dev.log" 2>&1
        rc=$?
        t1=$(date +%s.%N)
        echo "ent --device $dev train (1 epoch): exit $rc, $(python3 -c \
            "print(f'{$t1 - $t0:.2f}')") s"
        grep -iE "epoch|test|error" "$out/train-$dev.log" | tail -4
        [ "$rc" -eq 0 ] || failed+=("ent train on $dev")
    done
else
    echo "no demo data in $demo (set ENT_DEMO_DATA): skipped"
fi

if want 6; then
echo "== 6. one training step on the GPU beside PyTorch; the demo on the GPU"
ENT_BENCH_DEVICE=cuda CRITERION_HOME="$out/criterion" timeout 600 "$bin/train-bench" --bench 2>&1 \
    | tee "$out/train-bench.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("training-step benchmark")
PYTHONUNBUFFERED=1 timeout 600 python3 "$here/train_torch.py" --device cuda --threads 16 --runs 10 \
    --json "$out/train_torch.json" 2>&1 | tee "$out/train-torch.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("PyTorch training step")
python3 "$here/train_table.py" "$out/criterion" "$out/train_torch.json" | tee "$out/train-table.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("training-step table")
if [ -f "$demo/config.json" ]; then
    t0=$(date +%s.%N)
    timeout "${ENT_DEMO_TIMEOUT:-900}" "$bin/ent" --device cuda demo --data "$demo" \
        --out "$out/demo-cuda" >"$out/demo-cuda.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    echo "ent --device cuda demo: exit $rc, $(python3 -c "print(f'{$t1 - $t0:.1f}')") s"
    grep -E "EDER|WA|WER|timing" "$out/demo-cuda.log" | tail -8
    [ "$rc" -eq 0 ] || failed+=("ent demo on cuda")
fi
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all GPU checks passed"
