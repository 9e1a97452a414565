"""Benchmark matrices, built with scipy.sparse (fast, and the same matrices SciPy's solvers get)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


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
