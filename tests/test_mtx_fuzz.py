"""Fuzzing the Matrix Market reader: mutated files load correctly or raise MatrixMarketError, quickly.

A seeded mutator (deterministic, so a failure names a reproducible case) takes valid files of every
format, field and symmetry and truncates them, flips and inserts bytes, writes huge, negative and
non-numeric sizes, invalid UTF-8 and very long lines. The cases run in a child process under a time
limit, so a hang fails the test instead of stopping the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from conftest import same_package_preamble

CHILD = textwrap.dedent(
    r'''
    import json, os, random, sys, time, warnings
    import numpy as np
    import scipy.io
    import torch
    import torch_sla as sla

    SEEDS = [
        b"%%MatrixMarket matrix coordinate real general\n% c\n3 4 4\n1 1 1.5\n2 3 -2\n3 4 1e3\n1 4 0.25\n",
        b"%%MatrixMarket matrix coordinate integer symmetric\n3 3 3\n1 1 4\n2 1 -1\n3 3 7\n",
        b"%%MatrixMarket matrix coordinate complex hermitian\n2 2 2\n1 1 2 0\n2 1 1 -1\n",
        b"%%MatrixMarket matrix coordinate pattern general\n2 3 3\n1 1\n2 2\n1 3\n",
        b"%%MatrixMarket matrix coordinate real skew-symmetric\n3 3 2\n2 1 1.0\n3 2 -2.5\n",
        b"%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n4\n",
        b"%%MatrixMarket matrix array complex symmetric\n2 2\n1 0\n2 1\n3 -1\n",
        b"%%MatrixMarket matrix array real skew-symmetric\n3 3\n1\n2\n3\n",
    ]
    HUGE = [b"0", b"-1", b"18446744073709551616", b"9223372036854775807", b"1000000000000000000",
            b"4294967296", b"2147483648", b"1e3", b"0x10", b"+5", b"-0", b"nan"]
    JUNK = [b"\xff", b"\xfe\xfe", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\t", b"\r", b"%", b"\n", b" ", b"e",
            b"-", b"inf", b"1.#INF"]

    def mutate(rng, data):
        data = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(8)
            if op == 0 and data:  # truncate
                del data[rng.randrange(len(data)):]
            elif op == 1 and data:  # flip a byte
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op == 2:  # insert junk
                i = rng.randrange(len(data) + 1)
                data[i:i] = rng.choice(JUNK)
            elif op == 3:  # replace a size token by a huge / negative / odd number
                lines = bytes(data).split(b"\n")
                k = next((j for j, l in enumerate(lines) if l and not l.startswith(b"%")), None)
                if k is not None:
                    toks = lines[k].split()
                    if toks:
                        toks[rng.randrange(len(toks))] = rng.choice(HUGE)
                        lines[k] = b" ".join(toks)
                        data = bytearray(b"\n".join(lines))
            elif op == 4 and data:  # delete a slice
                i = rng.randrange(len(data))
                del data[i:i + rng.randint(1, 8)]
            elif op == 5:  # a very long line
                i = rng.randrange(len(data) + 1)
                data[i:i] = rng.choice([b" ", b"1", b"%"]) * rng.choice([1000, 100000])
            elif op == 6:  # duplicate a line
                lines = bytes(data).split(b"\n")
                j = rng.randrange(len(lines))
                lines.insert(j, lines[j])
                data = bytearray(b"\n".join(lines))
            else:  # change an entry token
                lines = bytes(data).split(b"\n")
                j = rng.randrange(len(lines))
                toks = lines[j].split()
                if toks:
                    toks[rng.randrange(len(toks))] = rng.choice(HUGE + JUNK)
                    lines[j] = b" ".join(toks)
                    data = bytearray(b"\n".join(lines))
        return bytes(data)

    def dense_ref(path):
        """SciPy's reading of the file as a dense complex matrix, or None when SciPy refuses it."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = scipy.io.mmread(path)
            m = m.toarray() if hasattr(m, "toarray") else np.asarray(m)
            return m.astype(np.complex128)
        except Exception:
            return None

    n_cases, seed, tmp = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rng = random.Random(seed)
    path = os.path.join(tmp, "case.mtx")
    slowest, loaded, agreed = 0.0, 0, 0
    for case in range(n_cases):
        data = mutate(rng, rng.choice(SEEDS))
        with open(path, "wb") as f:
            f.write(data)
        print(json.dumps({"case": case, "data": data.decode("latin-1")[:300]}), flush=True)
        t = time.perf_counter()
        try:
            A = sla.load_mtx(path)
        except sla.MatrixMarketError:
            A = None
        slowest = max(slowest, time.perf_counter() - t)
        if A is None:
            continue
        loaded += 1
        # A successful load is a well-formed matrix that agrees with SciPy's reading, where SciPy reads it.
        n_rows, n_cols = A.shape
        assert A.crow_indices.numel() == n_rows + 1 and A.col_indices.numel() == A.nnz
        if n_rows * n_cols <= 10000:
            ref = dense_ref(path)
            if ref is not None and ref.shape == (n_rows, n_cols):
                ours = A.to_dense().to(torch.complex128).numpy()
                assert np.allclose(ours, ref, equal_nan=True, rtol=1e-15, atol=0), (case, ours, ref)
                agreed += 1
    print(json.dumps({"done": n_cases, "slowest": slowest, "loaded": loaded, "agreed": agreed}), flush=True)
    '''
)


def test_reader_fuzz(tmp_path):
    n_cases = int(os.environ.get("SLA_FUZZ_CASES", "3000"))
    script = tmp_path / "fuzz_child.py"
    script.write_text(same_package_preamble() + CHILD)  # the package this process tests
    try:
        r = subprocess.run(
            [sys.executable, str(script), str(n_cases), "20261124", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        last = out.strip().splitlines()[-1] if out.strip() else "(no case started)"
        raise AssertionError(f"the reader hung on a fuzzed file; last case: {last}") from None
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0, f"failed on {lines[-1] if lines else '?'}:\n{r.stderr[-3000:]}"
    summary = json.loads(lines[-1])
    assert summary["done"] == n_cases
    assert summary["slowest"] < 2.0, summary
    # the mutations leave a fair share of files loadable, and those are checked against SciPy
    assert summary["loaded"] > n_cases // 40 and summary["agreed"] > 0, summary
