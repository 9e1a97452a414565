"""Benchmark matrices, built with scipy.sparse (fast, and the same matrices SciPy's solvers get)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree


def _lap1d(m: int) -> sp.csr_matrix:
    return sp.diags([-np.ones(m - 1), 2 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1], format="csr")


def poisson2d(m: int) -> sp.csr_matrix:
    """5-point Laplacian, m x m grid, Dirichlet: SPD, n = m^2."""
    eye, t = sp.identity(m, format="csr"), _lap1d(m)
    return sp.csr_matrix(sp.kron(eye, t) + sp.kron(t, eye))


def poisson3d(m: int) -> sp.csr_matrix:
    """7-point Laplacian, m^3 grid, Dirichlet: SPD, n = m^3."""
    eye, t = sp.identity(m, format="csr"), _lap1d(m)
    return sp.csr_matrix(
        sp.kron(sp.kron(eye, eye), t) + sp.kron(sp.kron(eye, t), eye) + sp.kron(sp.kron(t, eye), eye)
    )


def convection_diffusion2d(m: int, peclet: float = 50.0) -> sp.csr_matrix:
    """-Laplace(u) + w . grad(u) with first-order upwind convection, w = (1, 0.5): unsymmetric, n = m^2."""
    h = 1.0 / (m + 1)
    eye = sp.identity(m, format="csr")
    d1 = sp.diags(
        [-np.ones(m - 1), np.ones(m)], [-1, 0], format="csr"
    )  # backward difference (upwind for w > 0)
    conv = peclet * h * (sp.kron(eye, d1) + 0.5 * sp.kron(d1, eye))
    return sp.csr_matrix(poisson2d(m) + conv)


def convection_diffusion3d(m: int, peclet: float = 50.0) -> sp.csr_matrix:
    """The 3-D analogue of convection_diffusion2d, w = (1, 0.5, 0.25): unsymmetric, n = m^3."""
    h = 1.0 / (m + 1)
    eye = sp.identity(m, format="csr")
    d1 = sp.diags([-np.ones(m - 1), np.ones(m)], [-1, 0], format="csr")
    conv = (
        peclet
        * h
        * (
            sp.kron(sp.kron(eye, eye), d1)
            + 0.5 * sp.kron(sp.kron(eye, d1), eye)
            + 0.25 * sp.kron(sp.kron(d1, eye), eye)
        )
    )
    return sp.csr_matrix(poisson3d(m) + conv)


def banded_spd(n: int, bandwidth: int, seed: int = 0) -> sp.csr_matrix:
    """A random symmetric band matrix made diagonally dominant: SPD, no fill outside the band."""
    rng = np.random.default_rng(seed)
    offsets = [k for k in range(1, bandwidth + 1) if rng.random() < 0.5] or [1]
    lower = sp.diags([rng.uniform(-1, 0, n - k) for k in offsets], [-k for k in offsets], shape=(n, n))
    a = lower + lower.T
    return sp.csr_matrix(a + sp.diags(np.asarray(abs(a).sum(axis=1)).ravel() + 1.0))


def block_arrow_spd(blocks: int, block: int, arrow: int, seed: int = 0) -> sp.csr_matrix:
    """Dense-ish diagonal blocks coupled only through `arrow` last rows and columns (a border): SPD."""
    rng = np.random.default_rng(seed)
    n = blocks * block + arrow
    diag = [sp.random(block, block, density=0.2, random_state=rng) for _ in range(blocks)]
    body = sp.block_diag(diag + [sp.csr_matrix((arrow, arrow))])
    border = sp.random(n, arrow, density=0.02, random_state=rng)
    border = sp.hstack([sp.csr_matrix((n, n - arrow)), border])
    a = body + body.T + border + border.T
    return sp.csr_matrix(a + sp.diags(np.asarray(abs(a).sum(axis=1)).ravel() + 1.0))


def geometric_graph_laplacian(n: int, neighbours: float = 8.0, seed: int = 0) -> sp.csr_matrix:
    """The Laplacian of a random geometric graph (points in the unit square joined within a radius
    giving about `neighbours` each), shifted by the identity: SPD, irregular."""
    pts = np.random.default_rng(seed).random((n, 2))
    pairs = cKDTree(pts).query_pairs(np.sqrt(neighbours / (np.pi * n)), output_type="ndarray")
    i, j = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
    adj = sp.csr_matrix((-np.ones(len(i)), (i, j)), shape=(n, n))
    return sp.csr_matrix(adj + sp.diags(-np.asarray(adj.sum(axis=1)).ravel() + 1.0))
