"""Matrix Market (``.mtx``) files: :func:`load_mtx` and :func:`save_mtx`.

Parsing and writing happen in the C++ core (``torch_sla._C.mtx_read`` / ``mtx_write``); this module
converts between its COO arrays and :class:`SparseTensor` and checks the arguments.
"""

from __future__ import annotations

import os
from typing import Union

import torch

from . import _C
from ._checks import fs_path
from ._memory import check_budget
from ._sparse_tensor import SparseTensor
from .errors import InvalidArgumentError, MatrixMarketError

__all__ = ["load_mtx", "save_mtx"]

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

_FIELDS = ("real", "integer", "complex", "pattern")
_SYMMETRIES = ("general", "symmetric", "skew-symmetric", "hermitian")
_VALUE_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)
_INDEX_DTYPES = (torch.int32, torch.int64)


def load_mtx(
    path: PathLike,
    *,
    dtype: torch.dtype | None = None,
    index_dtype: torch.dtype = torch.int64,
) -> SparseTensor:
    """Read a Matrix Market file into a :class:`SparseTensor`.

    Both the ``coordinate`` (sparse) and ``array`` (dense) formats are read, with any of the fields
    ``real``, ``integer``, ``complex`` or ``pattern`` and any of the symmetries ``general``,
    ``symmetric``, ``skew-symmetric`` or ``hermitian``. Files that store one triangle are expanded: the
    returned matrix holds both triangles. An ``array`` file gives a matrix that stores every position,
    zeros included. Duplicate coordinate entries are summed.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        The file to read (a name that is not valid UTF-8 may be given as bytes).
    dtype : torch.dtype, optional
        Value dtype of the result: float32, float64, complex64 or complex128. Defaults to float64 for
        real, integer and pattern files (pattern entries are 1.0) and complex128 for complex files. A
        complex file cannot be loaded with a real dtype.
    index_dtype : torch.dtype, optional
        int64 (default) or int32: the dtype of the COO indices handed to :class:`SparseTensor`.

    Returns
    -------
    SparseTensor
        The matrix, of shape ``(n_rows, n_cols)``, on the CPU.

    Raises
    ------
    MatrixMarketError
        The file cannot be read or is malformed; the message names the file and the line.
    InvalidArgumentError
        ``dtype`` or ``index_dtype`` is not supported, or does not fit the file.

    Examples
    --------
    >>> A = torch_sla.load_mtx("bcsstk01.mtx")  # doctest: +SKIP
    >>> x = A.solve(b)  # doctest: +SKIP
    """
    p = fs_path(path)
    shown = os.fsdecode(p)
    if dtype is not None and dtype not in _VALUE_DTYPES:
        raise InvalidArgumentError(
            f"dtype: {dtype} is not supported; use float32, float64, complex64 or complex128"
        )
    if index_dtype not in _INDEX_DTYPES:
        raise InvalidArgumentError(f"index_dtype: expected torch.int32 or torch.int64, got {index_dtype}")
    data = _C.mtx_read(p)
    n_rows, n_cols = int(data["n_rows"]), int(data["n_cols"])
    check_budget(
        24.0 * (n_rows + 1),
        f"{shown}: the header declares a {n_rows} x {n_cols} matrix; its CSR row pointers",
        MatrixMarketError,
    )
    is_complex = data["field"] == "complex"
    if dtype is None:
        dtype = torch.complex128 if is_complex else torch.float64
    elif is_complex and not dtype.is_complex:
        raise InvalidArgumentError(
            f"dtype: {shown} holds complex values; pass a complex dtype (complex64 or complex128), not {dtype}"
        )
    if index_dtype == torch.int32 and max(n_rows, n_cols) > torch.iinfo(torch.int32).max:
        raise InvalidArgumentError(
            f"index_dtype: int32 cannot index a matrix of shape ({n_rows}, {n_cols}); use torch.int64"
        )
    values = torch.from_numpy(data["values"]).to(dtype)
    row = torch.from_numpy(data["row"]).to(index_dtype)
    col = torch.from_numpy(data["col"]).to(index_dtype)
    return SparseTensor(values, row, col, (n_rows, n_cols))


def _transpose_matches(A: SparseTensor, sign: int, conj: bool, values: bool) -> bool:
    """Whether A equals ``sign * A^T`` (``A^H`` when ``conj``); with ``values=False`` only the pattern."""
    v, r, c = A.to_coo()
    t = A.T()
    tv, tr, tc = t.to_coo()
    if not (torch.equal(r, tr) and torch.equal(c, tc)):
        return False
    if not values:
        return True
    tv = tv.detach()
    if conj and tv.is_complex():
        tv = tv.conj()
    if sign < 0:
        tv = -tv
    return bool(torch.equal(v.detach().resolve_conj(), tv.resolve_conj()))


