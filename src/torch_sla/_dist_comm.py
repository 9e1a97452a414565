"""Communication for distributed sparse tensors: agreement on errors, reductions, and exchanges of
vector entries by global index (halo exchange, redistribution), each exchange one autograd Function.

Every function here is collective: all ranks of the process group call it in the same order. A failure
that only some ranks see (bad input on one rank, a singular local block) would leave the others waiting
in their next collective, so checks go through :func:`agree` first: every rank learns that some rank
failed, and all raise the same :class:`DistributedError`. A rank that dies is reported by gloo / NCCL
to its peers as a lost connection, or when the process group's timeout expires; that error is re-raised
as :class:`DistributedError` naming the operation.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import DistributedError, InvalidArgumentError, TorchSlaError

__all__ = ["Comm", "Exchange", "LinearMap", "agree", "apply_linear"]


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    """Re-raise a failure of the torch.distributed calls inside (a peer gone, a timeout, a mismatch) as
    DistributedError naming ``what``."""
    try:
        yield
    except TorchSlaError:
        raise
    except (RuntimeError, dist.DistError) as e:
        text = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise DistributedError(
            f"{what}: a collective operation failed ({text}); another rank has probably failed, left or "
            "timed out. Check the other ranks' errors."
        ) from e


class Comm:
    """A process group (default: the world) with the few collectives the distributed tensors use."""

    def __init__(self, group=None):
        if not dist.is_available() or not dist.is_initialized():
            raise InvalidArgumentError(
                "torch.distributed is not initialized: call torch.distributed.init_process_group (or "
                "init_device_mesh) on every rank before building a distributed sparse tensor"
            )
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        backend = dist.get_backend(group)
        # NCCL moves CUDA tensors only; gloo CPU tensors (and CUDA ones through host copies we avoid).
        self.device = (
            torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        )

    def global_rank(self, r: int) -> int:
        return r if self.group is None else dist.get_global_rank(self.group, r)

    # -- reductions ---------------------------------------------------------------------------------------
    def all_reduce(self, t: Tensor, op: str = "sum", what: str = "all_reduce") -> Tensor:
        """A reduced copy of ``t`` (``op`` "sum", "max" or "min"); ``t`` is not modified."""
        if self.size == 1:
            return t.clone()
        out = t.detach().clone().contiguous()
        red = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]
        dev = out.device
        if out.device != self.device:
            out = out.to(self.device)
        if out.is_complex():
            if op != "sum":
                raise InvalidArgumentError(f"{what}: {op} of complex values")
            buf = torch.view_as_real(out).contiguous()
            with _collective(what):
                dist.all_reduce(buf, red, group=self.group)
            out = torch.view_as_complex(buf)
        else:
            with _collective(what):
                dist.all_reduce(out, red, group=self.group)
        return out.to(dev)

    def all_gather_sizes(self, m: int, what: str) -> list[int]:
        """Every rank's integer ``m``."""
        if self.size == 1:
            return [m]
        t = torch.tensor([m], dtype=torch.int64, device=self.device)
        out = [torch.empty_like(t) for _ in range(self.size)]
        with _collective(what):
            dist.all_gather(out, t, group=self.group)
        return [int(o) for o in out]

    def all_gather_v(self, t: Tensor, what: str, sizes: Sequence[int] | None = None) -> Tensor:
        """Concatenation over the ranks (in rank order) of tensors whose first dims may differ."""
        if self.size == 1:
            return t.clone()
        if sizes is None:
            sizes = self.all_gather_sizes(t.shape[0], what)
        top = max(sizes)
        dev = t.device
        src = t.detach().to(self.device)
        real = src.is_complex()
        if real:
            src = torch.view_as_real(src)
        pad = src.new_zeros((top, *src.shape[1:]))
        pad[: src.shape[0]] = src
        outs = [torch.empty_like(pad) for _ in range(self.size)]
        with _collective(what):
            dist.all_gather(outs, pad.contiguous(), group=self.group)
        full = torch.cat([o[:s] for o, s in zip(outs, sizes)])
        if real:
            full = torch.view_as_complex(full.contiguous())
        return full.to(dev)

    def all_to_all_v(self, chunks: list[Tensor], what: str) -> list[Tensor]:
        """``chunks[q]`` (1-D, any length, same dtype everywhere) goes to rank q; returns what each rank
        sent here, in rank order."""
        dtype = chunks[0].dtype
        if self.size == 1:
            return [chunks[0].clone()]
        counts = torch.tensor([c.numel() for c in chunks], dtype=torch.int64, device=self.device)
        recv_counts = torch.empty_like(counts)
        with _collective(what):
            dist.all_to_all_single(recv_counts, counts, group=self.group)
        rc = recv_counts.tolist()
        send = torch.cat([c.reshape(-1).to(self.device) for c in chunks])
        recv = torch.empty(sum(rc), dtype=dtype, device=self.device)
        with _collective(what):
            dist.all_to_all_single(recv, send, rc, counts.tolist(), group=self.group)
        return list(torch.split(recv, rc))

    def broadcast_object(self, obj, src: int, what: str):
        if self.size == 1:
            return obj
        box = [obj]
        with _collective(what):
            dist.broadcast_object_list(box, src=self.global_rank(src), group=self.group)
        return box[0]

    def barrier(self, what: str = "barrier") -> None:
        if self.size > 1:
            with _collective(what):
                dist.barrier(group=self.group)


