"""torch.compile and torch.func through the solves: a compiled training step with no graph break that
gives the eager result, and grad / jacrev / vmap / jvp checked against dense references and finite
differences."""

from __future__ import annotations

import pytest
import torch

import torch_sla as sla
from conftest import poisson2d, random_sparse, registry_backends

F64, C128 = torch.float64, torch.complex128
# (solve keyword arguments, matrix kind) for one direct and every iterative backend
CASES = (
    [({}, "general")]
    + [
        ({"method": "gmres", "backend": be, "rtol": 1e-13}, "general")
        for be in registry_backends("iterative")
    ]
    + [({"method": "cg", "backend": be, "rtol": 1e-13}, "spd") for be in registry_backends("iterative")]
)
IDS = (
    ["direct-auto"]
    + [f"gmres-{be}" for be in registry_backends("iterative")]
    + [f"cg-{be}" for be in registry_backends("iterative")]
)


def _matrix(kind, n=8, dtype=F64, seed=1):
    return sla.SparseTensor.from_dense(random_sparse(n, 0.4, dtype=dtype, kind=kind, seed=seed))


# -- torch.compile ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [c[0] for c in CASES[:2]] + [{"method": "lu", "backend": "eigen"}])
def test_compiled_training_step_matches_eager_without_graph_break(kw):
    torch._dynamo.reset()
    A0 = poisson2d(12)
    v = (A0.values * (1 + 0.1 * torch.rand(A0.nnz, dtype=F64))).requires_grad_()
    b = torch.randn(144, 2, dtype=F64, requires_grad=True)

    def step(values, rhs):
        A = A0.with_values(values)  # builds the SparseTensor inside the compiled step
        x = A.solve(rhs, **kw)
        return (x**2).sum() + x.abs().mean()

    compiled = torch.compile(step, fullgraph=True)  # fullgraph: a graph break would raise
    loss_c = compiled(v, b)
    gv_c, gb_c = torch.autograd.grad(loss_c, (v, b))
    loss_e = step(v, b)
    gv_e, gb_e = torch.autograd.grad(loss_e, (v, b))
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gv_c, gv_e, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(gb_c, gb_e, rtol=1e-8, atol=1e-10)


def test_compiled_backward_reuses_the_forward_factorization(monkeypatch):
    torch._dynamo.reset()
    A0 = poisson2d(10)
    impl = sla.backends()[sla.explain(A0).backend]
    calls = {"n": 0}
    original = impl.factorize

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(impl, "factorize", counting)
    v = A0.values.clone().requires_grad_()
    step = torch.compile(
        lambda vv: A0.with_values(vv).solve(torch.ones(100, dtype=F64)).sum(), fullgraph=True
    )
    for k in range(3):  # new values each step: one factorization per step, none in backward
        vv = (v * (1 + 0.01 * k)).detach().requires_grad_()
        step(vv).backward()
        assert calls["n"] == k + 1


def test_compiled_steps_see_in_place_updates_of_the_values():
    # An optimizer changes the values in place between steps: every compiled step must solve the new
    # matrix (a factorization reused on the values' identity would answer for the old one).
    torch._dynamo.reset()
    A0 = poisson2d(8)
    v = A0.values.clone().requires_grad_()
    b = torch.ones(64, dtype=F64)
    step = torch.compile(lambda vv: (A0.with_values(vv).solve(b) ** 2).sum(), fullgraph=True)
    for _ in range(4):
        loss = step(v)
        loss.backward()
        ref = (torch.linalg.solve(A0.with_values(v.detach()).to_dense(), b) ** 2).sum()
        torch.testing.assert_close(loss.detach(), ref, rtol=1e-10, atol=0)
        with torch.no_grad():
            v.mul_(1.5)
            v.grad = None


def test_compiled_solve_rejects_options_it_cannot_take():
    torch._dynamo.reset()
    A0 = poisson2d(4)
    f = torch.compile(
        lambda v: A0.with_values(v).solve(torch.ones(16, dtype=F64), method="cg", callback=print),
        fullgraph=True,
    )
    with pytest.raises(Exception, match="callback: not supported under torch.compile"):
        f(A0.values.clone())


