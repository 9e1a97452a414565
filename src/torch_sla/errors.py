"""Exceptions raised by torch_sla.

Every exception derives from :class:`TorchSlaError` and from the built-in class a caller would catch
anyway (``ValueError`` for bad input, ``RuntimeError`` for failures of a run), so ``except ValueError``
keeps working. Messages name the offending argument, its shape or value, and what to do.
"""

from __future__ import annotations

__all__ = [
    "TorchSlaError",
    "InvalidArgumentError",
    "SingularMatrixError",
    "NotPositiveDefiniteError",
    "BackendUnavailableError",
    "MatrixMarketError",
    "ConvergenceError",
    "DistributedError",
]


class TorchSlaError(Exception):
    """Base class of every torch_sla exception."""


class InvalidArgumentError(TorchSlaError, ValueError):
    """An argument has the wrong shape, dtype, device or contents."""


class SingularMatrixError(TorchSlaError, ValueError):
    """The matrix is structurally or numerically singular: the system has no unique solution."""


class NotPositiveDefiniteError(TorchSlaError, ValueError):
    """A Cholesky factorization was asked for a matrix that is not symmetric/Hermitian positive definite."""


class BackendUnavailableError(TorchSlaError, RuntimeError):
    """The requested backend is not installed, not compiled in, or cannot handle this device/dtype/method."""


class MatrixMarketError(TorchSlaError, ValueError):
    """A Matrix Market file is malformed or cannot be read."""


class ConvergenceError(TorchSlaError, RuntimeError):
    """An iterative method did not reach the requested tolerance."""


class DistributedError(TorchSlaError, RuntimeError):
    """A distributed operation failed on another rank, or a collective lost a peer or timed out."""
