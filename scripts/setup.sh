#!/usr/bin/env bash
# Idempotent set-up: system packages, the virtual environment, and an editable build of torch_sla.
# Every step checks first and does nothing when its work is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}   # pinned: an unpinned torch would pull a CUDA build of several GB
# Intel MKL for the 'pardiso' backend, loaded at run time (nothing is linked against it): MKL_SPEC=none
# leaves it out, and torch_sla builds, imports and passes its tests without it.
MKL_SPEC=${MKL_SPEC:-mkl==2026.2.0}
DEB_PACKAGES="build-essential libeigen3-dev libsuitesparse-dev libopenblas-dev libgtest-dev libmetis-dev"

# 1. Debian packages (Eigen is required; SuiteSparse over OpenBLAS is used when present).
missing=""
for p in $DEB_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO=none; fi
  if [ "$SUDO" = none ]; then
    echo "setup: missing Debian packages:$missing (not root, no sudo): install them, then re-run" >&2
  else
    echo "setup: installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
fi

# 2. Virtual environment with torch (CPU wheel) and the build/test tools.
if [ ! -x "$PY" ]; then
  echo "setup: creating $VENV"
  python3 -m venv "$VENV"
fi
mkdir -p .stamp
REQS="$TORCH_SPEC numpy scipy nanobind>=2.4 scikit-build-core>=0.10 cmake>=3.18 ninja pytest hypothesis matplotlib ruff"
if [ "$MKL_SPEC" != none ]; then REQS="$REQS $MKL_SPEC"; fi
if [ ! -f .stamp/venv ] || [ "$(cat .stamp/venv)" != "$REQS" ]; then
  echo "setup: installing Python packages"
  "$PY" -m pip install -q --upgrade pip >/dev/null
  "$PY" -m pip install -q $REQS
  echo "$REQS" > .stamp/venv
fi

# 3. Editable build of the package, redone when a C++ or build file is newer than the last build.
if [ ! -f .stamp/build ] || [ -n "$(find csrc CMakeLists.txt pyproject.toml -newer .stamp/build -print -quit)" ] \
   || ! "$PY" -c "import torch_sla._C" 2>/dev/null; then
  echo "setup: building torch_sla (C++ core + bindings)"
  "$PY" -m pip install -q --no-build-isolation --no-deps -e . 
  touch .stamp/build
fi
