"""Sparse Jacobians by column coloring: one Jacobian-vector product per color instead of one per column.

Columns that share no row (structurally orthogonal) are grouped under one color by the C++ core's greedy
distance-2 coloring (``_C.color_columns``). With ``d_c`` the indicator vector of color ``c``, row ``i`` of
``J d_c`` is ``J[i, j]`` for the one column ``j`` of color ``c`` stored in row ``i``, so the values of J on
its pattern are read off ``n_colors`` products: ``J[i, j] = (J d_{color(j)})[i]``. A 2-D 5-point stencil
needs 7 colors at most, whatever its size.

Residual functions map a ``(B, n)`` batch of independent problems to ``(B, n)``; the products are
forward-mode derivatives (``torch.func.jvp``) and the values come out as ``(B, nnz)`` on one pattern.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._core import core
from ._pattern import Pattern
from ._sparse_tensor import SparseTensor, as_sparse_tensor
from .errors import InvalidArgumentError

Residual = Callable[[torch.Tensor], torch.Tensor]  # (B, n) -> (B, n), members independent


def batch_residual(residual_fn: Callable[..., torch.Tensor], params: tuple, u: torch.Tensor) -> Residual:
    """``residual_fn(u, *params)`` as a map of ``(B, n)`` stacks (``B = 1`` for an unbatched ``u``),
    checking that it returns a tensor of ``u``'s shape and dtype."""
    shape, dtype, batched = tuple(u.shape), u.dtype, u.dim() == 2

    def fn(v: torch.Tensor) -> torch.Tensor:
        out = residual_fn(v if batched else v[0], *params)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != shape or out.dtype != dtype:
            got = f"{out.dtype} {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise InvalidArgumentError(
                f"residual_fn: must return a tensor of u's shape {shape} and dtype {dtype}, got {got}"
            )
        return out if batched else out.unsqueeze(0)

    return fn


_ORDERS = ("best", "smallest_last", "largest_first", "natural")


def check_unknowns(u, name: str) -> None:
    """``u`` must be a float32/float64 tensor of shape ``(n,)`` or ``(B, n)``."""
    if (
        not isinstance(u, torch.Tensor)
        or u.dim() not in (1, 2)
        or u.dtype not in (torch.float32, torch.float64)
    ):
        got = f"{u.dtype} {tuple(u.shape)}" if isinstance(u, torch.Tensor) else type(u).__name__
        raise InvalidArgumentError(
            f"{name}: expected a float32 or float64 tensor of shape (n,) or (B, n) (a batch of B problems), "
            f"got {got}"
        )


def color_columns(pattern: Pattern, order: str = "best") -> tuple[torch.Tensor, int]:
    """``(colors, n_colors)``: an int64 color per column such that no two columns of one color share a
    row. Cached on the pattern per ``order`` ("best", "smallest_last", "largest_first", "natural")."""
    if order not in _ORDERS:
        raise InvalidArgumentError(f"order: expected one of {_ORDERS}, got {order!r}")
    key = "coloring_" + order
    hit = pattern._cache.get(key)
    if hit is None:
        colors = torch.empty(pattern.n_cols, dtype=torch.int32)
        n_colors = int(core().color_columns(pattern.core_handle(), order, colors))
        hit = (colors.to(torch.int64), n_colors)
        pattern._cache[key] = hit
    return hit


def coloring_conflict(pattern: Pattern, colors: torch.Tensor) -> tuple[int, int, int] | None:
    """None when the coloring is valid for ``pattern``, else a ``(row, column, column)`` it breaks."""
    colors = torch.as_tensor(colors)
    if colors.dtype not in (torch.int32, torch.int64) or colors.shape != (pattern.n_cols,):
        raise InvalidArgumentError(
            f"colors: expected an integer tensor of shape ({pattern.n_cols},), got {colors.dtype} "
            f"{tuple(colors.shape)}"
        )
    if colors.numel() and int(colors.min()) < 0:
        raise InvalidArgumentError("colors: must be non-negative")
    hit = core().coloring_conflict(pattern.core_handle(), colors.to(torch.int32).contiguous())
    return None if hit is None else tuple(int(v) for v in hit)


def as_pattern(pattern, n: int) -> Pattern:
    """A square ``(n, n)`` Pattern from a Pattern, a SparseTensor, or anything ``as_sparse_tensor``
    takes (a torch sparse tensor, a scipy.sparse matrix, ``(values, row, col, shape)``)."""
    if not isinstance(pattern, Pattern):
        try:
            pattern = as_sparse_tensor(pattern).pattern
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"pattern: expected a SparseTensor, a torch or scipy sparse matrix, got {type(pattern).__name__}"
            ) from exc
    if (pattern.n_rows, pattern.n_cols) != (n, n):
        raise InvalidArgumentError(
            f"pattern: expected the ({n}, {n}) pattern of the Jacobian, got ({pattern.n_rows}, {pattern.n_cols})"
        )
    return pattern.to(torch.device("cpu"))


def with_diagonal(pattern: Pattern) -> Pattern:
    """``pattern`` with every diagonal entry stored (Newton's linear solves and preconditioners want it)."""
    if pattern.diag_positions is not None:
        return pattern
    n = pattern.n_rows
    diag = torch.arange(n, device=pattern.device)
    row = torch.cat([pattern.row, diag])
    col = torch.cat([pattern.col, diag])
    return Pattern.from_coo(row, col, n, n)[0]


