#!/usr/bin/env bash
# GPU checks of ent's CUDA kernels, for a machine with an NVIDIA GPU, a CUDA 13 driver and
# Python with torch and torchaudio, but no Rust. Built by `cargo xtask gpu-bundle`.
#
#   bash run.sh [OUT_DIR]          (default: out/ beside this script)
#
# 1. parity: ent-lattice's GPU tests against the CPU reference, ENT_REQUIRE_CUDA=1 (no skips;
#    with the 2^31-logit case);
# 2. compute-sanitizer memcheck and racecheck over a few parity cases, where the tool works;
# 3. the criterion groups cuda/rnnt_loss and cuda/lattice_pool, torchaudio's rnnt_loss on the
#    same shapes, and the comparison table (also in OUT_DIR/table.md).
# Exits non-zero if a check failed; every log is in OUT_DIR.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out}
mkdir -p "$out"
failed=()

# The binaries travel xz-compressed; unpack them into a temporary folder.
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
for name in ent-lattice-tests lattice-cuda; do
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
for name in ent-lattice-tests lattice-cuda; do
    if ldd "$bin/$name" | grep "not found"; then
        echo "$name: libraries not found (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"
        exit 1
    fi
done

echo "== 1. parity against the CPU reference (ENT_REQUIRE_CUDA=1)"
ENT_REQUIRE_CUDA=1 "$bin/ent-lattice-tests" cuda:: --test-threads=1 2>&1 | tee "$out/parity.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("parity")

echo "== 2. compute-sanitizer"
if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
        ENT_REQUIRE_CUDA=1 ENT_CUDA_CASES=4 compute-sanitizer --tool "$tool" --error-exitcode 9 \
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

echo "== 3. benchmarks: criterion cuda/rnnt_loss, cuda/lattice_pool; torchaudio"
CRITERION_HOME="$out/criterion" "$bin/lattice-cuda" --bench 2>&1 | tee "$out/criterion.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("criterion")
PYTHONUNBUFFERED=1 python3 "$here/torchaudio_rnnt.py" --device cuda --dtypes float32,float16 \
    --runs 10 --json "$out/torchaudio.json" 2>&1 | tee "$out/torchaudio.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("torchaudio")
python3 "$here/gpu_table.py" "$out/criterion" "$out/torchaudio.json" | tee "$out/table.md"

if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all GPU checks passed"
