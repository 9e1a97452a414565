"""torch_sla: differentiable sparse linear algebra for PyTorch, with a C++ core.

import torch_sla as sla
A = sla.SparseTensor(values, row, col, (n, n))
x = A.solve(b)              # gradients flow to b and values
sla.explain(A, b)           # what backend="auto" picks, and why
"""

from __future__ import annotations

from . import errors
from ._amg import AmgHierarchy
from ._batch import (
    SparseTensorList,
    solve_batch,
    solve_graph_batch,
    spsolve_batch_coo_different_layout,
    spsolve_batch_coo_same_layout,
    spsolve_batch_different_layout,
    spsolve_batch_same_layout,
)
from ._coloring import sparse_jacobian
from ._direct import Factorization, analysis_cache_info, clear_analysis_cache, set_analysis_cache_limit
from ._distributed import DEigshInfo, DSolveInfo, DSparseTensor, load_dsparse, save_dsparse
from ._eigs import EigsInfo, eigs
from ._eigsh import EigshInfo, eigsh, svds
from ._io import load_mtx, save_mtx
from ._iterative import SolveInfo, lstsq
from ._logdet import det, diag_inverse, inverse_entries, logdet, selected_inverse, slogdet
from ._memory import get_memory_budget, set_memory_budget
from ._nonlinear import NonlinearInfo, nonlinear_solve
from ._operator import LinearOperator, Operator
from ._partition import (
    Partition,
    make_partition,
    metis_available,
    partition_coordinates,
    partition_graph_metis,
    partition_simple,
)
from ._registry import Backend, BackendInfo, Choice, backends, explain, register, show_backends, tune
from ._solve import amg_solve, factorize, solve, spsolve
from ._sparse_tensor import SparseTensor, as_sparse_tensor
from .errors import (
    BackendUnavailableError,
    ConvergenceError,
    DistributedError,
    InvalidArgumentError,
    MatrixMarketError,
    NotPositiveDefiniteError,
    SingularMatrixError,
    TorchSlaError,
)

__version__ = "0.1.0"

__all__ = [
    "SparseTensor",
    "Factorization",
    "BackendInfo",
    "Choice",
    "solve",
    "amg_solve",
    "AmgHierarchy",
    "spsolve",
    "eigs",
    "EigsInfo",
    "lstsq",
    "solve_batch",
    "solve_graph_batch",
    "SparseTensorList",
    "spsolve_batch_same_layout",
    "spsolve_batch_different_layout",
    "spsolve_batch_coo_same_layout",
    "spsolve_batch_coo_different_layout",
    "nonlinear_solve",
    "NonlinearInfo",
    "sparse_jacobian",
    "slogdet",
    "logdet",
    "det",
    "selected_inverse",
    "diag_inverse",
    "inverse_entries",
    "eigsh",
    "svds",
    "EigshInfo",
    "factorize",
    "tune",
    "as_sparse_tensor",
    "LinearOperator",
    "Operator",
    "Backend",
    "register",
    "SolveInfo",
    "set_memory_budget",
    "get_memory_budget",
    "backends",
    "show_backends",
    "explain",
    "clear_analysis_cache",
    "set_analysis_cache_limit",
    "analysis_cache_info",
    "Partition",
    "make_partition",
    "partition_graph_metis",
    "partition_coordinates",
    "partition_simple",
    "metis_available",
    "load_mtx",
    "save_mtx",
    "errors",
    "TorchSlaError",
    "InvalidArgumentError",
    "SingularMatrixError",
    "NotPositiveDefiniteError",
    "BackendUnavailableError",
    "MatrixMarketError",
    "ConvergenceError",
    "DistributedError",
    "DSparseTensor",
    "DSolveInfo",
    "DEigshInfo",
    "save_dsparse",
    "load_dsparse",
]
