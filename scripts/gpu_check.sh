#!/usr/bin/env bash
# On a machine with an NVIDIA GPU (no internet needed): build torch_sla with CUDA for the GPU present, run the
# GPU tests (C++ and Python) and the GPU benchmark, and write everything to OUT_DIR.
#   scripts/gpu_check.sh OUT_DIR
#   VENV=...        the virtual environment with torch (CUDA build), cmake, ninja, pytest (default .venv)
#   WHEELS=...      a folder of wheels carried along (nvidia-cudss-cu13 or -cu12, cupy-cuda13x), installed first
#   CUDA_ARCH=...   CMAKE_CUDA_ARCHITECTURES (default: native, the GPU present; e.g. 90 for H100/H200)
#   FULL=1          also run the whole Python suite against the CUDA build
# Writes OUT_DIR/{gpu_check.log, ctest.txt, pytest_gpu.txt, test_gpu.xml, bench_gpu.txt, bench_gpu.json}.
# Exits non-zero when a step fails (the log says which); the benchmark's targets are reported, not enforced.
set -euo pipefail
OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR}
cd "$(dirname "$0")/.."
ROOT=$PWD
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
VENV=$(cd "${VENV:-.venv}" && pwd)
PY="$VENV/bin/python"
exec > >(tee "$OUT/gpu_check.log") 2>&1

step() { echo; echo "== $* =="; }
# Python with the package of this tree (src/), whatever is installed in the environment.
pyrun() {
  "$PY" -c "import runpy, sys; sys.meta_path[:] = [f for f in sys.meta_path if '_editable' not in type(f).__module__]; \
sys.path.insert(0, '$ROOT/src'); sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')" "$@"
}

step "machine"
nvidia-smi || echo "(nvidia-smi not found)"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; \
print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"

if [ -n "${WHEELS:-}" ]; then
  step "wheels from $WHEELS"
  for w in nvidia-cudss-cu13 nvidia-cudss-cu12 cupy-cuda13x cupy-cuda12x; do
    "$PY" -m pip install --no-index --find-links "$WHEELS" "$w" || echo "($w: not in $WHEELS)"
  done
fi

# cuDSS's wheel folder (header and library), for the raw-cuDSS baseline of the benchmark and the C++ tests.
CUDSS_ROOT=$("$PY" - <<'PYEOF'
import os, site, torch
major = (torch.version.cuda or "13").split(".")[0]
for d in site.getsitepackages() + [site.getusersitepackages()]:
    for tag in (f"cu{major}", "cu13", "cu12", "cudss"):
        root = os.path.join(d, "nvidia", tag)
        if os.path.isfile(os.path.join(root, "include", "cudss.h")):
            print(root)
            raise SystemExit
PYEOF
)
echo "cuDSS wheel: ${CUDSS_ROOT:-not installed (the cudss backend and its tests will be skipped)}"
ARCH=${CUDA_ARCH:-native}
CMAKE="$VENV/bin/cmake"
GEN=(-G Ninja -DCMAKE_MAKE_PROGRAM="$VENV/bin/ninja" -DCMAKE_BUILD_TYPE=Release -DSLA_WITH_CUDA=ON
     -DCMAKE_CUDA_ARCHITECTURES="$ARCH")

step "build the Python module with CUDA (architectures $ARCH)"
"$CMAKE" -S . -B build/gpu-py "${GEN[@]}" -DSLA_BUILD_PYTHON=ON -DPython_EXECUTABLE="$PY"
"$CMAKE" --build build/gpu-py -j "$(nproc)"
cp build/gpu-py/_C*.so src/torch_sla/

step "build the C++ tests and the raw cuDSS benchmark"
"$CMAKE" -S . -B build/gpu-cpp "${GEN[@]}" -DSLA_BUILD_PYTHON=OFF -DSLA_BUILD_TESTS=ON ${CUDSS_ROOT:+-DCUDSS_ROOT="$CUDSS_ROOT"}
"$CMAKE" --build build/gpu-cpp -j "$(nproc)"

status=0
step "C++ tests of the CUDA part"
LIB=""
[ -n "$CUDSS_ROOT" ] && LIB=$(ls "$CUDSS_ROOT"/lib/libcudss.so.* 2>/dev/null | head -1)
(cd build/gpu-cpp && TORCH_SLA_CUDSS="${LIB:-none}" "$VENV/bin/ctest" --output-on-failure \
  -R 'Cuda|Cudss') 2>&1 | tee "$OUT/ctest.txt" || status=1

step "Python GPU tests"
"$PY" scripts/run_isolated.py "$ROOT/src" -q -rs tests/test_gpu.py --junitxml="$OUT/test_gpu.xml" \
  -p no:cacheprovider 2>&1 | tee "$OUT/pytest_gpu.txt" || status=1

if [ "${FULL:-0}" = 1 ]; then
  step "the whole Python suite"
  "$PY" scripts/run_isolated.py "$ROOT/src" -q -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest_all.txt" || status=1
fi

step "GPU benchmark"
pyrun benchmarks/bench_gpu.py --raw-bench build/gpu-cpp/bench_cudss_raw --json "$OUT/bench_gpu.json" 2>&1 \
  | tee "$OUT/bench_gpu.txt" || status=1

step "done (status $status): results in $OUT"
exit $status
