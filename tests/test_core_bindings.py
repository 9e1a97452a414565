"""The nanobind module torch_sla._C itself: file names as bytes, error messages with non-UTF-8 bytes,
Symbolic.memory_bytes, and Python signals interrupting long calls of the C++ core."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from torch_sla import _C, errors

COO_TEXT = b"%%MatrixMarket matrix coordinate real general\n2 2 1\n1 2 3.5\n"


def test_mtx_read_and_write_take_bytes_paths(tmp_path):
    name = os.fsencode(tmp_path) + b"/a\xff.mtx"  # not valid UTF-8
    with open(name, "wb") as f:
        f.write(COO_TEXT)
    d = _C.mtx_read(name)
    assert (d["n_rows"], list(d["row"]), list(d["col"]), list(d["values"])) == (2, [0], [1], [3.5])
    # A str is encoded like os.fsencode (surrogate escapes included).
    assert list(_C.mtx_read(os.fsdecode(name))["values"]) == [3.5]
    out = os.fsencode(tmp_path) + b"/b\xfe.mtx"
    row, col = np.array([1], dtype=np.int64), np.array([0], dtype=np.int64)
    _C.mtx_write(out, 2, 2, row, col, np.array([2.0]), "real", "general", "")
    assert _C.mtx_read(out)["row"].tolist() == [1]
    with pytest.raises(errors.InvalidArgumentError, match="NUL"):
        _C.mtx_read(b"a\x00b.mtx")


@pytest.mark.parametrize(
    "text, where",
    [
        (
            b"%%MatrixMarket matrix coordinate re\xffal general\n2 2 1\n1 2 3.5\n",
            ":1: unknown field 're\\xffal'",
        ),
        (
            b"%%MatrixMarket matrix coordinate real general\n2 \xff2 1\n1 2 3.5\n",
            ":2: invalid number '\\xff2'",
        ),
        (
            b"%%MatrixMarket matrix coordinate real general\n2 2 1\n1 2 3\xc3\n",
            ":3: invalid real value '3\\xc3'",
        ),
    ],
)
def test_non_utf8_bytes_in_a_message_keep_the_exception_class(tmp_path, text, where):
    name = os.fsencode(tmp_path) + b"/bad\xff.mtx"
    with open(name, "wb") as f:
        f.write(text)
    with pytest.raises(errors.MatrixMarketError) as info:
        _C.mtx_read(name)
    message = str(info.value)
    assert "bad\\xff.mtx" + where in message


def test_symbolic_memory_bytes():
    n = 1000
    crow, col = np.arange(n + 1, dtype=np.int64), np.arange(n, dtype=np.int64)
    backends = ["eigen"] + (["suitesparse"] if _C.backend_available("suitesparse") else [])
    for backend in backends:
        for method in ("cholesky", "ldl", "lu"):
            sym = _C.analyze(backend, method, "float64", n, n, crow, col)
            assert isinstance(sym.memory_bytes, int)
            assert sym.memory_bytes >= (n + 1 + 2 * n) * 8  # at least the CSC plan
            with pytest.raises(AttributeError):
                sym.memory_bytes = 0


def _laplacian(n: int):
    i = np.arange(n)
    rows = np.concatenate([i, i[1:], i[:-1]])
    cols = np.concatenate([i, i[1:] - 1, i[:-1] + 1])
    vals = np.concatenate([np.full(n, 2.0), np.full(2 * n - 2, -1.0)])
    order = np.lexsort((cols, rows))
    crow = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int64)
    return crow, cols[order].astype(np.int64), vals[order]


class _Stop(Exception):
    pass


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
@pytest.mark.parametrize("method", ["cg", "gmres"])
def test_a_signal_interrupts_a_long_krylov_solve(method):
    # A tolerance out of reach: without the interrupt the solve would run for many seconds.
    n = 200_000
    crow, col, vals = _laplacian(n)
    b, x = np.ones((n, 1)), np.zeros((n, 1))

    def raise_stop(signum, frame):
        raise _Stop("stop")

    previous = signal.signal(signal.SIGUSR1, raise_stop)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(_Stop):
            _C.krylov_solve(method, n, crow, col, vals, b, x, None, rtol=1e-300, maxiter=20_000)
        assert time.monotonic() - t0 < 2.0
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    # The module keeps working afterwards.
    r = _C.krylov_solve("cg", 50, *_laplacian(50), np.ones((50, 1)), np.zeros((50, 1)), None)
    assert r["converged"]
