"""A differentiable Poisson solve split over processes: learn a source term from measurements.

Each rank owns the rows of its METIS subdomain of an m x m grid (5-point Laplacian plus a reaction term
exp(theta)). Every step solves A(theta) u = f with distributed CG preconditioned by two-level Schwarz, and
backpropagates the misfit ||u - u_obs||^2 through the solve (one distributed adjoint solve) to the
reaction coefficients theta (replicated: every rank holds them, and their gradient is all-reduced).

Run with any number of processes:

    torchrun --standalone --nproc-per-node 2 examples/distributed_poisson.py [--grid 200] [--iters 20]

or without torchrun, as one process.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

import torch_sla as sla
from torch_sla import DSparseTensor


def poisson_with_reaction(m: int):
    """The 5-point Laplacian on an m x m grid as COO, and where the diagonal entries are (the reaction
    term exp(theta_i) is added there)."""
    n = m * m
    idx = torch.arange(n)
    x, y = idx % m, idx // m
    rows, cols, vals = [idx], [idx], [torch.full((n,), 4.0, dtype=torch.float64)]
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        ok = (x + dx >= 0) & (x + dx < m) & (y + dy >= 0) & (y + dy < m)
        rows.append(idx[ok])
        cols.append(idx[ok] + dx + dy * m)
        vals.append(torch.full((int(ok.sum()),), -1.0, dtype=torch.float64))
    return torch.cat(vals), torch.cat(rows), torch.cat(cols), (n, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", type=int, default=200)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.2)
    args = ap.parse_args()

    if "RANK" not in os.environ:  # plain `python`: a group of one process
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29512", RANK="0", WORLD_SIZE="1")
    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    mesh = init_device_mesh("cpu", (world,))
    say = print if rank == 0 else (lambda *a, **k: None)

    m = args.grid
    n = m * m
    values, row, col, shape = poisson_with_reaction(m)
    A = sla.SparseTensor(values, row, col, shape)
    D = DSparseTensor.partition(A, mesh)  # METIS subdomains, computed on rank 0 and broadcast
    say(f"{world} rank(s), n = {n}; partition: {D.partition}")

    # the truth: a reaction field with a bump; measurements of u for a fixed source
    xy = torch.stack([torch.arange(n) % m, torch.arange(n) // m], 1).to(torch.float64) / m
    theta_true = -1.0 + 2.0 * torch.exp(-30 * ((xy - 0.6) ** 2).sum(1))
    f = torch.ones(n, dtype=torch.float64) / n
    base = A.values.detach()
    diag_at = torch.nonzero(A.pattern.row == A.pattern.col).reshape(-1)  # CSR positions of the diagonal
    diag_row = A.pattern.row[diag_at]

    def matrix(theta):
        """A(theta): the Laplacian plus exp(theta) on the diagonal, on the same distributed layout."""
        vals = base.index_add(0, diag_at, torch.exp(theta)[diag_row])
        return D.with_values(vals, replicated=True)

    with torch.no_grad():
        u_obs = matrix(theta_true).solve(f, rtol=1e-10)

    theta = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=args.lr)
    t0 = time.perf_counter()
    for it in range(args.iters):
        opt.zero_grad()
        u, info = matrix(theta).solve(f, rtol=1e-10, return_info=True)  # replicated f in, replicated u out
        loss = ((u - u_obs) ** 2).sum() / (u_obs**2).sum()
        loss.backward()  # one distributed adjoint solve; theta.grad is the same on every rank
        opt.step()
        say(
            f"iter {it:3d}  misfit {loss.item():.4e}  CG its {info.iterations} (adjoint {info.adjoint['iterations']})"
            f"  [{info.preconditioner}]"
        )
    stats = D.halo_stats()
    say(f"{args.iters} steps in {time.perf_counter() - t0:.2f} s; rank 0 halo: {stats}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