def save_mtx(
    path: PathLike,
    A: SparseTensor,
    *,
    field: str | None = None,
    symmetry: str = "general",
    comment: str = "",
) -> None:
    """Write a :class:`SparseTensor` to a Matrix Market file in ``coordinate`` format.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        The file to write (overwritten if it exists).
    A : SparseTensor
        An unbatched matrix of shape ``(n_rows, n_cols)``; every stored entry is written, explicit
        zeros included. Values are detached and copied to the CPU.
    field : {'real', 'integer', 'complex', 'pattern'}, optional
        Defaults to ``'complex'`` for complex dtypes and ``'real'`` otherwise. ``'integer'`` requires
        integral values; ``'pattern'`` writes the indices only. A complex matrix can only be written
        with the ``'complex'`` field.
    symmetry : {'general', 'symmetric', 'skew-symmetric', 'hermitian'}, optional
        With a value other than ``'general'``, ``A`` must be square and have that symmetry exactly
        (pattern and values; for the pattern field the pattern only), and only its lower triangle is
        written (its strict lower triangle for ``'skew-symmetric'``). ``'hermitian'`` needs the
        ``'complex'`` field.
    comment : str, optional
        Text written after the banner; each of its lines becomes a line starting with ``%``.

    Raises
    ------
    InvalidArgumentError
        ``A`` is batched or lacks the requested symmetry, or ``field``/``symmetry`` is unknown or does
        not fit ``A``.
    MatrixMarketError
        The file cannot be written.

    Examples
    --------
    >>> torch_sla.save_mtx("A.mtx", A, symmetry="symmetric", comment="2-D Poisson")  # doctest: +SKIP
    """
    p = fs_path(path)
    if not isinstance(A, SparseTensor):
        raise InvalidArgumentError(f"A: expected a torch_sla.SparseTensor, got {type(A).__name__}")
    if len(A.shape) != 2:
        raise InvalidArgumentError(
            f"A: save_mtx writes one matrix; got a batch of shape {tuple(A.shape)}. "
            "Save each member of the batch separately"
        )
    if not isinstance(comment, str):
        raise InvalidArgumentError(f"comment: expected a str, got {type(comment).__name__}")
    complex_values = A.dtype.is_complex
    if field is None:
        field = "complex" if complex_values else "real"
    if field not in _FIELDS:
        raise InvalidArgumentError(f"field: expected one of {', '.join(map(repr, _FIELDS))}, got {field!r}")
    if symmetry not in _SYMMETRIES:
        raise InvalidArgumentError(
            f"symmetry: expected one of {', '.join(map(repr, _SYMMETRIES))}, got {symmetry!r}"
        )
    if complex_values and field in ("real", "integer"):
        raise InvalidArgumentError(
            f"field: A has complex dtype {A.dtype}; field={field!r} would drop the imaginary parts. "
            "Use field='complex'"
        )
    if symmetry == "hermitian" and field != "complex":
        raise InvalidArgumentError(f"field: symmetry='hermitian' requires field='complex', got {field!r}")
    if symmetry == "skew-symmetric" and field == "pattern":
        raise InvalidArgumentError("field: a 'pattern' file cannot be skew-symmetric")
    n_rows, n_cols = A.shape

    values, row, col = A.to_coo()
    if symmetry != "general":
        if n_rows != n_cols:
            raise InvalidArgumentError(
                f"A: symmetry={symmetry!r} needs a square matrix, got shape {(n_rows, n_cols)}"
            )
        check_values = field != "pattern"
        if symmetry == "symmetric":
            ok = _transpose_matches(A, 1, False, check_values)
        elif symmetry == "hermitian":
            ok = _transpose_matches(A, 1, True, check_values)
        else:
            ok = _transpose_matches(A, -1, False, check_values)
        if not ok:
            what = "pattern" if not check_values else "matrix"
            relation = {"symmetric": "A^T", "hermitian": "A^H", "skew-symmetric": "-A^T"}[symmetry]
            raise InvalidArgumentError(
                f"A: symmetry={symmetry!r} but A is not {symmetry}: its {what} differs from {relation} "
                "(stored entries must mirror exactly). Use symmetry='general'"
            )
        keep = row > col if symmetry == "skew-symmetric" else row >= col
        values, row, col = values[keep], row[keep], col[keep]

    row_np = row.detach().to("cpu", torch.int64).contiguous().numpy()
    col_np = col.detach().to("cpu", torch.int64).contiguous().numpy()
    if field == "pattern":
        values_np = None
    else:
        target = torch.complex128 if field == "complex" else torch.float64
        values_np = values.detach().to("cpu", target).resolve_conj().contiguous().numpy()
    _C.mtx_write(p, n_rows, n_cols, row_np, col_np, values_np, field, symmetry, comment)
