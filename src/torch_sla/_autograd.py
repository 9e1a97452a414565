"""The one autograd primitive shared by every linear solve: x = op(A(theta))^{-1} b.

Direct factorizations, iterative solvers and matrix-free operators all go through :class:`LinearSolve`;
they differ only in the :class:`Solver` that does the raw solves and knows how A depends on its
parameters theta (the values on a sparsity pattern, or the tensors a matrix-free ``matvec`` uses).

LinearSolve is written in the ``setup_context`` form, with a forward-mode rule (``jvp``) and a batching
rule (``vmap``), so ``torch.func`` (grad, jacrev, jvp, vmap) works through it. Its forward receives a
:class:`SolverSource` rather than a solver: inside ``torch.func`` transforms the tensors reach
``forward`` unwrapped, and only there can the C++ core read them, so a source builds its solver (a
factorization, preconditioners) from the parameters it is given on first use and reuses it for the
adjoint solve of backward. Under ``torch.compile`` the solve goes through the custom operator of
:mod:`torch_sla._compile` instead, which calls the same sources.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Solver(Protocol):
    """What a source builds: ``raw_solve(b, op)`` solves ``op(A) x = b`` for a ``(B, n, k)`` stack
    without autograd, with ``op`` "N" (A) or "H" (A^H); the same object serves the forward solve and
    backward's adjoint solve (so a factorization or preconditioner built once is reused)."""

    def raw_solve(self, b: torch.Tensor, op: str) -> torch.Tensor: ...


class SolverSource(Protocol):
    """What :class:`LinearSolve` is given: where its solver comes from, and how A depends on theta.

    ``solver_for(params)`` returns the solver for these parameter values (built on the first call, the
    same object afterwards); ``rebatched()`` a fresh source that builds one for a new stack of
    parameters (``vmap`` over the values).

    ``params_vjp(params, left, right)`` is the vector-Jacobian product of ``theta -> A(theta) @ right``
    at the cotangent ``-left``, for ``(B, n, k)`` blocks, summed over the columns. It must use
    differentiable torch ops, so that backward is itself differentiable.

    ``params_jvp(params, tangents, x, op)`` is ``d(op(A)) x``, the directional derivative of
    ``theta -> op(A(theta)) x`` along the tangents (forward mode).

    Both depend on the structure only (a pattern, an operator), not on a built solver.
    """

    def solver_for(self, params: tuple[torch.Tensor, ...]) -> Solver: ...

    def rebatched(self) -> SolverSource: ...

    def params_vjp(
        self, params: tuple[torch.Tensor, ...], left: torch.Tensor, right: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]: ...

    def params_jvp(
        self, params: tuple[torch.Tensor, ...], tangents: tuple, x: torch.Tensor, op: str
    ) -> torch.Tensor: ...


def flip(op: str) -> str:
    return "H" if op == "N" else "N"


