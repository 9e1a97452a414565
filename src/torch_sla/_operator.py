"""The one operator protocol every Krylov method, eigensolver and Newton-Krylov solve consumes.

An operator is a square linear map on blocks of ``k`` column vectors of length ``n``. Besides applying
itself (``matvec``) and its adjoint (``rmatvec``), it owns the inner products and norms of its vector
space, because they are part of what a distributed operator must change: a vector sharded over ranks
has local partial sums that need an all-reduce. :class:`InnerProducts` gives the local versions and
one ``reduce`` hook, so a distributed operator overrides that one method.

Implemented by :class:`~torch_sla.SparseTensor` (unbatched), :class:`LinearOperator` (matrix-free) and,
inside the solvers, the CSR operators of one batch member.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from ._checks import as_shape
from .errors import InvalidArgumentError


@runtime_checkable
class Operator(Protocol):
    """What the torch Krylov kernels need from a linear operator ``A`` (n x n).

    Blocks are ``(n, k)`` tensors whose columns are independent vectors; every reduction returns one
    value per column, shape ``(k,)``.
    """

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device

    def matvec(self, x: Tensor) -> Tensor:
        """``A x`` for an ``(n, k)`` block."""

    def rmatvec(self, x: Tensor) -> Tensor:
        """``A^H x`` for an ``(n, k)`` block."""

    def dot(self, a: Tensor, b: Tensor) -> Tensor:
        """Hermitian inner products ``a_j^H b_j`` of matching columns, ``(k,)``."""

    def rdot(self, a: Tensor, b: Tensor) -> Tensor:
        """``Re(a_j^H b_j)`` in the real dtype, ``(k,)``."""

    def norm(self, a: Tensor) -> Tensor:
        """Euclidean norms of the columns, real dtype, ``(k,)``."""

    def project(self, V: Tensor, w: Tensor) -> Tensor:
        """``h[c, i] = V[c, i]^H w[c]`` for a basis ``V`` ``(k, j, n)`` and vectors ``w`` ``(k, n)``."""


def _real_view(a: Tensor) -> Tensor:
    return torch.view_as_real(a) if a.is_complex() else a


class InnerProducts:
    """Column-wise inner products and norms of local (unsharded) vectors.

    Every reduction is a local partial result passed through :meth:`reduce`, the identity here; an
    operator whose vectors are sharded over processes overrides ``reduce`` with an all-reduce (sum).
    Single columns go through BLAS dot products (no temporary of size n); several columns through
    elementwise products summed over the rows, except complex dot products of many columns, which use
    one matrix product.
    """

    __slots__ = ()

    def reduce(self, partial: Tensor) -> Tensor:
        """Combine per-process partial sums (shape ``(k,)`` or ``(k, j)``); local: the identity."""
        return partial

    def dot(self, a: Tensor, b: Tensor) -> Tensor:
        k = a.shape[1]
        if k == 1:
            d = torch.vdot(a[:, 0], b[:, 0]).reshape(1)
        elif not a.is_complex():
            d = (a * b).sum(0)
        elif k <= 4:
            d = torch.stack([torch.vdot(a[:, j], b[:, j]) for j in range(k)])
        elif k <= 8:
            d = (a.conj() * b).sum(0)
        else:
            d = torch.diagonal(a.mH @ b).clone()
        return self.reduce(d)

    def rdot(self, a: Tensor, b: Tensor) -> Tensor:
        if not a.is_complex():
            return self.dot(a, b)
        ar, br = torch.view_as_real(a), torch.view_as_real(b)
        if a.shape[1] == 1:
            return self.reduce(torch.dot(ar.reshape(-1), br.reshape(-1)).reshape(1))
        return self.reduce((ar * br).sum((0, 2)))

    def norm(self, a: Tensor) -> Tensor:
        if a.shape[1] == 1 and self.reduce.__func__ is InnerProducts.reduce:
            # local and one column: the BLAS norm, which also avoids overflow in the squares
            return torch.linalg.vector_norm(_real_view(a).reshape(-1)).reshape(1)
        return self.rdot(a, a).clamp(min=0).sqrt()

    def project(self, V: Tensor, w: Tensor) -> Tensor:
        wc = w.conj() if w.is_complex() else w
        if w.device.type == "cpu" and w.shape[0] > 1:  # one BLAS gemv per column beats batched bmm on CPU
            h = torch.stack([torch.mv(V[c], wc[c]) for c in range(w.shape[0])])
        else:
            h = torch.bmm(V, wc.unsqueeze(2)).squeeze(2)
        h = h.conj() if w.is_complex() else h
        return self.reduce(h)


class CallableOperator(InnerProducts):
    """An :class:`Operator` from plain callables ``(n, k) -> (n, k)`` (local vectors)."""

    def __init__(
        self,
        matvec: Callable[[Tensor], Tensor],
        n: int,
        dtype: torch.dtype,
        device: torch.device,
        rmatvec: Callable[[Tensor], Tensor] | None = None,
    ):
        self._matvec, self._rmatvec = matvec, rmatvec
        self.shape = (n, n)
        self.dtype, self.device = dtype, torch.device(device)

    def matvec(self, x: Tensor) -> Tensor:
        return self._matvec(x)

    def rmatvec(self, x: Tensor) -> Tensor:
        if self._rmatvec is None:
            raise InvalidArgumentError("rmatvec: this operator was given no adjoint")
        return self._rmatvec(x)


class CsrOperator(InnerProducts):
    """One CSR matrix (or its conjugate transpose) as an :class:`Operator`, applied by torch's sparse
    matrix product, on any device."""

    def __init__(self, crow: Tensor, col: Tensor, values: Tensor, n: int, adjoint_of=None):
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            self.mat = torch.sparse_csr_tensor(crow, col, values, (n, n))
        self.shape = (n, n)
        self.dtype, self.device = values.dtype, values.device
        self._adjoint = adjoint_of

    def matvec(self, x: Tensor) -> Tensor:
        return self.mat @ x

    def rmatvec(self, x: Tensor) -> Tensor:
        if self._adjoint is None:
            raise InvalidArgumentError("rmatvec: this operator was built without its adjoint")
        return self._adjoint.matvec(x)


class LinearOperator(InnerProducts):
    """A matrix-free linear operator for the ``torch`` backend.

    Parameters
    ----------
    matvec : callable
        ``matvec(x) -> A x`` for ``x`` of shape ``(n, k)``; written with torch ops, so autograd can
        differentiate it with respect to ``parameters``.
    shape : (n, n)
    dtype, device : of the vectors it acts on.
    rmatvec : callable, optional
        ``A^H x``. When omitted, it is the vector-Jacobian product of ``matvec`` (exact for linear maps).
    parameters : sequence of tensors
        The tensors ``matvec`` depends on. The solution's gradient to each is one adjoint solve plus one
        vector-Jacobian product of ``matvec``.

    It implements the :class:`Operator` protocol with local inner products; override :meth:`reduce`
    for vectors sharded over processes.
    """

    def __init__(
        self,
        matvec: Callable[[Tensor], Tensor],
        shape: Sequence[int],
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        rmatvec: Callable[[Tensor], Tensor] | None = None,
        parameters: Sequence[Tensor] = (),
    ):
        shape = as_shape(shape)
        if len(shape) != 2 or shape[0] != shape[1]:
            raise InvalidArgumentError(f"shape: expected a square (n, n), got {shape}")
        if not callable(matvec):
            raise InvalidArgumentError("matvec: must be callable, (n, k) tensor -> (n, k) tensor")
        self._matvec, self._rmatvec = matvec, rmatvec
        self.shape, self.dtype, self.device = shape, dtype, torch.device(device)
        self.parameters = tuple(parameters)

    def matvec(self, x: Tensor) -> Tensor:
        return self._matvec(x)

    def rmatvec(self, x: Tensor) -> Tensor:
        if self._rmatvec is not None:
            return self._rmatvec(x)
        with torch.enable_grad():
            z = torch.zeros_like(x, requires_grad=True)
            (y,) = torch.autograd.grad(self._matvec(z), z, x)
        return y