def test_custom_operator_passes_opcheck():
    A0 = poisson2d(5)
    b = torch.randn(1, 25, 2, dtype=F64)
    args = (
        A0.values.reshape(1, -1).clone().requires_grad_(),
        A0.pattern.crow,
        A0.pattern.col,
        b,
        None,
        25,
        "auto",
        "auto",
        "N",
        True,
        True,
        1e-8,
        0.0,
        0,
        30,
        "auto",
        10,
        1.0,
        4,
        "warn",
    )
    result = torch.library.opcheck(torch.ops.torch_sla.sparse_solve.default, args)
    assert all(v == "SUCCESS" for v in result.values()), result


# -- torch.func -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,kind", CASES, ids=IDS)
def test_func_grad_and_jacrev(kw, kind):
    A0 = _matrix(kind)
    D, v0 = A0.to_dense(), A0.values.detach().clone()
    b = torch.randn(8, dtype=F64, generator=torch.Generator().manual_seed(3))

    def f(v, rhs):
        return A0.with_values(v).solve(rhs, **kw)

    gv = torch.func.grad(lambda v: (f(v, b) ** 2).sum())(v0)
    vv = v0.clone().requires_grad_()
    (f(vv, b) ** 2).sum().backward()
    torch.testing.assert_close(gv, vv.grad, rtol=1e-9, atol=1e-11)
    J = torch.func.jacrev(lambda rhs: f(v0, rhs))(b)
    torch.testing.assert_close(J, torch.linalg.inv(D), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kw,kind", CASES, ids=IDS)
def test_func_vmap_over_b_and_over_values(kw, kind):
    A0 = _matrix(kind)
    D, v0 = A0.to_dense(), A0.values.detach().clone()
    g = torch.Generator().manual_seed(4)
    B = torch.randn(5, 8, dtype=F64, generator=g)
    X = torch.func.vmap(lambda rhs: A0.with_values(v0).solve(rhs, **kw))(B)
    torch.testing.assert_close(X, torch.linalg.solve(D, B.T).T, rtol=1e-9, atol=1e-11)
    scale = 1 + 0.05 * torch.rand(3, 1, dtype=F64, generator=g)  # keeps symmetry for cg
    V = v0 * scale
    b = torch.randn(8, dtype=F64, generator=g)
    X = torch.func.vmap(lambda v: A0.with_values(v).solve(b, **kw))(V)
    ref = torch.stack([torch.linalg.solve(A0.with_values(v).to_dense(), b) for v in V])
    torch.testing.assert_close(X, ref, rtol=1e-9, atol=1e-11)
    # vmap and grad compose: per-sample gradients
    G = torch.func.vmap(torch.func.grad(lambda v: A0.with_values(v).solve(b, **kw).sum()))(V)
    for v, gvec in zip(V, G):
        vv = v.clone().requires_grad_()
        A0.with_values(vv).solve(b, **kw).sum().backward()
        torch.testing.assert_close(gvec, vv.grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kw,kind", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [F64, C128])
def test_func_jvp_matches_finite_differences(kw, kind, dtype):
    A0 = _matrix(kind, dtype=dtype)
    v0 = A0.values.detach().clone()
    g = torch.Generator().manual_seed(5)
    b = torch.randn(8, dtype=dtype, generator=g)
    tv = torch.randn(v0.shape, dtype=dtype, generator=g)
    if kind == "spd":  # a Hermitian direction keeps CG's matrix Hermitian
        T = A0.with_values(tv)
        tv = 0.5 * (T.values + T.H().values)
    tb = torch.randn(8, dtype=dtype, generator=g)

    def f(v, rhs):
        return A0.with_values(v).solve(rhs, **kw)

    _, jv = torch.func.jvp(f, (v0, b), (tv, tb))
    # the tangent A^{-1}(db - dA x), from the dense matrices
    D = A0.to_dense()
    x = torch.linalg.solve(D, b)
    dD = A0.with_values(tv).to_dense()
    torch.testing.assert_close(jv, torch.linalg.solve(D, tb - dD @ x), rtol=1e-8, atol=1e-10)
    eps = 1e-6
    fd = (f(v0 + eps * tv, b + eps * tb) - f(v0 - eps * tv, b - eps * tb)) / (2 * eps)
    torch.testing.assert_close(jv, fd, rtol=1e-5, atol=1e-7)


def test_func_through_a_factorization_object():
    A0 = _matrix("general")
    f = A0.factorize()
    B = torch.randn(4, 8, dtype=F64)
    X = torch.func.vmap(f.solve)(B)
    torch.testing.assert_close(X, torch.linalg.solve(A0.to_dense(), B.T).T)
    J = torch.func.jacrev(f.solve_adjoint)(B[0])
    torch.testing.assert_close(J, torch.linalg.inv(A0.to_dense().T))


def test_func_unsupported_transforms_raise_clearly():
    n = 5
    kappa = torch.rand(n + 1, dtype=F64) + 0.5

    def solve(k, rhs):
        def matvec(x):
            pad = torch.nn.functional.pad(x, (0, 0, 1, 1))
            flux = k[:, None] * (pad[1:] - pad[:-1])
            return -(flux[1:] - flux[:-1]) + x

        return sla.solve(sla.LinearOperator(matvec, (n, n), dtype=F64, parameters=[k]), rhs, method="cg")

    b = torch.ones(n, dtype=F64)
    with pytest.raises(sla.InvalidArgumentError, match="jvp"):
        torch.func.jvp(lambda k: solve(k, b), (kappa,), (torch.ones_like(kappa),))
    with pytest.raises(sla.InvalidArgumentError, match="vmap over the parameters of a LinearOperator"):
        torch.func.vmap(lambda k: solve(k, b))(kappa.expand(3, -1).clone())
    with pytest.raises(sla.InvalidArgumentError, match="nested torch.func transforms"):
        torch.func.grad(lambda k: torch.func.grad(lambda kk: solve(kk, b).sum())(k).sum())(kappa)
    # grad and vmap over b work for matrix-free solves
    g = torch.func.grad(lambda k: solve(k, b).sum())(kappa)
    kk = kappa.clone().requires_grad_()
    solve(kk, b).sum().backward()
    torch.testing.assert_close(g, kk.grad)
    B = torch.randn(3, n, dtype=F64)
    X = torch.func.vmap(lambda rhs: solve(kappa, rhs))(B)
    torch.testing.assert_close(X, torch.stack([solve(kappa, r) for r in B]), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", ["auto", "gmres"])
def test_custom_operator_complex_gradcheck_against_dense(method):
    # The compiled path's operator, called directly: complex128, non-Hermitian, against torch.linalg.solve.
    A0 = _matrix("general", n=6, dtype=C128)
    D = A0.to_dense()
    v = A0.values.reshape(1, -1).clone().requires_grad_()
    g = torch.Generator().manual_seed(6)
    b = torch.complex(
        torch.randn(1, 6, 2, dtype=F64, generator=g), torch.randn(1, 6, 2, dtype=F64, generator=g)
    )
    b.requires_grad_()
    p = A0.pattern

    def f(vv, bb):
        return torch.ops.torch_sla.sparse_solve(
            vv,
            p.crow,
            p.col,
            bb,
            None,
            6,
            "auto",
            method,
            "N",
            True,
            True,
            1e-13,
            0.0,
            0,
            30,
            "auto",
            10,
            1.0,
            4,
            "warn",
        )

    assert torch.autograd.gradcheck(f, (v, b), atol=1e-7)
    w = torch.randn(1, 6, 2, dtype=C128, generator=g)
    (f(v, b).conj() * w).real.sum().backward()
    Dd = D.clone().requires_grad_()
    bd = b.detach().clone().requires_grad_()
    (torch.linalg.solve(Dd, bd[0]).conj() * w[0]).real.sum().backward()
    torch.testing.assert_close(b.grad, bd.grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(v.grad[0], Dd.grad[p.row, p.col], rtol=1e-8, atol=1e-10)
