"""Vibration modes of a square membrane with fixed edges, and the sensitivity of its lowest frequency.

Linear triangles on a uniform grid of the unit square give the stiffness K (tension kappa_e per element)
and the consistent mass M. The modes solve the generalized problem K v = lambda M v, with frequencies
omega = sqrt(lambda); for kappa = 1 and unit density the exact ones are pi sqrt(i^2 + j^2).
The gradient of omega_1 with respect to the element tensions flows through sla.eigsh and the assembly.

    python examples/vibration_modes.py [--grid 24] [--modes 6]
"""

from __future__ import annotations

import argparse
import math

import torch

import torch_sla as sla


def triangles(g: int):
    """Node coordinates and the triangles (3 node indices) of a g x g grid of squares, two per square."""
    s = torch.linspace(0.0, 1.0, g + 1, dtype=torch.float64)
    y, x = torch.meshgrid(s, s, indexing="ij")
    xy = torch.stack([x.reshape(-1), y.reshape(-1)], 1)
    i, j = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    n0 = (i * (g + 1) + j).reshape(-1)
    n1, n2, n3 = n0 + 1, n0 + g + 2, n0 + g + 1
    tri = torch.cat([torch.stack([n0, n1, n2], 1), torch.stack([n0, n2, n3], 1)])
    return xy, tri


def assemble(xy, tri, kappa, interior):
    """K (with tensions kappa per element) and M on the interior nodes (fixed edges), as SparseTensors."""
    p = xy[tri]  # (E, 3, 2)
    d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    area = 0.5 * (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]).abs()
    # gradients of the three hat functions: rotate the opposite edges by 90 degrees, divide by 2 area
    edges = torch.stack([p[:, 2] - p[:, 1], p[:, 0] - p[:, 2], p[:, 1] - p[:, 0]], 1)
    grads = torch.stack([-edges[..., 1], edges[..., 0]], -1) / (2 * area)[:, None, None]
    Ke = (kappa * area)[:, None, None] * (grads @ grads.transpose(1, 2))
    Me = (area / 12)[:, None, None] * (
        torch.ones(3, 3, dtype=torch.float64) + torch.eye(3, dtype=torch.float64)
    )
    rows = tri[:, :, None].expand(-1, 3, 3).reshape(-1)
    cols = tri[:, None, :].expand(-1, 3, 3).reshape(-1)
    number = torch.full((xy.shape[0],), -1, dtype=torch.long)
    number[interior] = torch.arange(int(interior.sum()))
    keep = (number[rows] >= 0) & (number[cols] >= 0)
    r, c, n = number[rows[keep]], number[cols[keep]], int(interior.sum())
    K = sla.SparseTensor(Ke.reshape(-1)[keep], r, c, (n, n))  # duplicates are summed
    M = sla.SparseTensor(Me.reshape(-1)[keep], r, c, (n, n))
    return K, M


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=int, default=24, help="squares per side")
    ap.add_argument("--modes", type=int, default=6)
    args = ap.parse_args()
    g = args.grid
    xy, tri = triangles(g)
    on_edge = (xy == 0).any(1) | (xy == 1).any(1)
    kappa = torch.ones(tri.shape[0], dtype=torch.float64, requires_grad=True)
    K, M = assemble(xy, tri, kappa, ~on_edge)
    print(f"membrane: {g} x {g} squares, {tri.shape[0]} triangles, {K.shape[0]} unknowns")

    lam, V, info = sla.eigsh(K, args.modes, sigma=0.0, M=M, return_info=True)
    omega = lam.sqrt()
    exact = sorted(math.pi * math.hypot(i, j) for i in range(1, 6) for j in range(1, 6))[: args.modes]
    print("lowest frequencies (finite elements vs exact pi sqrt(i^2 + j^2)):")
    for w, e in zip(omega.tolist(), exact):
        print(f"  {w:9.5f}   {e:9.5f}   ({(w - e) / e:+.2%})")
    print(f"  {info.iterations} shift-invert applications, largest residual {max(info.residuals):.1e}")

    # d omega_1 / d kappa_e: one backward pass through eigsh and the assembly
    omega[0].backward()
    grad = kappa.grad
    centers = xy[tri].mean(1)
    hot = int(grad.argmax())
    print(
        f"d omega_1 / d kappa: total {float(grad.sum()):.5f} (omega_1 / 2 = {float(omega[0].detach()) / 2:.5f}, as "
        f"omega scales with sqrt(kappa)); largest {float(grad.max()):.2e} at element {hot} centred at "
        f"({float(centers[hot, 0]):.2f}, {float(centers[hot, 1]):.2f})"
    )

    # gradient check: a central finite difference along a random direction of the tensions
    direction = torch.randn(kappa.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    h = 1e-5

    def omega1(k):
        with torch.no_grad():
            Kh, Mh = assemble(xy, tri, k, ~on_edge)
            return float(sla.eigsh(Kh, 1, sigma=0.0, M=Mh, return_eigenvectors=False).sqrt())

    fd = (omega1(kappa.detach() + h * direction) - omega1(kappa.detach() - h * direction)) / (2 * h)
    ad = float(grad @ direction)
    print(
        f"gradient check: autograd {ad:.8f}, finite difference {fd:.8f}, rel. diff {abs(ad - fd) / abs(fd):.1e}"
    )


if __name__ == "__main__":
    main()
