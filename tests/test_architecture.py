"""The structure the rest of the library plugs into: no import cycle, backends as registered objects,
one operator protocol whose reductions the Krylov kernels use, and one differentiable solve primitive."""

from __future__ import annotations

import ast
import pathlib

import pytest
import torch

import torch_sla as sla
from conftest import autograd_node_names, poisson2d, random_sparse
from torch_sla import _registry

PKG = pathlib.Path(sla.__file__).parent
F64 = torch.float64


def _internal_imports(path: pathlib.Path) -> tuple[set[str], list[str]]:
    """(modules of the package imported at module level, imports of the package inside functions)."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    nested: list[str] = []

    def names(node) -> list[str]:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                return [node.module.split(".")[0]]
            return [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("torch_sla"):
            return [node.module.split(".")[1] if "." in node.module else "__init__"]
        return []

    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            top.update(names(node))
        elif isinstance(node, ast.Try):
            for sub in node.body:
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    top.update(names(sub))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)) and names(sub):
                    nested.append(f"{path.name}:{sub.lineno} imports {names(sub)} inside {node.name}()")
    return top, nested


def test_no_import_cycle_and_no_imports_inside_functions():
    graph, nested = {}, []
    for path in sorted(PKG.glob("*.py")):
        if path.name == "__init__.py":
            continue
        top, inner = _internal_imports(path)
        graph[path.stem] = {m for m in top if m not in ("_C", "errors")}
        nested += inner
    assert not nested, "imports of torch_sla modules inside functions:\n" + "\n".join(nested)
    # Depth-first search for a cycle.
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in graph.get(m, ()):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [m, d]))
            if d not in state:
                visit(d, stack + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_every_backend_declares_its_contract():
    for name, b in sla.backends().items():
        assert b.name == name and b.kind in ("direct", "iterative")
        assert b.devices and set(b.dtypes) <= {"float32", "float64", "complex64", "complex128"}
        assert b.methods and "solve" in b.operations
        assert isinstance(b.available, bool) and isinstance(b.note, str)
        if b.kind == "iterative":
            assert hasattr(b, "auto_preconditioner") and hasattr(b, "solve_member")
        else:
            assert hasattr(b, "factorize")


class _DenseFactor:
    def __init__(self, lu):
        self.lu = lu
        self.factor_nnz = lu[0].numel()

    def solve(self, b, op):
        LU, piv = self.lu
        return torch.linalg.lu_solve(LU, piv, b, adjoint=op == "H")


class DenseLUBackend(_registry.Backend):
    """A toy direct backend: dense LU with torch. Registering it is all it takes to be chosen."""

    name = "dense_test"
    kind = "direct"
    devices = ("cpu",)
    methods = ("lu",)
    operations = frozenset({"solve", "factorize"})
    priority = {"cpu": -1}  # preferred over every built-in backend

    def availability(self):
        return True, "torch.linalg.lu_factor (test only)"

    def factorize(self, A, method):
        dense = A.detach().to_dense().reshape(-1, *A.shape[-2:])
        return [_DenseFactor(torch.linalg.lu_factor(d)) for d in dense], False


def test_a_new_backend_is_added_by_registering_it():
    saved = dict(_registry._REGISTRY)
    try:
        sla.register(DenseLUBackend())
        D = random_sparse(6, 0.5, kind="general", seed=3)
        A = sla.SparseTensor.from_dense(D)
        c = sla.explain(A)
        assert c.backend == "dense_test" and c.method == "lu" and "fastest available" in str(c)
        v = A.values.clone().requires_grad_()
        b = torch.randn(6, dtype=F64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda vv, bb: A.with_values(vv).solve(bb), (v, b))
        x = A.solve(b.detach())
        assert torch.allclose(x, torch.linalg.solve(D, b.detach()))
        assert sla.backends()["dense_test"].supports(torch.device("cpu"), F64, "cholesky") is not None
    finally:
        _registry._REGISTRY.clear()
        _registry._REGISTRY.update(saved)
    assert "dense_test" not in sla.backends()


def test_per_device_preference_lists():
    cpu_direct = [b.name for b in _registry.preference("cpu", "direct")]
    assert cpu_direct[:3] == ["suitesparse", "eigen", "scipy"]
    assert [b.name for b in _registry.preference("cpu", "iterative")] == ["core", "torch"]
    assert [b.name for b in _registry.preference("cuda", "iterative")] == ["cuda", "torch", "cupy_krylov"]
    assert [b.name for b in _registry.preference("cuda", "direct")] == ["cudss", "cupy"]


class CountingOperator(sla.LinearOperator):
    """An operator whose reductions are counted: a distributed operator would all-reduce here."""

    def __init__(self, D):
        super().__init__(lambda x: D @ x, D.shape, dtype=D.dtype)
        self.reductions = 0

    def reduce(self, partial):
        self.reductions += 1
        return partial


@pytest.mark.parametrize("method", ["cg", "bicgstab", "gmres", "minres"])
def test_krylov_kernels_take_every_reduction_from_the_operator(method):
    kind = "spd" if method in ("cg", "minres") else "general"
    D = random_sparse(30, 0.2, kind=kind, seed=4)
    op = CountingOperator(D)
    b = torch.randn(30, 2, dtype=F64)
    x = sla.solve(op, b, method=method, rtol=1e-12)
    assert torch.allclose(x, torch.linalg.solve(D, b), atol=1e-9)
    assert op.reductions > 10


def test_sparse_tensor_is_an_operator():
    A = poisson2d(4)
    assert isinstance(A, sla.Operator)
    x = torch.randn(16, 3, dtype=F64)
    assert torch.allclose(A.matvec(x), A.to_dense() @ x)
    assert torch.allclose(A.rmatvec(x), A.to_dense().T @ x)
    assert torch.allclose(A.norm(x), torch.linalg.vector_norm(x, dim=0))


def test_matrix_free_double_backward():
    n = 6
    kappa = (torch.rand(n + 1, dtype=F64) + 0.5).requires_grad_()
    b = torch.randn(n, dtype=F64, requires_grad=True)

    def f(k, rhs):
        def matvec(x):
            pad = torch.nn.functional.pad(x, (0, 0, 1, 1))
            flux = k[:, None] * (pad[1:] - pad[:-1])
            return -(flux[1:] - flux[:-1]) + x

        op = sla.LinearOperator(matvec, (n, n), dtype=F64, parameters=[k])
        return sla.solve(op, rhs, method="gmres", rtol=1e-13)

    assert torch.autograd.gradgradcheck(f, (kappa, b), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_the_one_primitive_serves_direct_iterative_and_matrix_free():
    A = poisson2d(3)
    v = A.values.clone().requires_grad_()
    b = torch.ones(9, dtype=F64)

    def solves(x):
        return [nm for nm in autograd_node_names(x) if "Backward" in nm and nm.startswith("LinearSolve")]

    for kw in ({}, {"method": "cg", "backend": "core"}, {"method": "cg", "backend": "torch"}):
        assert solves(A.with_values(v).solve(b, **kw)) == ["LinearSolveBackward"], kw
    op = sla.LinearOperator(lambda x: A.to_dense() @ x, (9, 9), dtype=F64)
    assert solves(sla.solve(op, b.clone().requires_grad_(), method="cg")) == ["LinearSolveBackward"]


def test_options_are_validated_once_as_a_dataclass():
    from torch_sla._options import KrylovOptions

    o = KrylovOptions.from_kwargs({"rtol": 1e-6, "restart": 50})
    assert o.rtol == 1e-6 and o.restart == 50 and o.max_iterations(7) == 70
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        KrylovOptions.from_kwargs({"tolerance": 1e-6})


def test_cached_plan_and_finiteness_follow_in_place_changes():
    A = poisson2d(3)
    b = torch.ones(9, dtype=F64)
    A.solve(b)  # plans Cholesky and caches the plan on A
    A.values[1] += 1.0  # no longer symmetric
    x = A.solve(b)
    assert torch.allclose(A.to_dense() @ x, b)
    with pytest.raises(sla.InvalidArgumentError, match="needs a symmetric matrix"):
        A.solve(b, method="cholesky")
    A.values[2] = float("nan")
    with pytest.raises(sla.InvalidArgumentError, match="A.values: contains NaN"):
        A.solve(b)


def test_solves_without_a_graph_skip_the_autograd_node_and_agree():
    A = poisson2d(4)
    v = A.values.clone().requires_grad_()
    b = torch.ones(16, dtype=F64)
    with_graph = A.with_values(v).solve(b)
    with torch.no_grad():
        without = A.with_values(v).solve(b)
    plain = A.solve(b)
    assert with_graph.grad_fn is not None and without.grad_fn is None and plain.grad_fn is None
    assert torch.equal(with_graph.detach(), without) and torch.equal(without, plain)


@pytest.mark.parametrize(
    "kw", [{}, {"backend": "eigen", "method": "lu"}, {"method": "cg", "backend": "core"}, {"method": "gmres"}]
)
def test_a_batch_is_solved_in_one_core_call_and_matches_member_solves(kw):
    A0 = poisson2d(6)
    g = torch.Generator().manual_seed(2)
    V = A0.values * (1 + 0.2 * torch.rand(5, 1, dtype=F64, generator=g))  # 5 SPD members, one pattern
    V = V.clone().requires_grad_()
    B = torch.randn(5, 36, 2, dtype=F64, generator=g)
    X = A0.with_values(V).solve(B, **kw)
    for i in range(5):
        Xi = A0.with_values(V[i].detach()).solve(B[i], **kw)
        torch.testing.assert_close(X[i].detach(), Xi, rtol=1e-7, atol=1e-9)
    X.sum().backward()
    vi = V[3].detach().clone().requires_grad_()
    A0.with_values(vi).solve(B[3], **kw).sum().backward()
    torch.testing.assert_close(V.grad[3], vi.grad, rtol=1e-6, atol=1e-8)


def test_cholesky_fallback_leaves_the_cached_plan_alone_and_is_remembered():
    # symmetric with a positive diagonal but indefinite: auto tries Cholesky, which breaks down
    D = torch.tensor([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 3.0]], dtype=F64)
    A = sla.SparseTensor.from_dense(D)
    b = torch.ones(3, dtype=F64)
    f = A.factorize()
    assert f.method == "lu" and "fell back to lu" in f.info["reasons"][-1]
    assert sla.explain(A).method == "lu"  # the pattern remembers the breakdown
    for _ in range(2):
        assert torch.allclose(D @ A.solve(b), b)
