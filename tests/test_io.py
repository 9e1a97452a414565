"""Matrix Market I/O: round trips, agreement with SciPy, and a clear error for every malformed file."""

from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torch_sla as sla

F64, C128 = torch.float64, torch.complex128


def write_text(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_bytes(text.encode())
    return path


def base_matrix(n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """A dense n x n matrix with about half of its entries zero (values with short decimal forms)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, n, generator=g) < 0.5
    re = torch.randint(-9, 10, (n, n), generator=g).to(F64) / 4
    d = torch.complex(re, torch.randint(-9, 10, (n, n), generator=g).to(F64) / 8) if dtype.is_complex else re
    return (d * mask).to(dtype)


def structured(symmetry: str, dtype: torch.dtype, field: str, n: int = 6) -> torch.Tensor:
    d = base_matrix(n, dtype)
    if field == "integer":
        d = torch.round(d * 4)
    if symmetry == "symmetric":
        d = d + d.T
    elif symmetry == "skew-symmetric":
        d = d - d.T
    elif symmetry == "hermitian":
        d = d + d.mH
    return d


COMBINATIONS = [
    ("real", "general"),
    ("real", "symmetric"),
    ("real", "skew-symmetric"),
    ("integer", "general"),
    ("integer", "symmetric"),
    ("integer", "skew-symmetric"),
    ("complex", "general"),
    ("complex", "symmetric"),
    ("complex", "skew-symmetric"),
    ("complex", "hermitian"),
    ("pattern", "general"),
    ("pattern", "symmetric"),
]


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field,symmetry", COMBINATIONS)
def test_round_trip_every_field_and_symmetry(tmp_path, field, symmetry):
    dtype = C128 if field == "complex" else F64
    dense = structured(symmetry, dtype, field)
    A = sla.SparseTensor.from_dense(dense)
    path = tmp_path / f"{field}_{symmetry}.mtx"
    sla.save_mtx(path, A, field=field, symmetry=symmetry, comment="round trip")
    header = path.read_text().splitlines()[0]
    assert header == f"%%MatrixMarket matrix coordinate {field} {symmetry}"
    B = sla.load_mtx(path)
    assert B.shape == A.shape
    assert B.dtype == dtype
    if field == "pattern":
        assert torch.equal(B.to_dense(), (dense != 0).to(F64))
    else:
        assert torch.equal(B.to_dense(), dense)
    # Only one triangle is stored in a non-general file.
    if symmetry != "general":
        n_lower = int((torch.tril(dense, 0 if symmetry != "skew-symmetric" else -1) != 0).sum())
        assert path.read_text().splitlines()[2] == f"6 6 {n_lower}"


def test_round_trip_rectangular_and_exact_digits(tmp_path):
    vals = torch.tensor([0.1, -1 / 3, 1e-300, 6.02214076e23, -0.0], dtype=F64)
    A = sla.SparseTensor(vals, torch.tensor([0, 2, 1, 0, 2]), torch.tensor([4, 0, 3, 1, 2]), (3, 5))
    sla.save_mtx(tmp_path / "r.mtx", A)
    B = sla.load_mtx(tmp_path / "r.mtx")
    assert B.shape == (3, 5)
    assert torch.equal(B.to_dense(), A.to_dense())


def test_round_trip_empty(tmp_path):
    A = sla.SparseTensor(
        torch.zeros(0, dtype=F64),
        torch.zeros(0, dtype=torch.int64),
        torch.zeros(0, dtype=torch.int64),
        (4, 2),
    )
    sla.save_mtx(str(tmp_path / "e.mtx"), A)
    B = sla.load_mtx(str(tmp_path / "e.mtx"))
    assert B.shape == (4, 2) and B.nnz == 0


def test_round_trip_float32_and_real_as_complex(tmp_path):
    dense = structured("symmetric", torch.float32, "real")
    A = sla.SparseTensor.from_dense(dense)
    sla.save_mtx(tmp_path / "f.mtx", A, symmetry="symmetric")
    B = sla.load_mtx(tmp_path / "f.mtx", dtype=torch.float32, index_dtype=torch.int32)
    assert B.dtype == torch.float32
    assert torch.equal(B.to_dense(), dense)
    # A real symmetric matrix is hermitian when written with the complex field.
    sla.save_mtx(tmp_path / "h.mtx", A, field="complex", symmetry="hermitian")
    C = sla.load_mtx(tmp_path / "h.mtx")
    assert C.dtype == C128
    assert torch.equal(C.to_dense(), dense.to(C128))


def test_save_writes_comment_lines(tmp_path):
    A = sla.SparseTensor(torch.tensor([2.5], dtype=F64), torch.tensor([1]), torch.tensor([0]), (2, 2))
    sla.save_mtx(tmp_path / "c.mtx", A, comment="first line\n second line")
    assert (tmp_path / "c.mtx").read_text() == (
        "%%MatrixMarket matrix coordinate real general\n%first line\n% second line\n2 2 1\n2 1 2.5\n"
    )


def test_save_detaches_values(tmp_path):
    v = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    A = sla.SparseTensor(v, torch.tensor([0, 1]), torch.tensor([0, 1]), (2, 2))
    sla.save_mtx(tmp_path / "g.mtx", A)
    assert torch.equal(sla.load_mtx(tmp_path / "g.mtx").to_dense(), torch.diag(v.detach()))


# --- reading all header variants -----------------------------------------------------------------


def test_load_expands_symmetric_and_skew(tmp_path):
    p = write_text(
        tmp_path / "s.mtx",
        "%%MatrixMarket matrix coordinate real symmetric\n% c\n3 3 3\n1 1 4\n2 1 -1\n3 2 2.5\n",
    )
    expected = torch.tensor([[4, -1, 0], [-1, 0, 2.5], [0, 2.5, 0]], dtype=F64)
    assert torch.equal(sla.load_mtx(p).to_dense(), expected)
    p = write_text(
        tmp_path / "k.mtx", "%%MatrixMarket matrix coordinate integer skew-symmetric\n2 2 1\n2 1 3\n"
    )
    assert torch.equal(sla.load_mtx(p).to_dense(), torch.tensor([[0, -3], [3, 0]], dtype=F64))


def test_load_hermitian_conjugates(tmp_path):
    p = write_text(
        tmp_path / "h.mtx", "%%MatrixMarket matrix coordinate complex hermitian\n2 2 2\n1 1 5 0\n2 1 1 2\n"
    )
    expected = torch.tensor([[5, 1 - 2j], [1 + 2j, 0]], dtype=C128)
    assert torch.equal(sla.load_mtx(p).to_dense(), expected)


def test_load_array_formats(tmp_path):
    p = write_text(tmp_path / "a.mtx", "%%MatrixMarket matrix array real general\n2 3\n1\n2\n0\n4\n5\n6\n")
    A = sla.load_mtx(p)
    assert A.nnz == 6  # every position of a dense file is stored, zeros included
    assert torch.equal(A.to_dense(), torch.tensor([[1, 0, 5], [2, 4, 6]], dtype=F64))
    p = write_text(tmp_path / "s.mtx", "%%MatrixMarket matrix array real symmetric\n2 2\n1\n2\n3\n")
    assert torch.equal(sla.load_mtx(p).to_dense(), torch.tensor([[1, 2], [2, 3]], dtype=F64))
    p = write_text(tmp_path / "k.mtx", "%%MatrixMarket matrix array real skew-symmetric\n3 3\n1\n2\n3\n")
    assert torch.equal(
        sla.load_mtx(p).to_dense(), torch.tensor([[0, -1, -2], [1, 0, -3], [2, 3, 0]], dtype=F64)
    )


def test_load_pattern_and_case_insensitive_banner(tmp_path):
    p = write_text(tmp_path / "p.mtx", "%%matrixmarket MATRIX Coordinate PATTERN General\n2 2 2\n1 2\n2 2\n")
    A = sla.load_mtx(p)
    assert A.dtype == F64
    assert torch.equal(A.to_dense(), torch.tensor([[0, 1], [0, 1]], dtype=F64))


def test_load_sums_duplicates(tmp_path):
    p = write_text(tmp_path / "d.mtx", "%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1\n1 1 2\n")
    assert sla.load_mtx(p).to_dense()[0, 0].item() == 3.0


def test_load_accepts_nan_and_inf(tmp_path):
    p = write_text(
        tmp_path / "n.mtx", "%%MatrixMarket matrix coordinate real general\n1 2 2\n1 1 nan\n1 2 -inf\n"
    )
    d = sla.load_mtx(p).to_dense()
    assert torch.isnan(d[0, 0]) and d[0, 1].item() == -float("inf")


def test_load_dtype_arguments(tmp_path):
    p = write_text(tmp_path / "c.mtx", "%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 2\n")
    assert sla.load_mtx(p, dtype=torch.complex64).dtype == torch.complex64
    with pytest.raises(ValueError, match="dtype: .* holds complex values"):
        sla.load_mtx(p, dtype=F64)
    with pytest.raises(ValueError, match="dtype: torch.int64 is not supported"):
        sla.load_mtx(p, dtype=torch.int64)
    with pytest.raises(ValueError, match="index_dtype: expected torch.int32 or torch.int64"):
        sla.load_mtx(p, index_dtype=torch.int16)


# --- agreement with SciPy --------------------------------------------------------------------------


def scipy_dense(path) -> np.ndarray:
    m = scipy.io.mmread(str(path))
    return m.toarray() if sp.issparse(m) else np.asarray(m)


@pytest.mark.parametrize(
    "kind",
    [
        "real",
        "complex",
        "symmetric",
        "pattern",
        "integer",
        "hermitian",
        "skew-symmetric",
        "dense",
        "dense-symmetric",
    ],
)
def test_matches_scipy_mmread(tmp_path, kind):
    rng = np.random.default_rng(3)
    a = sp.random(7, 5, density=0.4, rng=rng, format="coo")
    path = tmp_path / f"{kind}.mtx"
    if kind == "real":
        scipy.io.mmwrite(str(path), a)
    elif kind == "complex":
        c = a.astype(np.complex128) + 1j * sp.random(7, 5, density=0.4, rng=rng)
        scipy.io.mmwrite(str(path), sp.coo_matrix(c))
    elif kind == "symmetric":
        s = sp.random(6, 6, density=0.4, rng=rng)
        scipy.io.mmwrite(str(path), sp.coo_matrix(s + s.T), symmetry="symmetric")
    elif kind == "pattern":
        scipy.io.mmwrite(str(path), a, field="pattern")
    elif kind == "integer":
        scipy.io.mmwrite(str(path), sp.coo_matrix(np.round(a.toarray() * 100).astype(np.int64)))
    elif kind == "hermitian":
        s = sp.random(6, 6, density=0.4, rng=rng) * (1 + 2j)
        scipy.io.mmwrite(str(path), sp.coo_matrix(s + s.conj().T + sp.eye(6)), symmetry="hermitian")
    elif kind == "skew-symmetric":
        s = sp.random(6, 6, density=0.4, rng=rng)
        scipy.io.mmwrite(str(path), sp.coo_matrix(s - s.T), symmetry="skew-symmetric")
    elif kind == "dense":
        scipy.io.mmwrite(str(path), rng.standard_normal((4, 3)))
    else:
        s = rng.standard_normal((4, 4))
        scipy.io.mmwrite(str(path), s + s.T, symmetry="symmetric")
    expected = scipy_dense(path)
    A = sla.load_mtx(path)
    header = path.read_text().splitlines()[0].lower()
    if kind not in ("dense", "dense-symmetric"):
        assert "coordinate" in header
    if kind in ("symmetric", "hermitian", "skew-symmetric", "dense-symmetric"):
        assert kind.replace("dense-", "") in header
    got = A.to_dense().numpy()
    if kind == "pattern":
        expected = (expected != 0).astype(np.float64)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("field,symmetry", COMBINATIONS)
def test_scipy_reads_our_files(tmp_path, field, symmetry):
    dtype = C128 if field == "complex" else F64
    dense = structured(symmetry, dtype, field)
    path = tmp_path / "ours.mtx"
    sla.save_mtx(path, sla.SparseTensor.from_dense(dense), field=field, symmetry=symmetry)
    expected = (dense != 0).to(F64) if field == "pattern" else dense
    np.testing.assert_array_equal(scipy_dense(path), expected.numpy())


# --- malformed files ---------------------------------------------------------------------------------

COO = "%%MatrixMarket matrix coordinate real general\n"

MALFORMED = [
    ("empty", "", r":1: empty file"),
    ("no_banner", "3 3 1\n1 1 1\n", r":1: missing Matrix Market banner"),
    ("short_banner", "%%MatrixMarket matrix coordinate real\n1 1 0\n", r":1: malformed banner"),
    ("vector", "%%MatrixMarket vector coordinate real general\n1 1 0\n", r"unsupported object 'vector'"),
    ("format", "%%MatrixMarket matrix sparse real general\n1 1 0\n", r":1: unknown format 'sparse'"),
    ("field", "%%MatrixMarket matrix coordinate double general\n1 1 0\n", r":1: unknown field 'double'"),
    ("symmetry", "%%MatrixMarket matrix coordinate real lower\n1 1 0\n", r":1: unknown symmetry 'lower'"),
    (
        "pattern_array",
        "%%MatrixMarket matrix array pattern general\n1 1\n",
        r"'pattern' field cannot be used",
    ),
    (
        "hermitian_real",
        "%%MatrixMarket matrix coordinate real hermitian\n1 1 0\n",
        r"'hermitian' symmetry requires",
    ),
    ("no_size", COO + "% only a comment\n", r":2: file ends before the size line"),
    ("negative", COO + "-2 2 0\n", r":2: negative size"),
    ("size_tokens", COO + "2 2\n", r":2: malformed size line"),
    ("size_number", COO + "2 two 1\n", r":2: invalid number 'two'"),
    (
        "nonsquare",
        "%%MatrixMarket matrix coordinate real symmetric\n2 3 0\n",
        r":2: .*must be square, got 2 x 3",
    ),
    ("row_range", COO + "2 2 1\n3 1 1\n", r":3: row index 3 is out of range 1\.\.2"),
    ("row_zero", COO + "2 2 1\n0 1 1\n", r":3: row index 0 is out of range"),
    ("col_range", COO + "2 2 2\n1 1 1\n1 5 1\n", r":4: column index 5 is out of range 1\.\.2"),
    ("few_values", COO + "2 2 1\n1 1\n", r":3: expected 3 values 'row col value' on an entry line, got 2"),
    ("many_values", COO + "2 2 1\n1 1 1 1\n", r":3: expected 3 values .* got 4"),
    (
        "complex_values",
        "%%MatrixMarket matrix coordinate complex general\n2 2 1\n1 1 1\n",
        r":3: expected 4 values 'row col real imag'",
    ),
    ("bad_real", COO + "2 2 1\n1 1 1.2.3\n", r":3: invalid real value '1\.2\.3'"),
    ("bad_index", COO + "2 2 1\n1.5 1 1\n", r":3: invalid row index '1\.5'"),
    (
        "bad_integer",
        "%%MatrixMarket matrix coordinate integer general\n2 2 1\n1 1 1.5\n",
        r":3: invalid integer value '1\.5'",
    ),
    (
        "skew_diagonal",
        "%%MatrixMarket matrix coordinate real skew-symmetric\n2 2 1\n2 2 1\n",
        r":3: skew-symmetric matrix has a nonzero diagonal entry at \(2, 2\)",
    ),
    (
        "upper_triangle",
        "%%MatrixMarket matrix coordinate real symmetric\n3 3 2\n1 1 1\n1 3 1\n",
        r":4: entry \(1, 3\) lies in the upper triangle",
    ),
    (
        "hermitian_diagonal",
        "%%MatrixMarket matrix coordinate complex hermitian\n2 2 1\n1 1 1 1\n",
        r":3: hermitian matrix has a diagonal entry with a nonzero imaginary part",
    ),
    ("truncated", COO + "2 2 3\n1 1 1\n2 2 1\n", r":4: file ends after 2 of the 3 entries .*truncated"),
    ("extra", COO + "2 2 1\n1 1 1\n2 2 1\n", r":4: more entries than the 1 declared"),
    (
        "array_truncated",
        "%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n",
        r":5: file ends after 3 of the 4 values",
    ),
    (
        "array_extra",
        "%%MatrixMarket matrix array real general\n1 1\n1\n2\n",
        r":4: more values than the 1 expected",
    ),
]


@pytest.mark.parametrize("name,text,message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_file_raises(tmp_path, name, text, message):
    path = write_text(tmp_path / f"{name}.mtx", text)
    with pytest.raises(sla.MatrixMarketError, match=message) as info:
        sla.load_mtx(path)
    assert f"{name}.mtx" in str(info.value)  # the message names the file
    assert isinstance(info.value, ValueError)


def test_nonexistent_path(tmp_path):
    missing = tmp_path / "missing.mtx"
    with pytest.raises(sla.MatrixMarketError, match=r"missing\.mtx: cannot open the Matrix Market file"):
        sla.load_mtx(missing)


def test_bad_path_type():
    with pytest.raises(ValueError, match="path: expected a str, bytes or os.PathLike"):
        sla.load_mtx(42)


# --- save_mtx argument checks ------------------------------------------------------------------------


def test_save_rejects_bad_arguments(tmp_path):
    p = tmp_path / "x.mtx"
    general = sla.SparseTensor(
        torch.tensor([1.0, 2.0], dtype=F64), torch.tensor([0, 0]), torch.tensor([0, 1]), (2, 2)
    )
    with pytest.raises(ValueError, match=r"A: symmetry='symmetric' but A is not symmetric"):
        sla.save_mtx(p, general, symmetry="symmetric")
    with pytest.raises(ValueError, match=r"A: symmetry='skew-symmetric' but A is not skew-symmetric"):
        sla.save_mtx(p, general, symmetry="skew-symmetric")
    with pytest.raises(ValueError, match=r"A: symmetry='symmetric' but A is not symmetric: its pattern"):
        sla.save_mtx(p, general, field="pattern", symmetry="symmetric")
    herm_like = sla.SparseTensor.from_dense(torch.tensor([[1, 1j], [1j, 1]], dtype=C128))
    with pytest.raises(ValueError, match=r"A: symmetry='hermitian' but A is not hermitian"):
        sla.save_mtx(p, herm_like, symmetry="hermitian")
    with pytest.raises(ValueError, match=r"field: A has complex dtype .* Use field='complex'"):
        sla.save_mtx(p, herm_like, field="real")
    with pytest.raises(ValueError, match=r"symmetry='hermitian' requires field='complex'"):
        sla.save_mtx(p, general, symmetry="hermitian")
    with pytest.raises(ValueError, match=r"field: expected one of"):
        sla.save_mtx(p, general, field="float")
    with pytest.raises(ValueError, match=r"symmetry: expected one of"):
        sla.save_mtx(p, general, symmetry="lower")
    rect = sla.SparseTensor(torch.tensor([1.0], dtype=F64), torch.tensor([0]), torch.tensor([0]), (2, 3))
    with pytest.raises(ValueError, match=r"A: symmetry='symmetric' needs a square matrix"):
        sla.save_mtx(p, rect, symmetry="symmetric")
    half = sla.SparseTensor(torch.tensor([1.5], dtype=F64), torch.tensor([0]), torch.tensor([0]), (2, 2))
    with pytest.raises(ValueError, match=r"not an integer"):
        sla.save_mtx(p, half, field="integer")
    batched = sla.SparseTensor(
        torch.ones(3, 2, dtype=F64), torch.tensor([0, 1]), torch.tensor([0, 1]), (3, 2, 2)
    )
    with pytest.raises(ValueError, match=r"A: save_mtx writes one matrix; got a batch"):
        sla.save_mtx(p, batched)
    with pytest.raises(ValueError, match=r"A: expected a torch_sla.SparseTensor"):
        sla.save_mtx(p, torch.eye(2))
    assert not p.exists()


def test_save_unwritable_path(tmp_path):
    A = sla.SparseTensor(torch.tensor([1.0], dtype=F64), torch.tensor([0]), torch.tensor([0]), (1, 1))
    with pytest.raises(sla.MatrixMarketError, match="cannot open the file for writing"):
        sla.save_mtx(tmp_path / "no_such_dir" / "a.mtx", A)


# --- property test -------------------------------------------------------------------------------------


@st.composite
def matrices(draw):
    symmetry = draw(st.sampled_from(["general", "symmetric", "skew-symmetric", "hermitian"]))
    n_rows = draw(st.integers(0, 6))
    n_cols = n_rows if symmetry != "general" else draw(st.integers(0, 6))
    is_complex = symmetry == "hermitian" or draw(st.booleans())
    count = n_rows * n_cols
    floats = st.one_of(st.floats(-1e300, 1e300, allow_nan=False), st.integers(-5, 5).map(float))
    re = draw(st.lists(floats, min_size=count, max_size=count))
    im = draw(st.lists(floats, min_size=count, max_size=count)) if is_complex else None
    mask = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    d = torch.tensor(re, dtype=F64).reshape(n_rows, n_cols)
    if is_complex:
        d = torch.complex(d, torch.tensor(im, dtype=F64).reshape(n_rows, n_cols))
    d = d * torch.tensor(mask, dtype=torch.bool).reshape(n_rows, n_cols)
    if symmetry == "symmetric":
        d = d + d.T
    elif symmetry == "skew-symmetric":
        d = d - d.T
    elif symmetry == "hermitian":
        d = d + d.mH
    return d, symmetry


@settings(max_examples=60, deadline=None)
@given(matrices())
def test_property_round_trip(case):
    dense, symmetry = case
    A = sla.SparseTensor.from_dense(dense)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.mtx")
        sla.save_mtx(path, A, symmetry=symmetry)
        B = sla.load_mtx(path)
    assert B.shape == tuple(dense.shape)
    assert B.dtype == dense.dtype
    assert torch.equal(B.to_dense(), dense)
