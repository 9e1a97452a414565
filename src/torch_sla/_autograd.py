"""The one autograd primitive shared by every linear solve: x = op(A(theta))^{-1} b.

Direct factorizations, iterative solvers and matrix-free operators all go through :class:`LinearSolve`;
they differ only in the :class:`Solver` object that does the raw solves and knows how A depends on its
parameters theta (the values on a sparsity pattern, or the tensors a matrix-free ``matvec`` uses).
"""

from __future__ import annotations

from typing import Protocol

import torch


class Solver(Protocol):
    """What :class:`LinearSolve` needs from a solver.

    ``raw_solve(b, op)`` solves ``op(A) x = b`` for a ``(B, n, k)`` stack without autograd, with ``op``
    "N" (A) or "H" (A^H); the same object serves the forward solve and backward's adjoint solve (so a
    factorization or preconditioner built once is reused).

    ``params_vjp(params, left, right)`` is the vector-Jacobian product of ``theta -> A(theta) @ right``
    at the cotangent ``-left``, for ``(B, n, k)`` blocks, summed over the columns: the gradient of
    ``L = -Re <left, A(theta) right>`` with respect to each parameter. It must be written with
    differentiable torch ops, so that backward is itself differentiable.
    """

    def raw_solve(self, b: torch.Tensor, op: str) -> torch.Tensor: ...

    def params_vjp(
        self, params: tuple[torch.Tensor, ...], left: torch.Tensor, right: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]: ...


def flip(op: str) -> str:
    return "H" if op == "N" else "N"


class LinearSolve(torch.autograd.Function):
    """x = op(A)^{-1} b, ``LinearSolve.apply(solver, op, b, *params)`` with b a (B, n, k) stack.

    Adjoint (g = dL/dx in torch's conjugate convention):

      op = N:  x = A^{-1} b.     lambda = A^{-H} g;   grad_b = lambda;
               dx = -A^{-1} dA x   =>  dL = -Re <lambda, dA x>
               =>  grad_theta = VJP of (theta -> A(theta) x) at -lambda.
      op = H:  y = A^{-H} c.     mu = A^{-1} g;       grad_c = mu;
               dy = -A^{-H} dA^H y  =>  dL = -Re <mu, dA^H y> = -Re <y, dA mu>
               =>  grad_theta = VJP of (theta -> A(theta) mu) at -y.

    So with (left, right) = (lambda, x) for N and (y, mu) for H, grad_theta = solver.params_vjp(theta,
    left, right). For values on a CSR pattern this is grad_values[k] = -sum_cols left[row_k] *
    conj(right[col_k]) (on the stored pattern only). lambda / mu come from the same solver with op
    flipped, through this Function again, and params_vjp uses differentiable ops: backward is itself
    differentiable (double backward, Hessian-vector products). A Hermitian method solves both ops alike.
    """

    @staticmethod
    def forward(ctx, solver, op: str, b: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        x = solver.raw_solve(b.detach(), op)
        ctx.solver = solver
        ctx.op = op
        ctx.save_for_backward(x, *params)
        return x

    @staticmethod
    def backward(ctx, gx: torch.Tensor):
        x, *params = ctx.saved_tensors
        solver, op = ctx.solver, ctx.op
        lam = LinearSolve.apply(solver, flip(op), gx, *params)
        grads: tuple = (None,) * len(params)
        if any(ctx.needs_input_grad[3:]):
            left, right = (lam, x) if op == "N" else (x, lam)
            grads = solver.params_vjp(tuple(params), left, right)
            grads = tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad[3:]))
        return (None, None, lam if ctx.needs_input_grad[2] else None, *grads)


def pattern_vjp(pattern, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``params_vjp`` for (B, nnz) values on a CSR pattern: -sum_cols left[row] conj(right[col])."""
    return -(left[:, pattern.row, :] * right[:, pattern.col, :].conj()).sum(-1)
