"""Gradients of direct solves: gradcheck (float64, complex128) per backend, dense references,
double backward, and the one-node graph."""

from __future__ import annotations

import pytest
import torch

import torch_sla as sla
from conftest import autograd_node_names, random_sparse


def _coo(dense):
    row, col = torch.nonzero(dense, as_tuple=True)
    return dense[row, col].detach().clone(), row, col


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("kind", ["general", "spd"])
def test_gradcheck_values_and_b(backend, dtype, kind):
    dense = random_sparse(8, 0.35, dtype=dtype, kind=kind, seed=11)
    v, r, c = _coo(dense)
    declared = sla.backends()[backend].methods
    methods = [m for m in declared if m == "lu" or kind == "spd"]
    b = torch.randn(8, 2, dtype=dtype)
    for method in methods:
        vv = v.clone().requires_grad_()
        bb = b.clone().requires_grad_()

        def f(values, rhs, method=method):
            if method in ("cholesky", "ldl"):
                # Keep the perturbed matrix Hermitian: symmetrize the perturbation through the pattern.
                A = sla.SparseTensor(values, r, c, (8, 8))
                A = A.with_values(0.5 * (A.values + A.H().values))
            else:
                A = sla.SparseTensor(values, r, c, (8, 8))
            return A.solve(rhs, backend=backend, method=method)

        assert torch.autograd.gradcheck(f, (vv, bb), eps=1e-6, atol=1e-6, rtol=1e-5), method


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_gradients_match_dense_solve(backend, dtype):
    dense = random_sparse(12, 0.3, dtype=dtype, kind="general", seed=5)
    v, r, c = _coo(dense)
    b = torch.randn(12, 3, dtype=dtype)
    w = torch.randn(12, 3, dtype=dtype)

    v1, b1 = v.clone().requires_grad_(), b.clone().requires_grad_()
    x = sla.spsolve(v1, r, c, (12, 12), b1, backend=backend)
    (x * w).real.sum().backward()

    v2, b2 = v.clone().requires_grad_(), b.clone().requires_grad_()
    D = torch.zeros(12, 12, dtype=dtype).index_put((r, c), v2)
    x2 = torch.linalg.solve(D, b2)
    (x2 * w).real.sum().backward()
    torch.testing.assert_close(x, x2)
    torch.testing.assert_close(b1.grad, b2.grad)
    torch.testing.assert_close(v1.grad, v2.grad)


def test_gradients_come_back_in_caller_coo_order_with_duplicates():
    # Shuffled COO with a duplicate (0, 0) split in two.
    row = torch.tensor([1, 0, 1, 0, 0])
    col = torch.tensor([1, 0, 0, 1, 0])
    val = torch.tensor([3.0, 2.0, 1.0, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    x = sla.spsolve(val, row, col, (2, 2), b)
    x.sum().backward()
    D = torch.tensor([[4.0, 0.5], [1.0, 3.0]], dtype=torch.float64, requires_grad=True)
    torch.linalg.solve(D, b).sum().backward()
    expected = D.grad[row, col]
    torch.testing.assert_close(val.grad, expected)


def test_batched_gradients_match_dense(backend):
    dense = torch.stack([random_sparse(10, 0.3, kind="general", seed=s) for s in range(3)])
    mask = (dense != 0).any(0)
    r, c = torch.nonzero(mask, as_tuple=True)
    v = dense[:, r, c].clone().requires_grad_()
    b = torch.randn(10, dtype=torch.float64, requires_grad=True)  # broadcast over the batch
    x = sla.SparseTensor(v, r, c, (3, 10, 10)).solve(b, backend=backend)
    x.pow(2).sum().backward()
    v2 = v.detach().clone().requires_grad_()
    b2 = b.detach().clone().requires_grad_()
    D = torch.zeros(3, 10, 10, dtype=torch.float64)
    D[:, r, c] = v2
    torch.linalg.solve(D, b2.expand(3, 10)).pow(2).sum().backward()
    torch.testing.assert_close(v.grad, v2.grad)
    torch.testing.assert_close(b.grad, b2.grad)


def test_double_backward(backend):
    dense = random_sparse(6, 0.4, kind="general", seed=9)
    v, r, c = _coo(dense)
    v.requires_grad_()
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)

    def f(values, rhs):
        return sla.spsolve(values, r, c, (6, 6), rhs, backend=backend)

    assert torch.autograd.gradgradcheck(f, (v, b), eps=1e-6, atol=1e-5)


def test_one_autograd_node_per_solve_and_backward_reuses_factors(monkeypatch):
    A = sla.SparseTensor.from_dense(random_sparse(20, 0.2, kind="spd", seed=2))
    values = A.values.detach().clone().requires_grad_()
    A = A.with_values(values)
    b = torch.randn(20, dtype=torch.float64, requires_grad=True)
    f = A.factorize()
    calls = {"factorize": 0}
    impl = sla.backends()[f.backend]
    original = impl.factorize

    def counting(*args, **kwargs):
        calls["factorize"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(impl, "factorize", counting)
    x = f.solve(b)
    # Walk the graph from x to the leaves: exactly one solve node, the rest are views/accumulators.
    names = autograd_node_names(x)
    assert sum("LinearSolve" in nm for nm in names) == 1, names
    assert all(
        ("LinearSolve" in nm)
        or nm
        in (
            "AccumulateGrad",
            "ViewBackward0",
            "SqueezeBackward1",
            "UnsqueezeBackward0",
            "ReshapeAliasBackward0",
        )
        for nm in names
    ), names
    x.sum().backward()
    assert calls["factorize"] == 0
    assert values.grad is not None and b.grad is not None


def test_matmul_is_differentiable():
    dense = random_sparse(7, 0.4, kind="general", seed=8)
    v, r, c = _coo(dense)
    v.requires_grad_()
    x = torch.randn(7, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda vv, xx: sla.SparseTensor(vv, r, c, (7, 7)) @ xx, (v, x))
    A = sla.SparseTensor(v.detach(), r, c, (7, 7))
    torch.testing.assert_close(A @ x.detach(), dense @ x.detach())
    torch.testing.assert_close(A @ x.detach()[:, 0], dense @ x.detach()[:, 0])
