"""Shared fixtures: small matrices of known structure, built with torch only."""

from __future__ import annotations

import glob
import os

import pytest
import torch

import torch_sla as sla

# backend="auto" follows the registry's order in the tests, on every machine; the cost model has its own
# tests with calibration files (test_costmodel.py).
os.environ.setdefault("TORCH_SLA_CALIBRATION", "off")


def same_package_preamble() -> str:
    """Python source that makes a child process import the torch_sla this process imported: a built copy
    (its own ``_C`` beside it, e.g. the Eigen-only build) from its folder, ahead of the editable install;
    the editable install as it is (its ``_C`` lives in the build folder its finder points to)."""
    parent = os.path.dirname(os.path.dirname(os.path.abspath(sla.__file__)))
    if not glob.glob(os.path.join(parent, "torch_sla", "_C*.so")):
        return "import sys\n"
    return (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if '_editable' not in type(f).__module__]\n"
        f"sys.path.insert(0, {parent!r})\n"
    )


# Test parameters come from the backend registry: a newly registered backend is tested by every test
# that takes these lists, with each of the methods it declares.
def registry_backends(kind: str, device: str = "cpu") -> list[str]:
    """Names of the available backends of ``kind`` that run on ``device``, in registry order."""
    return [b.name for b in sla.backends().values() if b.kind == kind and b.available and device in b.devices]


def registry_cases(kind: str, device: str = "cpu") -> list[tuple[str, str]]:
    """Every (backend, method) pair the registry declares for ``kind`` on ``device``."""
    return [(name, m) for name in registry_backends(kind, device) for m in sla.backends()[name].methods]


DIRECT_BACKENDS = registry_backends("direct")
ITERATIVE_BACKENDS = registry_backends("iterative")


def poisson2d(m: int, dtype=torch.float64) -> sla.SparseTensor:
    """5-point Laplacian on an m x m grid (SPD), as COO."""
    n = m * m
    idx = torch.arange(n)
    x, y = idx % m, idx // m
    rows, cols, vals = [idx], [idx], [torch.full((n,), 4.0)]
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        ok = (x + dx >= 0) & (x + dx < m) & (y + dy >= 0) & (y + dy < m)
        rows.append(idx[ok])
        cols.append(idx[ok] + dx + dy * m)
        vals.append(torch.full((int(ok.sum()),), -1.0))
    return sla.SparseTensor(torch.cat(vals).to(dtype), torch.cat(rows), torch.cat(cols), (n, n))


def random_sparse(n: int, density: float, *, dtype=torch.float64, kind: str = "general", seed: int = 0):
    """A random well-conditioned sparse matrix: 'general', 'spd' (Hermitian PD) or 'symmetric' (indefinite)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, n, generator=g) < density
    real = torch.randn(n, n, generator=g, dtype=torch.float64)
    if dtype.is_complex:
        dense = torch.complex(real, torch.randn(n, n, generator=g, dtype=torch.float64))
    else:
        dense = real
    dense = dense * mask
    if kind == "general":
        dense = dense + n * torch.eye(n, dtype=dense.dtype)
    elif kind == "spd":
        dense = dense + dense.mH + 2 * n * torch.eye(n, dtype=dense.dtype)
    elif kind == "symmetric":
        dense = dense + dense.mH
        signs = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0).to(torch.float64)
        dense = dense + torch.diag(signs * 2 * n).to(dense.dtype)
    else:
        raise ValueError(kind)
    return dense.to(dtype)


def autograd_node_names(t: torch.Tensor) -> list[str]:
    """Class names of every node in t's autograd graph (walked from t.grad_fn to the leaves)."""
    seen, stack, names = set(), [t.grad_fn], []
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.append(type(fn).__name__)
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return names


@pytest.fixture(params=DIRECT_BACKENDS)
def backend(request):
    return request.param
