"""The one autograd primitive shared by every solver: x = op(A)^{-1} b on a fixed sparsity pattern."""

from __future__ import annotations

import torch


class LinearSolve(torch.autograd.Function):
    """x = op(A)^{-1} b with op in {N, H}, for a (B, nnz) stack of values sharing one pattern.

    ``solver`` is any object with ``pattern`` and ``_raw_solve(b, op)`` solving a (B, n, k) stack without
    autograd: a direct Factorization (its factors) or an iterative solver (its preconditioner).

    Adjoint (g = dL/dx in torch's conjugate convention, row/col the pattern's entry coordinates):

      op = N:  x = A^{-1} b.        lambda = A^{-H} g;   grad_b = lambda;
               dL = -<lambda, dA x>  =>  grad_A = -lambda x^H  =>  grad_values[k] = -lambda[row_k] conj(x[col_k]).
      op = H:  y = A^{-H} c.        mu = A^{-1} g;       grad_c = mu;
               dy = -A^{-H} dA^H y  =>  grad_A = -(mu y^H)^H = -y mu^H
                                    =>  grad_values[k] = -y[row_k] conj(mu[col_k]).

    Right-hand-side columns are summed. lambda / mu come from the same solver (op flipped), through this
    Function again, so the backward is itself differentiable (double backward). A real matrix has
    A^H = A^T; a Hermitian factorization (Cholesky/LDL^T) solves both ops identically.
    """

    @staticmethod
    def forward(ctx, values: torch.Tensor, b: torch.Tensor, solver, op: str) -> torch.Tensor:
        x = solver._raw_solve(b.detach(), op)
        ctx.solver = solver
        ctx.op = op
        ctx.save_for_backward(values, x)
        return x

    @staticmethod
    def backward(ctx, gx: torch.Tensor):
        values, x = ctx.saved_tensors
        solver, op = ctx.solver, ctx.op
        lam = LinearSolve.apply(values, gx, solver, "H" if op == "N" else "N")
        grad_values = None
        if ctx.needs_input_grad[0]:
            p = solver.pattern
            left, right = (lam, x) if op == "N" else (x, lam)
            grad_values = -(left[:, p.row, :] * right[:, p.col, :].conj()).sum(-1)
        return grad_values, (lam if ctx.needs_input_grad[1] else None), None, None
