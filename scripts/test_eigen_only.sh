#!/usr/bin/env bash
# Build torch_sla without SuiteSparse (Eigen only) beside the normal build and run the Python tests on it.
#   VENV=...   the virtual environment with cmake, ninja and the test dependencies (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(cd "${VENV:-.venv}" && pwd)
B=build/eigen-only
"$VENV/bin/cmake" -S . -B $B -G Ninja -DCMAKE_MAKE_PROGRAM="$VENV/bin/ninja" -DSLA_BUILD_PYTHON=ON \
  -DSLA_WITH_SUITESPARSE=OFF -DPython_EXECUTABLE="$VENV/bin/python" -DCMAKE_BUILD_TYPE=Release >/dev/null
"$VENV/bin/cmake" --build $B --target _C
rm -rf $B/pkg && mkdir -p $B/pkg && cp -r src/torch_sla $B/pkg/ && cp $B/_C*.so $B/pkg/torch_sla/
"$VENV/bin/python" scripts/run_isolated.py "$PWD/$B/pkg" -q tests -p no:cacheprovider