class LinearSolve(torch.autograd.Function):
    """x = op(A)^{-1} b, ``LinearSolve.apply(source, op, b, *params)`` with b a (B, n, k) stack.

    Adjoint (g = dL/dx in torch's conjugate convention):

      op = N:  x = A^{-1} b.     lambda = A^{-H} g;   grad_b = lambda;
               dx = -A^{-1} dA x   =>  dL = -Re <lambda, dA x>
               =>  grad_theta = VJP of (theta -> A(theta) x) at -lambda.
      op = H:  y = A^{-H} c.     mu = A^{-1} g;       grad_c = mu;
               dy = -A^{-H} dA^H y  =>  dL = -Re <mu, dA^H y> = -Re <y, dA mu>
               =>  grad_theta = VJP of (theta -> A(theta) mu) at -y.

    So with (left, right) = (lambda, x) for N and (y, mu) for H, grad_theta = params_vjp(theta, left,
    right). For values on a CSR pattern this is grad_values[k] = -sum_cols left[row_k] * conj(right[col_k])
    (on the stored pattern only). lambda / mu come from the same solver with op flipped, through this
    Function again, and params_vjp uses differentiable ops: backward is itself differentiable.

    Forward mode: differentiating op(A) x = b gives op(A) dx = db - d(op(A)) x, so the tangent is
    dx = op(A)^{-1} (db - params_jvp(theta, dtheta, x, op)): one more solve with the same solver.

    Batching (vmap): a batch of right-hand sides only is folded into the columns of b (one solve with
    V k right-hand sides and the same solver); a batch of parameters into the batch of matrices (V B
    members, with a solver built for them).
    """

    @staticmethod
    def forward(source, op: str, b: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        return source.solver_for(params).raw_solve(b.detach(), op)

    @staticmethod
    def setup_context(ctx, inputs, output):
        source, op, _b, *params = inputs
        ctx.source, ctx.op = source, op
        ctx.save_for_backward(output, *params)
        ctx.save_for_forward(output, *params)

    @staticmethod
    def backward(ctx, gx: torch.Tensor):
        x, *params = ctx.saved_tensors
        source, op = ctx.source, ctx.op
        lam = LinearSolve.apply(source, flip(op), gx, *params)
        grads: tuple = (None,) * len(params)
        if any(ctx.needs_input_grad[3:]):
            left, right = (lam, x) if op == "N" else (x, lam)
            grads = source.params_vjp(tuple(params), left, right)
            grads = tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad[3:]))
        return (None, None, lam if ctx.needs_input_grad[2] else None, *grads)

    @staticmethod
    def jvp(ctx, _source_t, _op_t, db, *dparams):
        x, *params = ctx.saved_tensors
        rhs = torch.zeros_like(x) if db is None else db
        if any(t is not None for t in dparams):
            rhs = rhs - ctx.source.params_jvp(tuple(params), dparams, x, ctx.op)
        return LinearSolve.apply(ctx.source, ctx.op, rhs, *params)

    @staticmethod
    def vmap(info, in_dims, source, op, b, *params):
        V = info.batch_size
        bdim, pdims = in_dims[2], in_dims[3:]
        if all(d is None for d in pdims):
            bb = b.movedim(bdim, -1)  # (B, n, k, V): the vmapped systems become more columns
            B, n, k = bb.shape[:3]
            x = LinearSolve.apply(source, op, bb.reshape(B, n, k * V), *params)
            return x.reshape(B, n, k, V).movedim(-1, 0), 0
        stacked = [p.movedim(d, 0) if d is not None else p.expand(V, *p.shape) for p, d in zip(params, pdims)]
        B = stacked[0].shape[1]
        bb = b.movedim(bdim, 0) if bdim is not None else b.expand(V, *b.shape)
        if bb.shape[1] != B:
            bb = bb.expand(V, B, *bb.shape[2:])
        flat = [p.reshape(V * p.shape[1], *p.shape[2:]) for p in stacked]
        x = LinearSolve.apply(source.rebatched(), op, bb.reshape(V * B, *bb.shape[2:]), *flat)
        return x.reshape(V, B, *x.shape[1:]), 0


def pattern_vjp(pattern, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``params_vjp`` for (B, nnz) values on a CSR pattern: -sum_cols left[row] conj(right[col])."""
    return -(left[:, pattern.row, :] * right[:, pattern.col, :].conj()).sum(-1)


def pattern_jvp(pattern, dvalues: torch.Tensor, x: torch.Tensor, op: str) -> torch.Tensor:
    """``params_jvp`` for (B, nnz) values on a CSR pattern: dA x (op N) or dA^H x (op H), (B, n, k)."""
    if op == "N":
        prod = dvalues[:, :, None] * x[:, pattern.col, :]
        return torch.zeros_like(x).index_add(1, pattern.row, prod)
    prod = dvalues.conj()[:, :, None] * x[:, pattern.row, :]
    return torch.zeros_like(x).index_add(1, pattern.col, prod)


def solve_through(source, op: str, b: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """``LinearSolve.apply(source, op, b, *params)``, or the raw solve itself when no derivative can be
    asked for (no grad mode or no input requiring grad, no forward-mode level, no torch.func transform):
    the same result without the autograd node's cost, for inference loops of small solves."""
    needs_node = torch.autograd.forward_ad._current_level >= 0
    grad_mode = torch.is_grad_enabled()
    wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    for t in (b, *params):
        if (grad_mode and t.requires_grad) or wrapped(t):
            needs_node = True
            break
    if needs_node:
        return LinearSolve.apply(source, op, b, *params)
    return source.solver_for(params).raw_solve(b, op)
