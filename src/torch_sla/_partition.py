"""Partitions of the rows of a square sparse matrix into parts, for distributing it over processes.

A :class:`Partition` says which part owns each row (``owner[i]``): METIS k-way on the graph of the
pattern (:func:`partition_graph_metis`, the smallest edge cut, so the least halo exchange), recursive
coordinate bisection of points attached to the rows (:func:`partition_coordinates`), contiguous blocks
(:func:`partition_simple`), or a given owner array. :func:`make_partition` picks one of them.

The graph of a pattern is that of ``A + A^T`` without the diagonal: rows ``i != j`` are joined when ``A``
stores ``(i, j)`` or ``(j, i)``. Its *edge cut* under a partition is the number of such undirected edges
whose ends lie in different parts; the *imbalance* is ``max(part_sizes) / (n / num_parts)``. The work is
done by the C++ core (``_C.partition_*``); METIS is an optional part of it (:func:`metis_available`).
"""

from __future__ import annotations

import dataclasses
import numbers

import torch
from torch import Tensor

from ._checks import INT64_MAX, all_finite, as_int, to_core
from ._core import core
from ._pattern import Pattern
from ._sparse_tensor import as_sparse_tensor
from .errors import BackendUnavailableError, InvalidArgumentError

METHODS = ("metis", "coordinates", "contiguous", "given")


@dataclasses.dataclass(frozen=True)
class Partition:
    """Which of ``num_parts`` parts owns each of ``n`` rows (graph vertices).

    ``owner`` is an int64 CPU tensor of shape ``(n,)`` with entries in ``[0, num_parts)``; every part
    owns at least one row. ``edge_cut`` is the number of edges of the symmetrized graph of the matrix
    between parts, or ``-1`` when unknown (a partition made from coordinates or a size alone, without a
    matrix). ``imbalance = max(part_sizes) / (n / num_parts)`` (1.0 is perfect balance).
    """

    owner: Tensor
    num_parts: int
    method: str
    edge_cut: int
    part_sizes: tuple[int, ...]
    imbalance: float
    _rows: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        o = self.owner
        if not isinstance(o, Tensor) or o.dtype != torch.int64 or o.dim() != 1 or o.device.type != "cpu":
            got = f"{o.dtype} {tuple(o.shape)} on {o.device}" if isinstance(o, Tensor) else type(o).__name__
            raise InvalidArgumentError(f"owner: expected an int64 CPU tensor of shape (n,), got {got}")
        if self.method not in METHODS:
            raise InvalidArgumentError(f"method: expected one of {METHODS}, got {self.method!r}")
        if len(self.part_sizes) != self.num_parts or sum(self.part_sizes) != o.numel():
            raise InvalidArgumentError(
                f"part_sizes: expected {self.num_parts} sizes summing to n = {o.numel()}, got {self.part_sizes}"
            )

    @property
    def n(self) -> int:
        """Number of rows (vertices)."""
        return self.owner.numel()

    def rows(self, p: int) -> Tensor:
        """The sorted int64 global indices of the rows that part ``p`` owns (a new tensor)."""
        p = as_int(p, "p", lo=0, hi=self.num_parts - 1)
        if not self._rows:
            # All parts at once: a stable sort by owner lists each part's rows in increasing order.
            order = torch.argsort(self.owner, stable=True)
            self._rows["order"] = order
            self._rows["offsets"] = [0, *torch.tensor(self.part_sizes).cumsum(0).tolist()]
        off = self._rows["offsets"]
        return self._rows["order"][off[p] : off[p + 1]].clone()

    def __eq__(self, other) -> bool:
        if not isinstance(other, Partition):
            return NotImplemented
        return (self.num_parts, self.method, self.edge_cut, self.part_sizes) == (
            other.num_parts,
            other.method,
            other.edge_cut,
            other.part_sizes,
        ) and torch.equal(self.owner, other.owner)

    def __hash__(self) -> int:
        return hash((self.n, self.num_parts, self.method, self.edge_cut, self.part_sizes))

    def __repr__(self) -> str:
        cut = "unknown" if self.edge_cut < 0 else str(self.edge_cut)
        return (
            f"Partition(n={self.n}, parts={self.num_parts}, method={self.method!r}, edge_cut={cut}, "
            f"imbalance={self.imbalance:.3f})"
        )


def metis_available() -> bool:
    """Whether the C++ core was built with METIS (:func:`partition_graph_metis`)."""
    try:
        return bool(core().metis_available())
    except BackendUnavailableError:  # pragma: no cover - a broken install
        return False


def _square_pattern(A, name: str = "A") -> Pattern:
    """The CPU pattern of a square matrix given as a Pattern, SparseTensor or anything
    :func:`as_sparse_tensor` takes."""
    if isinstance(A, Pattern):
        pattern = A
    else:
        try:
            pattern = as_sparse_tensor(A).pattern
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InvalidArgumentError) and name == "A":
                raise
            raise InvalidArgumentError(
                f"{name}: expected a square SparseTensor, torch or scipy sparse matrix ({exc})"
            ) from None
    if pattern.n_rows != pattern.n_cols:
        raise InvalidArgumentError(
            f"{name}: expected a square matrix (its rows are partitioned through its graph), got shape "
            f"({pattern.n_rows}, {pattern.n_cols})"
        )
    return pattern.to(torch.device("cpu"))


