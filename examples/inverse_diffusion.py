"""Recover the conductivity of a 2D diffusion equation from noisy measurements, by gradient descent
through sparse direct solves.

Forward model (finite volumes on an m x m grid of unknowns, Dirichlet u = 0 on the boundary):

    -div(kappa grad u_s) = f_s,   s = 1..S source experiments,   kappa = exp(theta)

Every iteration assembles the sparse matrix A(theta) (fixed pattern, new values), solves A U = F for the
S right-hand sides at once (one CHOLMOD factorization, analysis reused from the first iteration), and
backpropagates through the solve (one adjoint solve with the same factors) to get d loss / d theta.

Run:  python examples/inverse_diffusion.py [--grid 316] [--iters 60]     (316^2 ~ 100k unknowns)
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

import torch_sla as sla


def grid_operator(m: int):
    """Index structure of the 5-point finite-volume operator: the sparse pattern of A and, for each
    edge conductance, where its four (or one, at the boundary) contributions go in A's CSR values."""
    M = m + 2  # nodes including the boundary ring; conductivities live on all of them
    node = torch.arange(M * M).reshape(M, M)
    interior = torch.full((M, M), -1, dtype=torch.int64)
    interior[1:-1, 1:-1] = torch.arange(m * m).reshape(m, m)
    # Edges between horizontally and vertically adjacent nodes with at least one interior end.
    a = torch.cat([node[:, :-1].reshape(-1), node[:-1, :].reshape(-1)])
    b = torch.cat([node[:, 1:].reshape(-1), node[1:, :].reshape(-1)])
    ia, ib = interior.reshape(-1)[a], interior.reshape(-1)[b]
    keep = (ia >= 0) | (ib >= 0)
    a, b, ia, ib = a[keep], b[keep], ia[keep], ib[keep]
    both = (ia >= 0) & (ib >= 0)
    # COO contributions of each edge e (conductance k_e): +k at (i,i) and (j,j), -k at (i,j), (j,i).
    rows, cols, edge, sign = [], [], [], []
    e = torch.arange(a.numel())
    for i_end in (ia, ib):
        ok = i_end >= 0
        (
            rows.append(i_end[ok]),
            cols.append(i_end[ok]),
            edge.append(e[ok]),
            sign.append(torch.ones(int(ok.sum()))),
        )
    (
        rows.append(ia[both]),
        cols.append(ib[both]),
        edge.append(e[both]),
        sign.append(-torch.ones(int(both.sum()))),
    )
    (
        rows.append(ib[both]),
        cols.append(ia[both]),
        edge.append(e[both]),
        sign.append(-torch.ones(int(both.sum()))),
    )
    rows, cols, edge, sign = (torch.cat(t) for t in (rows, cols, edge, sign))
    n = m * m
    pattern = sla.SparseTensor(torch.ones(rows.numel(), dtype=torch.float64), rows, cols, (n, n))
    csr_key = pattern.row_indices * n + pattern.col_indices
    target = torch.searchsorted(csr_key, rows * n + cols)  # CSR slot of every COO contribution
    return pattern, a, b, edge, sign.to(torch.float64), target


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=int, default=316, help="unknowns per side (316 -> ~100k unknowns)")
    parser.add_argument("--iters", type=int, default=120)
    parser.add_argument("--noise", type=float, default=0.01, help="relative noise level of the data")
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "output", "inverse_diffusion.png")
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    m, h = args.grid, 1.0 / (args.grid + 1)
    M = m + 2

    pattern, ea, eb, edge, sign, target = grid_operator(m)

    def assemble(theta: torch.Tensor) -> sla.SparseTensor:
        kappa = torch.exp(theta).reshape(-1)
        k_edge = 0.5 * (kappa[ea] + kappa[eb])  # conductance of each edge (h^2 cancels in 2D FV)
        values = torch.zeros(pattern.nnz, dtype=torch.float64).index_add(0, target, sign * k_edge[edge])
        return pattern.with_values(values)

    # Ground truth: background 1, a conductive disc (x4) and a resistive bar (x0.25).
    xs = torch.linspace(0, 1, M, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, xs, indexing="xy")
    true_log = torch.zeros(M, M, dtype=torch.float64)
    true_log[(X - 0.33) ** 2 + (Y - 0.62) ** 2 < 0.17**2] = math.log(4.0)
    true_log[(abs(X - 0.68) < 0.09) & (abs(Y - 0.4) < 0.25)] = math.log(0.25)

    # Four experiments: Gaussian sources at different places (S right-hand sides in one solve).
    Xi, Yi = X[1:-1, 1:-1].reshape(-1), Y[1:-1, 1:-1].reshape(-1)
    centers = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]
    F = torch.stack([torch.exp(-((Xi - cx) ** 2 + (Yi - cy) ** 2) / 0.02) for cx, cy in centers], 1) * h * h

    with torch.no_grad():
        U_true = assemble(true_log).solve(F)
        sigma = args.noise * U_true.abs().max()
        U_obs = U_true + sigma * torch.randn_like(U_true)

    theta = torch.zeros(M, M, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.05)
    beta = 2e-4  # smoothness (Tikhonov on grad theta) weight

    n = m * m
    print(f"torch_sla inverse problem: {n:,} unknowns, nnz(A) = {pattern.nnz:,}, {len(centers)} experiments")
    print(sla.explain(assemble(theta.detach())))
    losses, t_start = [], time.perf_counter()
    for it in range(args.iters):
        t0 = time.perf_counter()
        opt.zero_grad()
        A = assemble(theta)
        U = A.solve(F)  # one factorization, S right-hand sides, differentiable
        misfit = ((U - U_obs) ** 2).sum() / (2 * sigma**2 * F.shape[1] * n)
        reg = beta * (
            ((theta[1:, :] - theta[:-1, :]) ** 2).sum() + ((theta[:, 1:] - theta[:, :-1]) ** 2).sum()
        )
        loss = misfit + reg
        loss.backward()  # one adjoint solve with the same factors
        opt.step()
        losses.append(loss.item())
        with torch.no_grad():
            rel = float((torch.exp(theta) - torch.exp(true_log)).norm() / torch.exp(true_log).norm())
        print(
            f"iter {it:3d}  loss {losses[-1]:.4e}  misfit {misfit.item():.4e}  "
            f"kappa rel. error {rel:.3f}  {time.perf_counter() - t0:.2f} s",
            flush=True,
        )
    total = time.perf_counter() - t_start
    print(f"done: {args.iters} iterations in {total:.1f} s ({total / args.iters:.2f} s per forward+backward)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig, ax = plt.subplots(1, 3, figsize=(14, 4.2))
    kw = dict(origin="lower", extent=(0, 1, 0, 1), cmap="viridis", vmin=0.2, vmax=4.2)
    im = ax[0].imshow(torch.exp(true_log).numpy(), **kw)
    ax[0].set_title("true conductivity")
    ax[1].imshow(torch.exp(theta.detach()).numpy(), **kw)
    ax[1].set_title(f"recovered after {args.iters} iterations")
    fig.colorbar(im, ax=ax[:2], shrink=0.85)
    ax[2].semilogy(losses)
    ax[2].set_xlabel("iteration")
    ax[2].set_title("loss")
    fig.savefig(args.out, dpi=110, bbox_inches="tight")
    print(f"wrote {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
