"""Matrix-free operators on the torch backend: solves, and gradients to the operator's own parameters
(one adjoint solve plus one vector-Jacobian product of the matvec)."""

from __future__ import annotations

import pytest
import torch

import torch_sla as sla

F64 = torch.float64


def diffusion_operator(kappa: torch.Tensor):
    """A = D^T diag(kappa) D + I on a 1D grid: SPD, depends on the parameter kappa (n + 1 edges)."""
    n = kappa.numel() - 1

    def matvec(x):  # x: (n, k)
        pad = torch.nn.functional.pad(x, (0, 0, 1, 1))  # Dirichlet zeros
        flux = kappa[:, None] * (pad[1:] - pad[:-1])  # (n + 1, k)
        return -(flux[1:] - flux[:-1]) + x

    return sla.LinearOperator(matvec, (n, n), dtype=F64, parameters=[kappa]), matvec


def dense_of(matvec, n):
    return matvec(torch.eye(n, dtype=F64))


@pytest.mark.parametrize("method", ["cg", "gmres", "minres", "bicgstab"])
def test_matrix_free_solve_matches_dense(method):
    kappa = torch.rand(21, dtype=F64) + 0.5
    op, mv = diffusion_operator(kappa)
    b = torch.randn(20, dtype=F64)
    x = sla.solve(op, b, method=method, rtol=1e-12)
    torch.testing.assert_close(x, torch.linalg.solve(dense_of(mv, 20), b), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", ["cg", "gmres"])
def test_gradients_to_operator_parameters(method):
    kappa = (torch.rand(9, dtype=F64) + 0.5).requires_grad_()
    b = torch.randn(8, dtype=F64, requires_grad=True)

    def f(k, rhs):
        op, _ = diffusion_operator(k)
        return sla.solve(op, rhs, method=method, rtol=1e-13, maxiter=1000)

    assert torch.autograd.gradcheck(f, (kappa, b), eps=1e-6, atol=1e-6, rtol=1e-5)
    # Against the dense reference.
    x = f(kappa, b)
    (x**2).sum().backward()
    k2 = kappa.detach().clone().requires_grad_()
    b2 = b.detach().clone().requires_grad_()
    _, mv = diffusion_operator(k2)
    (torch.linalg.solve(dense_of(mv, 8), b2) ** 2).sum().backward()
    torch.testing.assert_close(kappa.grad, k2.grad, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(b.grad, b2.grad, rtol=1e-6, atol=1e-9)


def test_unsymmetric_operator_uses_vjp_for_the_adjoint():
    torch.manual_seed(0)
    W = (torch.randn(10, 10, dtype=F64) * 0.1 + 3 * torch.eye(10, dtype=F64)).requires_grad_()
    op = sla.LinearOperator(lambda x: W @ x, (10, 10), dtype=F64, parameters=[W])
    b = torch.randn(10, dtype=F64)
    x, info = sla.solve(op, b, method="gmres", rtol=1e-12, return_info=True)
    x.sum().backward()
    assert info.adjoint is not None and info.adjoint.converged
    W2 = W.detach().clone().requires_grad_()
    torch.linalg.solve(W2, b).sum().backward()
    torch.testing.assert_close(W.grad, W2.grad, rtol=1e-7, atol=1e-9)


def test_matrix_free_bad_input():
    kappa = torch.ones(5, dtype=F64)
    op, _ = diffusion_operator(kappa)
    with pytest.raises(ValueError, match=r"b: expected shape \(4,\)"):
        sla.solve(op, torch.ones(5, dtype=F64), method="cg")
    with pytest.raises(ValueError, match="b: expected dtype"):
        sla.solve(op, torch.ones(4, dtype=torch.float32), method="cg")
    with pytest.raises(ValueError, match="backend: a LinearOperator"):
        sla.solve(op, torch.ones(4, dtype=F64), backend="core")
    with pytest.raises(ValueError, match="method: a LinearOperator"):
        sla.solve(op, torch.ones(4, dtype=F64), method="lu")
    with pytest.raises(ValueError, match="shape: expected a square"):
        sla.LinearOperator(lambda x: x, (3, 4))


def test_lstsq_matches_dense_and_gradcheck():
    torch.manual_seed(1)
    dense = torch.randn(12, 5, dtype=F64) * (torch.rand(12, 5) < 0.6)
    dense += torch.eye(12, 5, dtype=F64) * 3
    A = sla.SparseTensor.from_dense(dense)
    b = torch.randn(12, dtype=F64)
    x, info = sla.lstsq(A, b, return_info=True)
    assert info.converged
    torch.testing.assert_close(x, torch.linalg.lstsq(dense, b.unsqueeze(-1)).solution.squeeze(-1))
    r, c = A.row_indices, A.col_indices
    v = A.values.clone().requires_grad_()
    bb = b.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda vv, rhs: sla.lstsq(sla.SparseTensor(vv, r, c, (12, 5)), rhs, rtol=1e-13), (v, bb), atol=1e-6
    )
    with pytest.raises(ValueError, match=r"b: expected shape \(12,\)"):
        sla.lstsq(A, torch.ones(5, dtype=F64))


def test_lstsq_double_backward_and_func_grad():
    g = torch.Generator().manual_seed(1)
    dense = torch.randn(10, 4, dtype=F64, generator=g) * (torch.rand(10, 4, generator=g) < 0.7)
    dense[:4, :4] += 3 * torch.eye(4, dtype=F64)
    A = sla.SparseTensor.from_dense(dense)
    r, c = A.pattern.row, A.pattern.col
    v = A.values.clone().requires_grad_()
    b = torch.randn(10, dtype=F64, generator=g, requires_grad=True)

    def f(vv, rhs):
        return sla.lstsq(sla.SparseTensor(vv, r, c, (10, 4)), rhs, rtol=1e-14)

    assert torch.autograd.gradgradcheck(f, (v, b), atol=1e-5, rtol=1e-4)
    gv = torch.func.grad(lambda vv: (f(vv, b.detach()) ** 2).sum())(v.detach())
    vv = v.detach().clone().requires_grad_()
    (f(vv, b.detach()) ** 2).sum().backward()
    torch.testing.assert_close(gv, vv.grad)


def test_lstsq_complex_gradcheck_against_dense():
    g = torch.Generator().manual_seed(3)
    C128 = torch.complex128
    dense = torch.complex(
        torch.randn(9, 4, dtype=F64, generator=g), torch.randn(9, 4, dtype=F64, generator=g)
    )
    dense = dense * (torch.rand(9, 4, generator=g) < 0.7)
    dense[:4, :4] += 3 * torch.eye(4, dtype=C128)
    A = sla.SparseTensor.from_dense(dense)
    r, c = A.pattern.row, A.pattern.col
    v = A.values.clone().requires_grad_()
    b = torch.complex(torch.randn(9, dtype=F64, generator=g), torch.randn(9, dtype=F64, generator=g))
    b.requires_grad_()

    def f(vv, rhs):
        return sla.lstsq(sla.SparseTensor(vv, r, c, (9, 4)), rhs, rtol=1e-14)

    assert torch.autograd.gradcheck(f, (v, b), atol=1e-6)
    w = torch.randn(4, dtype=C128, generator=g)
    (f(v, b).conj() * w).real.sum().backward()
    Dd = dense.clone().requires_grad_()
    bd = b.detach().clone().requires_grad_()
    (torch.linalg.lstsq(Dd, bd.unsqueeze(-1)).solution.squeeze(-1).conj() * w).real.sum().backward()
    torch.testing.assert_close(b.grad, bd.grad, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(v.grad, Dd.grad[r, c], rtol=1e-7, atol=1e-9)