def _check_num_parts(num_parts, n: int) -> int:
    k = as_int(num_parts, "num_parts", lo=1)
    if k > n:
        raise InvalidArgumentError(
            f"num_parts: {k} parts of {n} rows would leave a part empty; use at most {n} parts"
        )
    return k


def _graph_arrays(pattern: Pattern) -> tuple[Tensor, Tensor]:
    crow, col = pattern.csr_for_core()  # int32 when the sizes fit
    return to_core(crow.cpu()), to_core(col.cpu())


def _sizes(owner: Tensor, num_parts: int) -> tuple[tuple[int, ...], float]:
    sizes = tuple(int(s) for s in torch.bincount(owner, minlength=num_parts).tolist())
    return sizes, max(sizes) * num_parts / owner.numel()


def _finish(owner: Tensor, num_parts: int, method: str, pattern: Pattern | None) -> Partition:
    """The Partition of ``owner`` with its quality (edge cut -1 without a pattern)."""
    if pattern is None:
        sizes, imbalance = _sizes(owner, num_parts)
        return Partition(owner, num_parts, method, -1, sizes, imbalance)
    crow, col = _graph_arrays(pattern)
    cut, sizes, imbalance = core().partition_quality(pattern.n_rows, crow, col, owner, num_parts)
    return Partition(owner, num_parts, method, int(cut), tuple(int(s) for s in sizes), float(imbalance))


def _vertex_weights(w, n: int) -> Tensor:
    if not isinstance(w, Tensor):
        try:
            w = torch.as_tensor(w)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidArgumentError(
                f"vertex_weights: expected an integer tensor of shape ({n},), got {type(w).__name__}"
            ) from None
    if w.dtype.is_floating_point or w.dtype.is_complex or w.dtype == torch.bool or w.shape != (n,):
        raise InvalidArgumentError(
            f"vertex_weights: expected an integer tensor of shape ({n},) (one weight per row), got {w.dtype} "
            f"{tuple(w.shape)}"
        )
    w = to_core(w.detach().to("cpu", torch.int64))
    if n and int(w.min()) < 1:
        i = int(torch.argmin(w))
        raise InvalidArgumentError(f"vertex_weights: must be positive integers, got {int(w[i])} at row {i}")
    return w


def _coords(coords) -> Tensor:
    if not isinstance(coords, Tensor):
        try:
            coords = torch.as_tensor(coords)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidArgumentError(
                f"coords: expected a real tensor of shape (n, d), got {type(coords).__name__}"
            ) from None
    if coords.dim() != 2 or coords.shape[1] < 1 or coords.dtype.is_complex or coords.dtype == torch.bool:
        raise InvalidArgumentError(
            f"coords: expected a real tensor of shape (n, d) with d >= 1 (a point per row), got {coords.dtype} "
            f"{tuple(coords.shape)}"
        )
    coords = to_core(coords.detach().to("cpu", torch.float64))
    if coords.numel() and not all_finite(coords):
        bad = torch.nonzero(~torch.isfinite(coords))[0].tolist()
        raise InvalidArgumentError(
            f"coords: entry {tuple(bad)} is not finite ({float(coords[bad[0], bad[1]])})"
        )
    return coords


def _owner(owner, n: int, num_parts: int) -> Tensor:
    if not isinstance(owner, Tensor):
        try:
            owner = torch.as_tensor(owner)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidArgumentError(
                f"owner: expected an integer tensor of shape ({n},), got {type(owner).__name__}"
            ) from None
    if (
        owner.dtype.is_floating_point
        or owner.dtype.is_complex
        or owner.dtype == torch.bool
        or owner.shape != (n,)
    ):
        raise InvalidArgumentError(
            f"owner: expected an integer tensor of shape ({n},) (the part of each row), got {owner.dtype} "
            f"{tuple(owner.shape)}"
        )
    # A copy: the Partition must not change when the caller's tensor does.
    owner = owner.detach().to("cpu", torch.int64, copy=True).contiguous()
    bad = (owner < 0) | (owner >= num_parts)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise InvalidArgumentError(f"owner: entry {i} is {int(owner[i])}, outside [0, {num_parts})")
    sizes = torch.bincount(owner, minlength=num_parts)
    if bool((sizes == 0).any()):
        p = int(torch.nonzero(sizes == 0)[0])
        raise InvalidArgumentError(
            f"owner: part {p} owns no row; every one of the {num_parts} parts needs one"
        )
    return owner


