"""CSR sparsity patterns, shared by every matrix with the same structure.

A :class:`Pattern` is immutable. Whatever is derived from the structure alone (expanded row indices,
the transpose permutation, diagonal positions, a fingerprint for caches, symbolic analyses) is
computed once, on first use, and kept on the pattern.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from ._checks import INT64_MAX, core_array, outside_transforms, plain
from ._core import IMPORT_ERROR, core, core_build_info
from ._memory import check_budget
from .errors import InvalidArgumentError

_INDEX_DTYPES = (torch.int32, torch.int64)


class Pattern:
    """An immutable CSR pattern: ``crow`` (n_rows + 1) and ``col`` (nnz), both int64, sorted and unique
    per row. Build with :meth:`from_coo` or :meth:`from_csr`; never mutate the tensors."""

    __slots__ = ("crow", "col", "n_rows", "n_cols", "_cache")

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, n_rows: int, n_cols: int):
        self.crow = crow
        self.col = col
        self.n_rows = int(n_rows)
        self.n_cols = int(n_cols)
        self._cache: dict[str, Any] = {}

    # -- construction ------------------------------------------------------------------------------
    @staticmethod
    def from_coo(
        row: torch.Tensor, col: torch.Tensor, n_rows: int, n_cols: int
    ) -> tuple[Pattern, torch.Tensor | None, bool]:
        """Sort COO indices into CSR.

        Returns ``(pattern, where, has_duplicates)``. ``where[k]`` is the CSR position of COO entry ``k``;
        it is ``None`` when the COO entries already are in CSR order without duplicates (then the values
        can be used as they are).
        """
        row = row.to(torch.int64)
        col = col.to(torch.int64)
        nnz = row.numel()
        if nnz == 0 or bool(_ordered_unique(row, col).all()):
            crow = _crow_from_rows(row, n_rows)
            return Pattern(crow, col.contiguous(), n_rows, n_cols), None, False
        if n_rows * n_cols <= INT64_MAX:
            # One int64 key per entry, row-major; it cannot overflow since row * n_cols + col < n_rows * n_cols.
            key = row * n_cols + col
            uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
            u_row = torch.div(uniq, n_cols, rounding_mode="floor") if n_cols > 0 else uniq
            u_col = uniq - u_row * n_cols
        else:
            # The key would overflow int64: sort by column, then stably by row, and merge equal neighbours.
            perm = torch.argsort(col, stable=True)
            perm = perm[torch.argsort(row[perm], stable=True)]
            r, c = row[perm], col[perm]
            first = torch.ones(nnz, dtype=torch.bool, device=row.device)
            first[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
            inverse = torch.empty_like(perm)
            inverse[perm] = torch.cumsum(first, 0) - 1
            u_row, u_col = r[first], c[first]
        crow = _crow_from_rows(u_row, n_rows)
        return Pattern(crow, u_col.contiguous(), n_rows, n_cols), inverse, u_row.numel() < nnz

    @staticmethod
    @outside_transforms
    def from_ordered_coo(row: torch.Tensor, col: torch.Tensor, n_rows: int, n_cols: int) -> Pattern | None:
        """The pattern of CPU COO indices already in CSR order without duplicates (each entry strictly
        after the one before it in row-major order, as graph libraries keep their edge lists), in one pass of
        the C++ core that also checks the index range and keeps the core's copy of the pattern; ``None``
        when an entry is out of that order, when the indices are not on the CPU or the core is missing (then
        :meth:`from_coo` sorts). An index out of range raises :class:`InvalidArgumentError`."""
        if IMPORT_ERROR is not None or row.device.type != "cpu" or col.device.type != "cpu":
            return None
        row, col = plain(row), plain(col)  # indices carry no gradient; a torch.func wrapper has no storage
        if row.dtype != col.dtype:
            row, col = row.to(torch.int64), col.to(torch.int64)
        # the same bound as the sorting path (_crow_from_rows), which builds three arrays of this length
        check_budget(24.0 * (n_rows + 1), f"a CSR matrix with {n_rows} rows (its row pointers)")
        crow = torch.empty(n_rows + 1, dtype=torch.int64)
        row, col = row.contiguous(), col.contiguous()
        handle = core().csr_from_ordered_coo(
            core_array(row), core_array(col), n_rows, n_cols, core_array(crow), torch.get_num_threads()
        )
        if handle is None:
            return None
        p = Pattern(crow, col.to(torch.int64), n_rows, n_cols)
        p._cache["core_handle"] = handle
        p._cache["row"] = row.to(torch.int64)  # in CSR order already: the row of every entry
        return p

    @staticmethod
    def from_csr(
        crow: torch.Tensor, col: torch.Tensor, n_rows: int, n_cols: int, check: bool = True
    ) -> Pattern:
        """Wrap CSR index arrays (checked for monotone crow, range, and sorted unique columns per row)."""
        crow = crow.to(torch.int64).contiguous()
        col = col.to(torch.int64).contiguous()
        if check:
            if crow.dim() != 1 or crow.numel() != n_rows + 1:
                raise InvalidArgumentError(
                    f"crow_indices: expected shape ({n_rows + 1},), got {tuple(crow.shape)}"
                )
            if int(crow[0]) != 0 or int(crow[-1]) != col.numel() or bool((crow[1:] < crow[:-1]).any()):
                raise InvalidArgumentError("crow_indices: must start at 0, be non-decreasing and end at nnz")
            p = Pattern(crow, col, n_rows, n_cols)
            if col.numel() > 0:
                if int(col.min()) < 0 or int(col.max()) >= n_cols:
                    raise InvalidArgumentError(f"col_indices: entries must lie in [0, {n_cols})")
                row = p.row
                same_row = row[1:] == row[:-1]
                if bool((same_row & (col[1:] <= col[:-1])).any()):
                    raise InvalidArgumentError("col_indices: must be sorted and unique within each row")
            return p
        return Pattern(crow, col, n_rows, n_cols)

    # -- derived data (cached) ---------------------------------------------------------------------
    @property
    def nnz(self) -> int:
        return self.col.numel()

    @property
    def device(self) -> torch.device:
        return self.col.device

    @property
    @outside_transforms
    def row(self) -> torch.Tensor:
        """Row index of each stored entry (int64, length nnz)."""
        r = self._cache.get("row")
        if r is None:
            counts = self.crow[1:] - self.crow[:-1]
            r = torch.repeat_interleave(torch.arange(self.n_rows, device=self.device), counts)
            self._cache["row"] = r
        return r

    @property
    @outside_transforms
    def fingerprint(self) -> tuple:
        """Exact-content key of the pattern: shape plus a 128-bit BLAKE2 digest of crow and col."""
        fp = self._cache.get("fingerprint")
        if fp is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(self.crow.detach().cpu().numpy().tobytes())
            h.update(self.col.detach().cpu().numpy().tobytes())
            fp = (self.n_rows, self.n_cols, h.hexdigest())
            self._cache["fingerprint"] = fp
        return fp

    @outside_transforms
    def transpose(self) -> tuple[Pattern, torch.Tensor]:
        """Pattern of A^T and ``perm`` with ``values_T = values[..., perm]``."""
        t = self._cache.get("transpose")
        if t is None:
            if (
                self.device.type == "cpu"
                and self.n_cols <= 4 * self.nnz + 1024
                and "error" not in core_build_info()
            ):
                # A counting sort in the core: O(nnz + n), several times faster than a sort.
                t_crow = torch.empty(self.n_cols + 1, dtype=torch.int64)
                t_col = torch.empty(self.nnz, dtype=torch.int64)
                perm = torch.empty(self.nnz, dtype=torch.int64)
                core().csr_transpose(
                    self.n_rows,
                    self.n_cols,
                    core_array(self.crow.to(torch.int64)),
                    core_array(self.col.to(torch.int64)),
                    core_array(t_crow),
                    core_array(t_col),
                    core_array(perm),
                )
                t_crow, t_col = (
                    t_crow.to(self.crow.dtype),
                    t_col.to(self.col.dtype),
                )  # the pattern's index type
            else:
                # Entries are in row-major order, so a stable sort by column gives column-major order.
                perm = torch.argsort(self.col, stable=True)
                t_col = self.row[perm].contiguous()
                t_crow = _crow_from_rows(self.col[perm], self.n_cols)
            pt = Pattern(t_crow, t_col, self.n_cols, self.n_rows)
            inverse = torch.empty_like(perm)
            inverse[perm] = torch.arange(perm.numel(), device=perm.device)
            pt._cache["transpose"] = (self, inverse)
            t = (pt, perm)
            self._cache["transpose"] = t
        return t

    @property
    @outside_transforms
    def is_structurally_symmetric(self) -> bool:
        s = self._cache.get("sym")
        if s is None:
            if self.n_rows != self.n_cols:
                s = False
            else:
                pt, _ = self.transpose()
                s = torch.equal(pt.crow, self.crow) and torch.equal(pt.col, self.col)
            self._cache["sym"] = s
        return s

    @property
    @outside_transforms
    def diag_positions(self) -> torch.Tensor | None:
        """Positions of the diagonal entries in row order, or None when a diagonal entry is missing."""
        if "diag" not in self._cache:
            pos = torch.nonzero(self.row == self.col).flatten()
            self._cache["diag"] = pos if pos.numel() == min(self.n_rows, self.n_cols) else None
        return self._cache["diag"]

    @outside_transforms
    def empty_row_or_col(self) -> str | None:
        """A description of the first empty row or column (structural singularity), or None. Cached."""
        if "empty" not in self._cache:
            self._cache["empty"] = self._find_empty()
        return self._cache["empty"]

    def _find_empty(self) -> str | None:
        counts = self.crow[1:] - self.crow[:-1]
        if self.n_rows and bool((counts == 0).any()):
            return f"row {int(torch.nonzero(counts == 0)[0])} has no stored entries"
        if self.n_cols <= 4 * self.nnz + 1024:  # counts per column: O(nnz + n_cols)
            ccount = torch.bincount(self.col, minlength=self.n_cols)
            if bool((ccount == 0).any()):
                return f"column {int(torch.nonzero(ccount == 0)[0])} has no stored entries"
            return None
        # Many more columns than entries: from the distinct column indices, so a huge n_cols allocates nothing.
        used = torch.unique(self.col)
        if used.numel() < self.n_cols:
            gap = torch.nonzero(used != torch.arange(used.numel(), device=used.device))
            return f"column {int(gap[0]) if gap.numel() else used.numel()} has no stored entries"
        return None

    @outside_transforms
    def csr_for_core(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(crow, col) as int32 when the sizes fit (half the index traffic in SpMV), else int64; cached."""
        c = self._cache.get("csr32")
        if c is None:
            if self.nnz < 2**31 - 1 and self.n_rows < 2**31 - 1 and self.n_cols < 2**31 - 1:
                c = (self.crow.to(torch.int32), self.col.to(torch.int32))
            else:
                c = (self.crow, self.col)
            self._cache["csr32"] = c
        return c

    def core_handle(self):
        """The pattern as the C++ core's ``CsrPattern``: validated once, its own copy of the indices
        (int32 when they fit), so that repeated core calls skip the O(nnz) validation. Cached."""
        h = self._cache.get("core_handle")
        if h is None:
            crow, col = self.csr_for_core()
            h = core().CsrPattern(self.n_rows, self.n_cols, crow.cpu(), col.cpu())
            self._cache["core_handle"] = h
        return h

    def to(self, device: torch.device) -> Pattern:
        if torch.device(device) == self.device:
            return self
        return Pattern(self.crow.to(device), self.col.to(device), self.n_rows, self.n_cols)


def _ordered_unique(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """Whether each COO entry comes strictly after the one before it in row-major order (no overflow)."""
    dr = row[1:] - row[:-1]
    return (dr > 0) | ((dr == 0) & (col[1:] > col[:-1]))


def _crow_from_rows(sorted_rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    # crow, bincount's counts and cumsum's output: three int64 arrays of n_rows + 1 entries.
    check_budget(24.0 * (n_rows + 1), f"a CSR matrix with {n_rows} rows (its row pointers)")
    counts = torch.bincount(sorted_rows, minlength=n_rows) if sorted_rows.numel() else None
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=sorted_rows.device)
    if counts is not None:
        crow[1:] = torch.cumsum(counts, 0)
    return crow