def agree(comm: Comm, error: BaseException | None, what: str) -> None:
    """Collective error check: if any rank passes an error, every rank raises. The rank that failed
    re-raises its own exception; the others raise DistributedError naming the failed ranks."""
    flag = torch.tensor([0 if error is None else 1], dtype=torch.int64, device=comm.device)
    if comm.size > 1:
        flags = [torch.empty_like(flag) for _ in range(comm.size)]
        with _collective(what):
            dist.all_gather(flags, flag, group=comm.group)
        failed = [r for r, f in enumerate(flags) if int(f) != 0]
    else:
        failed = [0] if error is not None else []
    if not failed:
        return
    if error is not None:
        raise error
    raise DistributedError(f"{what}: rank(s) {failed} failed (see their error); every rank stops here")


class Exchange:
    """A plan that gathers vector entries by global index: each rank holds the entries of its ``owned``
    global indices (in that order) and receives those of its ``needed`` indices (in that order) from
    their owners, through point-to-point messages with the ranks it shares entries with.

    ``owner_of(ids)`` gives the owning rank of global indices. Built collectively (one all-to-all of the
    requests). ``forward`` applies it to ``(n_owned, ...)`` tensors; ``reverse`` is its adjoint (entries of
    the needed indices are sent back and summed into their owners).
    """

    def __init__(self, comm: Comm, owned: Tensor, needed: Tensor, owner_of, what: str = "exchange"):
        self.comm = comm
        self.n_owned, self.n_needed = int(owned.numel()), int(needed.numel())
        owners = owner_of(needed) if needed.numel() else torch.empty(0, dtype=torch.int64)
        order = torch.argsort(owners * (int(needed.max()) + 1 if needed.numel() else 1) + needed, stable=True)
        # received entries, grouped by owner, go to positions `order` of the needed list
        self.recv_pos = order
        sorted_owners = owners[order]
        counts = (
            torch.bincount(sorted_owners, minlength=comm.size)
            if needed.numel()
            else torch.zeros(comm.size, dtype=torch.int64)
        )
        self.recv_counts = counts.tolist()
        requests = list(torch.split(needed[order], self.recv_counts))
        asked = comm.all_to_all_v(requests, what)  # global ids each rank wants from me
        # positions of those ids among my owned entries
        perm = torch.argsort(owned)
        sorted_owned = owned[perm]
        self.send_idx = []
        bad = None
        for q, ids in enumerate(asked):
            ids = ids.to(torch.int64).cpu()
            pos = torch.searchsorted(sorted_owned, ids)
            ok = (pos < sorted_owned.numel()) & (
                sorted_owned[pos.clamp(max=max(sorted_owned.numel() - 1, 0))] == ids
            )
            if ids.numel() and not bool(ok.all()):
                bad = InvalidArgumentError(
                    f"{what}: rank {q} needs global indices {ids[~ok][:5].tolist()} that rank {comm.rank} does "
                    "not own; the ownership of the rows is inconsistent across ranks"
                )
                pos = pos.clamp(max=max(sorted_owned.numel() - 1, 0))
            self.send_idx.append(perm[pos] if ids.numel() else torch.empty(0, dtype=torch.int64))
        agree(comm, bad, what)
        self.send_counts = [int(s.numel()) for s in self.send_idx]
        self.neighbours = sorted(
            q for q in range(comm.size) if q != comm.rank and (self.send_counts[q] or self.recv_counts[q])
        )
        self.self_send = self.send_idx[comm.rank]  # entries this rank needs from itself (if any)
        offs = [0]
        for c in self.recv_counts:
            offs.append(offs[-1] + c)
        self.recv_offsets = offs
        self._dev_cache: dict = {}
        self.stats = {"exchanges": 0, "messages": 0, "bytes_sent": 0, "bytes_received": 0}
        self._map: LinearMap | None = None

    def _idx(self, device: torch.device):
        hit = self._dev_cache.get(device)
        if hit is None:
            hit = (
                [s.to(device) for s in self.send_idx],
                self.recv_pos.to(device),
            )
            self._dev_cache[device] = hit
        return hit

    @property
    def map(self) -> LinearMap:
        """The exchange as a :class:`LinearMap` (its adjoint is :meth:`reverse`)."""
        if self._map is None:
            self._map = LinearMap(self.forward, self.reverse)
        return self._map

    @property
    def messages(self) -> int:
        return len(self.neighbours)

    def entries_sent(self) -> int:
        """Entries this rank sends per exchange of one column (itself excluded)."""
        return sum(c for q, c in enumerate(self.send_counts) if q != self.comm.rank)

    def entries_received(self) -> int:
        return sum(c for q, c in enumerate(self.recv_counts) if q != self.comm.rank)

    # -- raw transfers ---------------------------------------------------------------------------------------
    def _transfer(self, outgoing: dict[int, Tensor], incoming_shape: dict[int, tuple], dtype, device, what):
        """Send ``outgoing[q]`` to each neighbour q, receive tensors of ``incoming_shape[q]``; returns the
        received tensors once every transfer is done (call :meth:`start` / :meth:`finish` to overlap)."""
        pending = self.start(outgoing, incoming_shape, dtype, device, what)
        return self.finish(pending, what)

    def start(self, outgoing, incoming_shape, dtype, device, what):
        comm = self.comm
        cdev = comm.device
        real = dtype.is_complex
        recv = {}
        works = []
        st = self.stats
        st["exchanges"] += 1
        item = torch.empty(0, dtype=dtype).element_size()
        for t in outgoing.values():
            st["messages"] += 1
            st["bytes_sent"] += t.numel() * item
        for shape in incoming_shape.values():
            st["bytes_received"] += math.prod(shape) * item
        with _collective(what):
            for q in self.neighbours:
                if q in incoming_shape:
                    shape = incoming_shape[q]
                    buf = torch.empty(
                        (*shape, 2) if real else shape,
                        dtype=torch.empty(0, dtype=dtype).real.dtype if real else dtype,
                        device=cdev,
                    )
                    recv[q] = buf
                    works.append(dist.irecv(buf, comm.global_rank(q), group=comm.group))
            sends = []
            for q in self.neighbours:
                if q in outgoing:
                    t = outgoing[q].to(cdev)
                    t = torch.view_as_real(t).contiguous() if real else t.contiguous()
                    sends.append(t)  # keep alive until the send completes
                    works.append(dist.isend(t, comm.global_rank(q), group=comm.group))
        return recv, works, sends, real, device

    def finish(self, pending, what):
        recv, works, _sends, real, device = pending
        with _collective(what):
            for w in works:
                w.wait()
        return {q: (torch.view_as_complex(b) if real else b).to(device) for q, b in recv.items()}

    def forward_start(self, x: Tensor, what: str = "halo exchange"):
        """Begin sending the entries of ``x`` (``(n_owned, *rest)``) that others need."""
        send_idx, _ = self._idx(x.device)
        rest = tuple(x.shape[1:])
        out = {q: x.index_select(0, send_idx[q]) for q in self.neighbours if self.send_counts[q]}
        inc = {q: (self.recv_counts[q], *rest) for q in self.neighbours if self.recv_counts[q]}
        return self.start(out, inc, x.dtype, x.device, what), x

    def forward_finish(self, pending, what: str = "halo exchange") -> Tensor:
        """The ``(n_needed, *rest)`` entries, in the order of ``needed``."""
        inner, x = pending
        got = self.finish(inner, what)
        send_idx, recv_pos = self._idx(x.device)
        rest = tuple(x.shape[1:])
        grouped = x.new_empty((self.n_needed, *rest))
        me = self.comm.rank
        for q in range(self.comm.size):
            a, b = self.recv_offsets[q], self.recv_offsets[q + 1]
            if a == b:
                continue
            grouped[a:b] = x.index_select(0, send_idx[me]) if q == me else got[q]
        out = x.new_empty((self.n_needed, *rest))
        out[recv_pos] = grouped
        return out

    def forward(self, x: Tensor, what: str = "halo exchange") -> Tensor:
        return self.forward_finish(self.forward_start(x, what), what)

    def reverse(self, g: Tensor, what: str = "halo exchange (adjoint)") -> Tensor:
        """The adjoint: ``g`` ``(n_needed, *rest)`` sent back to the owners and summed, ``(n_owned, *rest)``."""
        send_idx, recv_pos = self._idx(g.device)
        rest = tuple(g.shape[1:])
        grouped = g.index_select(0, recv_pos)
        out = {
            q: grouped[self.recv_offsets[q] : self.recv_offsets[q + 1]]
            for q in self.neighbours
            if self.recv_counts[q]
        }
        inc = {q: (self.send_counts[q], *rest) for q in self.neighbours if self.send_counts[q]}
        got = self._transfer(out, inc, g.dtype, g.device, what)
        res = g.new_zeros((self.n_owned, *rest))
        me = self.comm.rank
        if self.recv_counts[me]:
            res.index_add_(0, send_idx[me], grouped[self.recv_offsets[me] : self.recv_offsets[me + 1]])
        for q, t in got.items():
            res.index_add_(0, send_idx[q], t)
        return res


class LinearMap:
    """A linear map ``x -> L x`` (a halo exchange, a selection of entries, a sum over the ranks...) and
    its adjoint ``L.T``, as two functions; ``L.T.T is L``. :func:`apply_linear` applies it with autograd."""

    __slots__ = ("fn", "T")

    def __init__(self, fn, adjoint_fn=None, *, T=None):
        self.fn = fn
        self.T = T if T is not None else LinearMap(adjoint_fn, T=self)


class _ApplyLinear(torch.autograd.Function):
    """``y = L x`` for a linear map L. Backward: grad_x = L^T grad_y (the adjoint map, itself applied
    through this Function, so double backward works); forward mode: dy = L dx. Collective when L is."""

    @staticmethod
    def forward(L: LinearMap, x: Tensor) -> Tensor:
        return L.fn(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.L = inputs[0]

    @staticmethod
    def backward(ctx, g):
        return None, _ApplyLinear.apply(ctx.L.T, g)

    @staticmethod
    def jvp(ctx, _L, dx):
        return ctx.L.fn(dx)


def apply_linear(L: LinearMap, x: Tensor) -> Tensor:
    """``L x``, differentiable in reverse and forward mode (see :class:`LinearMap`)."""
    return _ApplyLinear.apply(L, x)