def detect_pattern(fn: Residual, u: torch.Tensor, chunk_elements: int = 1 << 22) -> Pattern:
    """The Jacobian's pattern, by evaluating it densely with forward-mode products at a random point
    near ``u`` (a point where no derivative vanishes by accident, as those of ``u**2`` do at 0), the
    union over batch members, diagonal included. Costs ``n`` products, vectorized in chunks: meant for
    small and moderate ``n``; pass the pattern for large problems."""
    B, n = u.shape
    gen = torch.Generator().manual_seed(1234)
    noise = torch.randn(u.shape, generator=gen, dtype=u.dtype).to(u.device)
    point = u + 0.1 * noise * (1 + u.abs())
    rows, cols = [], []
    chunk = max(1, chunk_elements // max(1, B * n))

    def product(s: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(fn, (point,), (s.expand(B, n),))[1]

    def column_products(seeds: torch.Tensor) -> torch.Tensor:  # (k, n) -> (k, B, n)
        try:
            return torch.func.vmap(product)(seeds)
        except RuntimeError:  # a residual torch.func.vmap cannot batch (in-place ops, .item(), ...)
            return torch.stack([product(s) for s in seeds])

    for j0 in range(0, n, chunk):
        j1 = min(n, j0 + chunk)
        seeds = torch.zeros(j1 - j0, n, dtype=u.dtype, device=u.device)
        seeds[torch.arange(j1 - j0), torch.arange(j0, j1)] = 1
        prod = column_products(seeds)  # prod[j, b, i] = J_b[i, j0 + j]
        nz = (prod != 0).any(1)  # (k, n)
        j, i = torch.nonzero(nz, as_tuple=True)
        rows.append(i)
        cols.append(j + j0)
    diag = torch.arange(n, device=u.device)
    row = torch.cat([*rows, diag]).cpu()
    col = torch.cat([*cols, diag]).cpu()
    return Pattern.from_coo(row, col, n, n)[0]


class ColoredJacobian:
    """Assembles J on a fixed pattern from one JVP per color; ``products`` counts the JVPs made."""

    def __init__(self, pattern: Pattern, order: str = "best"):
        self.pattern = pattern
        colors, self.n_colors = color_columns(pattern, order)
        self.colors = colors
        n = pattern.n_cols
        # values[:, k] = compressed[b, color(col_k), row_k]: one gather from the (B, n_colors * n) block
        self._gather = colors[pattern.col] * n + pattern.row
        self._seeds: dict = {}
        self.products = 0

    def seeds(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``(n_colors, n)``: the indicator vector of each color (kept per dtype and device)."""
        S = self._seeds.get((dtype, device))
        if S is None:
            S = torch.zeros(self.n_colors, self.pattern.n_cols, dtype=dtype, device=device)
            S[self.colors.to(device), torch.arange(self.pattern.n_cols, device=device)] = 1
            self._seeds[(dtype, device)] = S
        return S

    def values(self, fn: Residual, u: torch.Tensor) -> torch.Tensor:
        """``(B, nnz)`` values of the Jacobian of ``fn`` at ``u`` (``(B, n)``) on the pattern."""
        B, n = u.shape
        if self.n_colors == 0 or B == 0:
            return u.new_zeros(B, self.pattern.nnz)
        S = self.seeds(u.dtype, u.device)
        compressed = torch.stack(
            [torch.func.jvp(fn, (u,), (S[c].expand(B, n),))[1] for c in range(self.n_colors)], 1
        )  # (B, n_colors, n)
        self.products += self.n_colors
        return compressed.reshape(B, -1)[:, self._gather.to(u.device)]

    def matrix(self, fn: Residual, u: torch.Tensor, batched: bool) -> SparseTensor:
        v = self.values(fn, u)
        return SparseTensor._from_pattern(v if batched else v[0], self.pattern.to(u.device))


def sparse_jacobian(
    residual_fn: Callable[..., torch.Tensor],
    u: torch.Tensor,
    *params,
    pattern=None,
    order: str = "best",
) -> SparseTensor:
    """The Jacobian ``dF/du`` of ``residual_fn(u, *params)`` at ``u`` as a :class:`SparseTensor`, from one
    forward-mode product per color of a distance-2 column coloring of its pattern.

    ``u`` is ``(n,)`` or a batch ``(B, n)`` of independent problems (the result then has values
    ``(B, nnz)`` on one pattern). ``pattern`` (a SparseTensor, torch or scipy sparse matrix) is the
    Jacobian's sparsity; without it the pattern is detected with ``n`` products at a random point
    near ``u`` (fine for moderate ``n``). Not differentiable (the values are computed without a graph).
    """
    check_unknowns(u, "u")
    batched = u.dim() == 2
    U = (u if batched else u.unsqueeze(0)).detach()
    plain = tuple(p.detach() if isinstance(p, torch.Tensor) else p for p in params)
    fn = batch_residual(residual_fn, plain, u)
    pat = detect_pattern(fn, U) if pattern is None else as_pattern(pattern, U.shape[1])
    return ColoredJacobian(pat, order).matrix(fn, U, batched)