def partition_graph_metis(A, num_parts, *, vertex_weights=None, seed=0) -> Partition:
    """METIS k-way partition of the rows of the square matrix ``A`` (its symmetrized graph), minimizing
    the edge cut within METIS's default balance tolerance (3%). ``vertex_weights``: ``n`` positive
    integers that METIS balances instead of row counts (e.g. nonzeros per row). ``seed`` fixes METIS's
    randomization: the same seed gives the same partition. No part is left empty (should METIS leave
    one empty, a row of the largest part is moved into it). Raises :class:`BackendUnavailableError`
    when the core was built without METIS (:func:`metis_available`)."""
    pattern = _square_pattern(A)
    n = pattern.n_rows
    k = _check_num_parts(num_parts, n)
    w = None if vertex_weights is None else _vertex_weights(vertex_weights, n)
    seed = as_int(seed, "seed", lo=0, hi=INT64_MAX)
    crow, col = _graph_arrays(pattern)
    owner = torch.empty(n, dtype=torch.int64)
    core().partition_metis(n, crow, col, k, w, seed, owner)
    return _finish(owner, k, "metis", pattern)


def partition_coordinates(coords, num_parts, *, A=None) -> Partition:
    """Recursive coordinate bisection of the points ``coords`` (shape ``(n, d)``, one per row): each set
    is cut along its widest extent so that every part gets ``floor`` or ``ceil(n / num_parts)`` points
    (any ``num_parts``, not only powers of two). ``A`` (optional, ``n x n``) is used only to report the
    edge cut; without it ``edge_cut`` is ``-1`` (unknown)."""
    coords = _coords(coords)
    n = coords.shape[0]
    k = _check_num_parts(num_parts, n)
    pattern = None
    if A is not None:
        pattern = _square_pattern(A)
        if pattern.n_rows != n:
            raise InvalidArgumentError(
                f"A: has {pattern.n_rows} rows but coords has {n} points; expected one point per row"
            )
    owner = torch.empty(n, dtype=torch.int64)
    core().partition_coordinates(coords, k, owner)
    return _finish(owner, k, "coordinates", pattern)


def partition_simple(n_or_A, num_parts) -> Partition:
    """Contiguous blocks of rows: part ``p`` owns rows ``[offset_p, offset_{p+1})``, sizes differing by
    at most one (the first ``n % num_parts`` parts one larger). ``n_or_A``: the number of rows, or a
    square matrix (then the edge cut is reported; with a number it is ``-1``, unknown)."""
    if isinstance(n_or_A, numbers.Integral) or (
        isinstance(n_or_A, Tensor) and n_or_A.layout == torch.strided and n_or_A.dim() == 0
    ):
        n, pattern = as_int(n_or_A, "n_or_A", lo=1), None
    else:
        pattern = _square_pattern(n_or_A, "n_or_A")
        n = pattern.n_rows
    k = _check_num_parts(num_parts, n)
    owner = torch.empty(n, dtype=torch.int64)
    core().partition_contiguous(n, k, owner)
    return _finish(owner, k, "contiguous", pattern)


def make_partition(
    A, num_parts, *, method="auto", coords=None, owner=None, seed=0, vertex_weights=None
) -> Partition:
    """Partition the rows of the square matrix ``A`` into ``num_parts`` parts.

    ``method``:

    - ``"auto"``: ``"given"`` when ``owner`` is passed; else ``"metis"`` when METIS is available
      (:func:`metis_available`); else ``"coordinates"`` when ``coords`` is passed; else
      ``"contiguous"``. The result's ``method`` says which one ran.
    - ``"metis"``: :func:`partition_graph_metis` (``seed``, ``vertex_weights``).
    - ``"coordinates"``: :func:`partition_coordinates` of ``coords`` (``(n, d)``, one point per row).
    - ``"contiguous"``: :func:`partition_simple`.
    - ``"given"``: ``owner`` (``n`` integers in ``[0, num_parts)``, every part non-empty), copied.

    The edge cut and balance are always computed on ``A``'s graph.
    """
    allowed = ("auto", *METHODS)
    if not isinstance(method, str) or method not in allowed:
        raise InvalidArgumentError(f"method: expected one of {allowed}, got {method!r}")
    pattern = _square_pattern(A)
    n = pattern.n_rows
    k = _check_num_parts(num_parts, n)
    if owner is not None and method not in ("auto", "given"):
        raise InvalidArgumentError(
            f"owner: a given owner array needs method='given' (or 'auto'), not {method!r}"
        )
    if method == "auto":
        if owner is not None:
            method = "given"
        elif metis_available():
            method = "metis"
        else:
            method = "coordinates" if coords is not None else "contiguous"
    if method == "given":
        if owner is None:
            raise InvalidArgumentError("owner: method='given' needs the owner array (the part of each row)")
        return _finish(_owner(owner, n, k), k, "given", pattern)
    if method == "metis":
        return partition_graph_metis(pattern, k, vertex_weights=vertex_weights, seed=seed)
    if method == "coordinates":
        if coords is None:
            raise InvalidArgumentError(
                "coords: method='coordinates' needs the points of the rows, shape (n, d)"
            )
        return partition_coordinates(coords, k, A=pattern)
    return partition_simple(pattern, k)
