#!/usr/bin/env bash
# Build torch_sla without SuiteSparse (Eigen only) beside the normal build and run the Python tests on it.
set -euo pipefail
cd "$(dirname "$0")/.."
B=build/eigen-only
.venv/bin/cmake -S . -B $B -G Ninja -DCMAKE_MAKE_PROGRAM="$PWD/.venv/bin/ninja" -DSLA_BUILD_PYTHON=ON \
  -DSLA_WITH_SUITESPARSE=OFF -DPython_EXECUTABLE="$PWD/.venv/bin/python" -DCMAKE_BUILD_TYPE=Release >/dev/null
.venv/bin/cmake --build $B --target _C
rm -rf $B/pkg && mkdir -p $B/pkg && cp -r src/torch_sla $B/pkg/ && cp $B/_C*.so $B/pkg/torch_sla/
.venv/bin/python scripts/run_isolated.py "$PWD/$B/pkg" -q tests -p no:cacheprovider
