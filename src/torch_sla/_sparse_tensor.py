"""SparseTensor: a CSR matrix (optionally a batch of matrices sharing one pattern) for PyTorch."""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ._checks import as_shape, is_wrapped, plain
from ._checks import check_finite as check_finite_values
from ._operator import InnerProducts
from ._pattern import _INDEX_DTYPES, Pattern
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    import scipy.sparse

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def _check_values_dtype(values: torch.Tensor, what: str = "values") -> None:
    if values.dtype not in SUPPORTED_DTYPES:
        raise InvalidArgumentError(
            f"{what}: dtype {values.dtype} is not supported; use float32, float64, complex64 or complex128"
        )


def values_version(t: torch.Tensor) -> int:
    """Version counter of ``t`` (bumped by every in-place change); -1 for tensors that keep none
    (inference-mode tensors)."""
    try:
        return t._version
    except RuntimeError:
        return -1


class SparseTensor(InnerProducts):
    """A sparse matrix in CSR form whose values may carry leading batch dimensions.

    ``SparseTensor(values, row_indices, col_indices, shape)`` builds it from COO triplets, the same
    signature as torch-sla. Duplicate entries are summed (as torch and SciPy do). The COO -> CSR
    reordering is recorded by autograd, so gradients with respect to the ``values`` you passed come back
    in your order.

    Parameters
    ----------
    values : Tensor, shape ``(*batch, nnz)``
        Entry values (float32, float64, complex64 or complex128). Leading dimensions form a batch of
        matrices that share one sparsity pattern.
    row_indices, col_indices : Tensor, shape ``(nnz,)``
        int32 or int64 indices, 0-based.
    shape : tuple
        ``(n_rows, n_cols)`` or ``(*batch, n_rows, n_cols)``.

    Attributes
    ----------
    values : Tensor ``(*batch, nnz_csr)`` in CSR order (after summing duplicates).
    crow_indices, col_indices, row_indices : int64 CSR index tensors (``row_indices`` expanded per entry).
    shape, batch_shape, dtype, device.

    ``solve`` and ``factorize`` (see :func:`torch_sla.solve`, :func:`torch_sla.factorize`) are attached by
    ``torch_sla._solve``, the entry-point module, so that this module stays below the solvers; ``eigs``
    (see :func:`torch_sla.eigs`) likewise by ``torch_sla._eigs``. An
    unbatched SparseTensor implements the :class:`~torch_sla._operator.Operator` protocol.
    """

    __slots__ = ("values", "_pattern", "_batch_shape", "_sym_cache", "__weakref__")

    def __init__(
        self,
        values: torch.Tensor,
        row_indices: torch.Tensor,
        col_indices: torch.Tensor,
        shape: Sequence[int],
    ):
        values = torch.as_tensor(values)
        row_indices = torch.as_tensor(row_indices)
        col_indices = torch.as_tensor(col_indices)
        _check_values_dtype(values)
        for name, idx in (("row_indices", row_indices), ("col_indices", col_indices)):
            if idx.dtype not in _INDEX_DTYPES:
                raise InvalidArgumentError(f"{name}: dtype must be int32 or int64, got {idx.dtype}")
            if idx.dim() != 1:
                raise InvalidArgumentError(f"{name}: expected a 1-D tensor, got shape {tuple(idx.shape)}")
            if idx.device != values.device:
                raise InvalidArgumentError(
                    f"{name}: on device {idx.device} but values are on {values.device}"
                )
        nnz = row_indices.numel()
        if col_indices.numel() != nnz:
            raise InvalidArgumentError(
                f"col_indices: has {col_indices.numel()} entries but row_indices has {nnz}"
            )
        if values.dim() == 0 or values.shape[-1] != nnz:
            raise InvalidArgumentError(
                f"values: expected shape (*batch, {nnz}) to match the {nnz} indices, got {tuple(values.shape)}"
            )
        shape = as_shape(shape)
        batch = tuple(values.shape[:-1])
        if len(shape) == 2:
            n_rows, n_cols = shape
        elif len(shape) >= 2 and shape[:-2] == batch:
            n_rows, n_cols = shape[-2:]
        else:
            raise InvalidArgumentError(
                f"shape: expected (n_rows, n_cols) or (*batch, n_rows, n_cols) with batch {batch}, got {shape}"
            )
        if nnz:
            # Indices already in CSR order (the common case of edge lists): one pass of the core checks the
            # range, finds the row pointers and keeps the core's copy of the pattern.
            fast = Pattern.from_ordered_coo(row_indices, col_indices, n_rows, n_cols)
            if fast is not None:
                self._init(values, fast)
                return
            for name, idx, bound in (
                ("row_indices", row_indices, n_rows),
                ("col_indices", col_indices, n_cols),
            ):
                lo, hi = int(idx.min()), int(idx.max())
                if lo < 0 or hi >= bound:
                    bad = lo if lo < 0 else hi
                    raise InvalidArgumentError(
                        f"{name}: index {bad} is out of range for a matrix of shape ({n_rows}, {n_cols})"
                    )
        pattern, where, dup = Pattern.from_coo(row_indices, col_indices, n_rows, n_cols)
        if where is None:
            csr_values = values
        elif dup:
            csr_values = values.new_zeros(batch + (pattern.nnz,)).index_add(-1, where, values)
        else:
            perm = torch.empty_like(where)
            perm[where] = torch.arange(nnz, device=where.device)
            csr_values = values[..., perm]
        self._init(csr_values, pattern)

    def _init(self, values: torch.Tensor, pattern: Pattern) -> None:
        self.values = values
        self._pattern = pattern
        self._batch_shape = tuple(values.shape[:-1])
        self._sym_cache: dict[str, Any] = {}

    @classmethod
    def _from_pattern(cls, values: torch.Tensor, pattern: Pattern) -> SparseTensor:
        obj = cls.__new__(cls)
        obj._init(values, pattern)
        return obj

    # -- factories ---------------------------------------------------------------------------------
    @classmethod
    def from_csr(
        cls,
        values: torch.Tensor,
        crow_indices: torch.Tensor,
        col_indices: torch.Tensor,
        shape: Sequence[int],
    ) -> SparseTensor:
        """Build from CSR arrays (checked: monotone ``crow_indices``, sorted unique columns per row)."""
        values = torch.as_tensor(values)
        _check_values_dtype(values)
        shape = as_shape(shape)
        if len(shape) < 2:
            raise InvalidArgumentError(
                f"shape: expected (n_rows, n_cols) or (*batch, n_rows, n_cols), got {shape}"
            )
        n_rows, n_cols = shape[-2:]
        pattern = Pattern.from_csr(
            torch.as_tensor(crow_indices), torch.as_tensor(col_indices), n_rows, n_cols
        )
        if values.dim() == 0 or values.shape[-1] != pattern.nnz:
            raise InvalidArgumentError(
                f"values: expected shape (*batch, {pattern.nnz}), got {tuple(values.shape)}"
            )
        return cls._from_pattern(values, pattern.to(values.device))

    @classmethod
    def from_dense(cls, dense: torch.Tensor) -> SparseTensor:
        """Store the nonzeros of a dense ``(n_rows, n_cols)`` or ``(*batch, n_rows, n_cols)`` tensor.

        For a batch, the pattern is the union of the nonzeros over the batch. Differentiable.
        """
        dense = torch.as_tensor(dense)
        if dense.dim() < 2:
            raise InvalidArgumentError(
                f"dense: expected at least 2 dimensions, got shape {tuple(dense.shape)}"
            )
        _check_values_dtype(dense, "dense")
        mask = dense != 0
        if dense.dim() > 2:
            mask = mask.reshape(-1, *dense.shape[-2:]).any(0)
        row, col = torch.nonzero(mask, as_tuple=True)
        values = dense[..., row, col]
        n_rows, n_cols = dense.shape[-2:]
        pattern = Pattern(
            torch.cat([row.new_zeros(1), torch.cumsum(torch.bincount(row, minlength=n_rows), 0)]),
            col.contiguous(),
            n_rows,
            n_cols,
        )
        return cls._from_pattern(values, pattern)

    @classmethod
    def from_torch_sparse(cls, t: torch.Tensor) -> SparseTensor:
        """Build from a ``torch.sparse_coo`` or ``torch.sparse_csr`` tensor (2-D, or batched CSR)."""
        if t.layout == torch.sparse_coo:
            if t.sparse_dim() != 2 or t.dense_dim() != 0:
                raise InvalidArgumentError(
                    f"t: expected a 2-D sparse COO tensor without dense dims, got sparse_dim={t.sparse_dim()}"
                )
            t = t.coalesce()
            idx = t.indices()
            return cls(t.values(), idx[0], idx[1], t.shape)
        if t.layout == torch.sparse_csr:
            return cls.from_csr(t.values(), t.crow_indices(), t.col_indices(), t.shape)
        raise InvalidArgumentError(f"t: expected a sparse COO or CSR tensor, got layout {t.layout}")

    @classmethod
    def from_scipy(cls, m: scipy.sparse.spmatrix, dtype: torch.dtype | None = None) -> SparseTensor:
        """Build from any ``scipy.sparse`` matrix or array (converted to CSR first)."""
        import numpy as np
        import scipy.sparse as sp

        if not sp.issparse(m):
            raise InvalidArgumentError(f"m: expected a scipy.sparse matrix, got {type(m).__name__}")
        csr = sp.csr_matrix(m)
        csr.sum_duplicates()
        csr.sort_indices()
        data = csr.data
        if data.dtype.kind in "biu":
            data = data.astype(np.float64)
        values = torch.from_numpy(np.ascontiguousarray(data))
        if dtype is not None:
            values = values.to(dtype)
        return cls.from_csr(
            values,
            torch.from_numpy(csr.indptr.astype(np.int64)),
            torch.from_numpy(csr.indices.astype(np.int64)),
            csr.shape,
        )

    # -- properties --------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._batch_shape + (self._pattern.n_rows, self._pattern.n_cols)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self._batch_shape

    @property
    def batch_size(self) -> int:
        return math.prod(self._batch_shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    @property
    def nnz(self) -> int:
        return self._pattern.nnz

    @property
    def crow_indices(self) -> torch.Tensor:
        return self._pattern.crow

    @property
    def col_indices(self) -> torch.Tensor:
        return self._pattern.col

    @property
    def row_indices(self) -> torch.Tensor:
        return self._pattern.row

    @property
    def requires_grad(self) -> bool:
        return self.values.requires_grad

    @property
    def pattern(self) -> Pattern:
        """The shared sparsity pattern (immutable)."""
        return self._pattern

    def __repr__(self) -> str:
        return (
            f"SparseTensor(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype}, device={self.device}"
            + (", requires_grad=True" if self.requires_grad else "")
            + ")"
        )

    # -- conversions -------------------------------------------------------------------------------
    def with_values(self, values: torch.Tensor) -> SparseTensor:
        """A matrix with the same pattern (and its cached analyses) and new CSR-ordered values."""
        values = torch.as_tensor(values, device=self.device)
        _check_values_dtype(values)
        if values.dim() == 0 or values.shape[-1] != self.nnz:
            raise InvalidArgumentError(
                f"values: expected shape (*batch, {self.nnz}), got {tuple(values.shape)}"
            )
        return SparseTensor._from_pattern(values, self._pattern)

    def to_coo(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(values, row_indices, col_indices)`` in CSR (row-major) order."""
        return self.values, self._pattern.row, self._pattern.col

    def to_dense(self) -> torch.Tensor:
        """Dense ``(*batch, n_rows, n_cols)`` tensor (differentiable)."""
        p = self._pattern
        out = self.values.new_zeros(self._batch_shape + (p.n_rows * p.n_cols,))
        # CSR positions are unique: a plain assignment, exact for every value (index_add would compute
        # 0 + 1 * v in complex arithmetic, turning 1 + inf j into nan + inf j).
        out[..., p.row * p.n_cols + p.col] = self.values
        return out.reshape(self.shape)

    def to_torch_sparse(self, layout: torch.layout = torch.sparse_csr) -> torch.Tensor:
        """A ``torch.sparse_csr`` (default) or ``torch.sparse_coo`` tensor with the same entries."""
        p = self._pattern
        if layout == torch.sparse_csr:
            if self._batch_shape:
                b = self.batch_size
                crow = p.crow.expand(b, -1).reshape(self._batch_shape + (-1,))
                col = p.col.expand(b, -1).reshape(self._batch_shape + (-1,))
                return torch.sparse_csr_tensor(crow, col, self.values, self.shape)
            return torch.sparse_csr_tensor(p.crow, p.col, self.values, self.shape)
        if layout == torch.sparse_coo:
            if self._batch_shape:
                raise InvalidArgumentError(
                    "layout: sparse_coo export of a batched SparseTensor is not supported"
                )
            idx = torch.stack([p.row, p.col])
            return torch.sparse_coo_tensor(idx, self.values, self.shape, is_coalesced=True)
        raise InvalidArgumentError(f"layout: expected torch.sparse_csr or torch.sparse_coo, got {layout}")

    def to_scipy(self) -> scipy.sparse.csr_matrix:
        """A ``scipy.sparse.csr_matrix`` copy (unbatched matrices only; values are detached)."""
        import scipy.sparse as sp

        if self._batch_shape:
            raise InvalidArgumentError(
                f"A: to_scipy needs an unbatched matrix, got batch shape {self._batch_shape}"
            )
        p = self._pattern
        return sp.csr_matrix(
            (
                self.values.detach().resolve_conj().resolve_neg().cpu().numpy(),
                p.col.cpu().numpy(),
                p.crow.cpu().numpy(),
            ),
            shape=(p.n_rows, p.n_cols),
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> SparseTensor:
        """Move to ``device`` and/or cast to ``dtype`` (differentiable)."""
        if dtype is not None and dtype not in SUPPORTED_DTYPES:
            raise InvalidArgumentError(f"dtype: {dtype} is not supported")
        values = self.values.to(
            device=device if device is not None else self.device, dtype=dtype or self.dtype
        )
        return SparseTensor._from_pattern(values, self._pattern.to(values.device))

    def detach(self) -> SparseTensor:
        return SparseTensor._from_pattern(self.values.detach(), self._pattern)

    def requires_grad_(self, flag: bool = True) -> SparseTensor:
        self.values.requires_grad_(flag)
        return self

    def T(self) -> SparseTensor:  # noqa: N802  (torch-sla's name)
        """Transpose (differentiable); batch dimensions are kept."""
        pt, perm = self._pattern.transpose()
        return SparseTensor._from_pattern(self.values[..., perm], pt)

    def H(self) -> SparseTensor:  # noqa: N802
        """Conjugate transpose (the transpose for real matrices)."""
        t = self.T()
        return SparseTensor._from_pattern(t.values.conj() if t.values.is_complex() else t.values, t._pattern)

    # -- structure ---------------------------------------------------------------------------------
    def values_cached(self, key, compute: Callable[[], Any]) -> Any:
        """``compute()``, cached on this matrix until its values change (in place or by assignment).

        An entry remembers the values tensor by a weak reference, never by ``id()``: after an assignment
        the old tensor may be freed and a new one created at the same address with the same version
        (0), and an id-keyed entry would then be taken for the new values' (a stale plan or check).
        Inference-mode tensors keep no version counter: nothing is cached for them."""
        values = self.values
        hit = self._sym_cache.get(key)
        if hit is not None and hit[0]() is values and hit[1] == values_version(values):
            return hit[2]
        result = compute()
        version = values_version(values)
        if version >= 0:
            self._sym_cache[key] = (weakref.ref(values), version, result)
        return result

    def asymmetry(self, hermitian: bool = True) -> float:
        """``max |A - A^H|`` (``A^T`` with ``hermitian=False``) over every batch member, relative to
        ``max |A|``: 0.0 for an exactly symmetric/Hermitian matrix, ``inf`` for a non-square one, NaN when
        the values hold NaN. Entries missing from the pattern count as zeros, so a pattern need not be
        symmetric. Cached until ``values`` changes (in place or by assignment)."""
        key = "herm" if hermitian and self.dtype.is_complex else "sym"
        return self.values_cached(key, lambda: self._asymmetry(key == "herm"))

    def _asymmetry(self, hermitian: bool) -> float:
        p = self._pattern
        v = self.values.detach()
        if p.n_rows != p.n_cols:
            result = math.inf
        elif v.numel() == 0:
            result = 0.0
        else:
            pt, perm = p.transpose()
            vt = v[..., perm]
            if hermitian:
                vt = vt.conj()
            if p.is_structurally_symmetric:
                diff = v - vt
            else:  # A - A^T on the union of both patterns
                q, where, _ = Pattern.from_coo(
                    torch.cat([p.row, pt.row]), torch.cat([p.col, pt.col]), p.n_rows, p.n_cols
                )
                both = torch.cat([v, -vt], -1)
                diff = (
                    both
                    if where is None
                    else both.new_zeros(v.shape[:-1] + (q.nnz,)).index_add(-1, where, both)
                )
            worst, scale = float(diff.abs().amax()), float(v.abs().amax())
            if math.isnan(worst) or math.isnan(scale):
                result = math.nan
            else:
                result = worst / scale if scale > 0 else (0.0 if worst == 0 else math.inf)
        return result

    def is_symmetric(self) -> bool:
        """Exactly equal to its transpose (every batch member). Cached until ``values`` changes."""
        return self.asymmetry(hermitian=False) == 0.0

    def is_hermitian(self) -> bool:
        """Exactly equal to its conjugate transpose (``is_symmetric`` for real matrices). Cached."""
        return self.asymmetry(hermitian=True) == 0.0

    def has_positive_real_diagonal(self) -> bool:
        """Every diagonal entry is stored, real and > 0 (for every batch member)."""
        pos = self._pattern.diag_positions
        if pos is None or self._pattern.n_rows != self._pattern.n_cols:
            return False
        d = self.values.detach()[..., pos]
        if d.is_complex():
            return bool((d.imag == 0).all() and (d.real > 0).all())
        return bool((d > 0).all())

    # -- algebra -----------------------------------------------------------------------------------
    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``A @ x`` for ``x`` of shape ``(n,)``, ``(n, k)``, or with the batch dims in front.

        Differentiable with respect to the values and ``x``.
        """
        x = torch.as_tensor(x)
        p = self._pattern
        xb, restore = normalize_rhs(self, x, name="x", n=p.n_cols)
        prod = self.values.reshape(-1, p.nnz)[:, :, None] * xb[:, p.col, :]
        y = prod.new_zeros((prod.shape[0], p.n_rows, prod.shape[2])).index_add(1, p.row, prod)
        return restore(y)

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return self.matmul(x)

    # -- the operator protocol (unbatched matrices; see torch_sla._operator) ------------------------------
    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``A x`` for an ``(n_cols, k)`` block (differentiable)."""
        if self._batch_shape:
            raise InvalidArgumentError(
                f"A: matvec needs an unbatched matrix, got batch shape {self._batch_shape}"
            )
        return self.matmul(x)

    def rmatvec(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H x`` for an ``(n_rows, k)`` block (differentiable)."""
        return self.H().matvec(x)


# -- conversions and right-hand sides, shared by every entry point ----------------------------------------
def as_sparse_tensor(A) -> SparseTensor:
    """Convert a SparseTensor, torch sparse (COO/CSR) tensor, scipy.sparse matrix or
    ``(values, row, col, shape)`` tuple to a :class:`SparseTensor`."""
    if isinstance(A, SparseTensor):
        return A
    if isinstance(A, torch.Tensor):
        if A.layout in (torch.sparse_coo, torch.sparse_csr):
            return SparseTensor.from_torch_sparse(A)
        raise InvalidArgumentError(
            f"A: a dense tensor was given (layout {A.layout}); use SparseTensor.from_dense(A) if that is intended"
        )
    if isinstance(A, tuple) and len(A) == 4:
        return SparseTensor(*A)
    if type(A).__module__.startswith("scipy.sparse"):
        return SparseTensor.from_scipy(A)
    raise InvalidArgumentError(
        f"A: expected a SparseTensor, torch sparse tensor, scipy.sparse matrix or (values, row, col, shape), "
        f"got {type(A).__name__}"
    )


def check_values_finite(A: SparseTensor) -> None:
    """A's values checked for NaN/Inf, once per values (the verdict is cached until they change)."""
    if is_wrapped(A.values):
        check_finite_values(plain(A.values).detach(), "A.values")
    else:
        A.values_cached("finite", lambda: check_finite_values(A.values.detach(), "A.values"))


def check_rhs(A: SparseTensor, b, check_finite: bool) -> torch.Tensor:
    """``b`` as a tensor on A's device with A's dtype (else a clear error), checked for NaN/Inf."""
    if not isinstance(b, torch.Tensor):
        b = torch.as_tensor(b)
    values = A.values
    if b.dtype != values.dtype or b.device != values.device:  # (one test on the common path)
        if b.device != values.device:
            raise InvalidArgumentError(f"b: on device {b.device} but A is on {values.device}")
        raise InvalidArgumentError(
            f"b: dtype {b.dtype} does not match A's dtype {values.dtype}; convert one of them"
        )
    if check_finite:
        check_finite_values(plain(b) if is_wrapped(b) else b, "b")
    return b


def _restore_vector(y: torch.Tensor) -> torch.Tensor:
    return y.reshape(y.shape[-2])


def normalize_rhs(
    A: SparseTensor, b: torch.Tensor, *, name: str, n: int
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """Bring ``b`` to a (B, n, k) stack matching A's flattened batch; return it and a function that puts
    a (B, m, k) result back into b's layout (with m the result's row count)."""
    batch = A.batch_shape
    if not batch and b.dim() == 1 and b.shape[0] == n:  # the common case: one matrix, one vector
        return b.view(1, n, 1), _restore_vector
    nb = len(batch)
    shape = tuple(b.shape)
    if b.dim() == nb + 1 and shape[:nb] == batch and shape[-1] == n:
        vec, bshape = True, batch
    elif b.dim() == nb + 2 and shape[:nb] == batch and shape[-2] == n:
        vec, bshape = False, batch
    elif b.dim() == 1 and shape[0] == n:
        vec, bshape = True, ()
    elif b.dim() == 2 and shape[0] == n:
        vec, bshape = False, ()
    else:
        expected = f"({n},) or ({n}, k)"
        if nb:
            expected += f" or {batch + (n,)} or {batch + (n, 'k')}"
        raise InvalidArgumentError(f"{name}: expected shape {expected} for A of shape {A.shape}, got {shape}")
    bb = b.unsqueeze(-1) if vec else b
    k = bb.shape[-1]
    B = math.prod(batch)
    if bshape != batch:
        bb = bb.expand(batch + (n, k))
    bb = bb.reshape(B, n, k)

    def restore(y: torch.Tensor) -> torch.Tensor:
        y = y.reshape(batch + tuple(y.shape[-2:]))
        return y.squeeze(-1) if vec else y

    return bb, restore


def shifted(A: SparseTensor, sigma, M: SparseTensor | None = None) -> SparseTensor:
    """``A - sigma * M`` (``M`` the identity when None) on the union of both patterns and the diagonal, for
    shift-invert: every diagonal entry is stored, so the result can be factorized whatever A's pattern.
    Differentiable with respect to A's and M's values (sigma is a number)."""
    n = A.shape[-1]
    if A.shape[-2] != n:
        raise InvalidArgumentError(f"A: expected a square matrix, got shape {A.shape}")
    if isinstance(sigma, torch.Tensor):
        if sigma.numel() != 1:
            raise InvalidArgumentError(
                f"sigma: expected a number, got a tensor of shape {tuple(sigma.shape)}"
            )
        sigma = sigma.item()
    if not isinstance(sigma, (int, float, complex)) or isinstance(sigma, bool):
        raise InvalidArgumentError(f"sigma: expected a number, got {type(sigma).__name__}")
    if isinstance(sigma, complex) and not A.dtype.is_complex:
        raise InvalidArgumentError(f"sigma: complex shift {sigma} for a real matrix ({A.dtype})")
    if not (abs(sigma) < math.inf):
        raise InvalidArgumentError(f"sigma: must be finite, got {sigma}")
    batch = A.batch_shape
    if M is not None and (M.shape[-2:] != (n, n) or M.dtype != A.dtype or M.device != A.device):
        raise InvalidArgumentError(
            f"M: expected a ({n}, {n}) matrix with A's dtype {A.dtype} and device {A.device}, got "
            f"shape {M.shape}, {M.dtype}, {M.device}"
        )
    pos = A.pattern.diag_positions
    if pos is not None and (
        M is None or M.pattern is A.pattern or M.pattern.fingerprint == A.pattern.fingerprint
    ):
        # A's pattern holds the whole diagonal (and M's entries): only the values change, and the result
        # keeps A's pattern (no sort, and the analyses cached for A serve it)
        if M is None:
            delta = torch.zeros(A.nnz, dtype=A.dtype, device=A.device)
            delta[pos] = -sigma
            return SparseTensor._from_pattern(A.values + delta, A.pattern)
        mv = M.values if M.batch_shape == batch else M.values.expand(batch + (M.nnz,))
        return SparseTensor._from_pattern(A.values - sigma * mv, A.pattern)
    diag = torch.arange(n, device=A.device)
    rows, cols, vals = [A.pattern.row, diag], [A.pattern.col, diag], [A.values]
    if M is None:
        vals.append(torch.full(batch + (n,), -sigma, dtype=A.dtype, device=A.device))
    else:
        rows.append(M.pattern.row)
        cols.append(M.pattern.col)
        vals.append(torch.zeros(batch + (n,), dtype=A.dtype, device=A.device))
        mv = M.values
        if M.batch_shape != batch:
            mv = mv.expand(batch + (M.nnz,))
        vals.append(-sigma * mv)
    values = torch.cat([v.expand(batch + v.shape[-1:]) for v in vals], -1)
    return SparseTensor(values, torch.cat(rows), torch.cat(cols), (n, n))
