"""Run test functions on several real processes joined by a gloo process group on 127.0.0.1.

``RankPool(world)`` starts ``world`` worker processes once (spawned, so each imports torch afresh) and
keeps their process group; ``pool.run(fn, *args)`` runs ``fn(rank, world, *args)`` on every rank and
returns the per-rank results, or raises with every failing rank's traceback. A run that does not finish
within its timeout kills the pool (the next run starts a new one), so a hang is a failure, not a stuck
suite. ``fn`` must be a module-level function (it is pickled by reference).
"""

from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import queue
import socket
import traceback

import torch
import torch.distributed as dist


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, world: int, port: int, threads: int, pg_timeout: float) -> None:
    """Join the gloo process group on 127.0.0.1 with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=pg_timeout),
    )


def _worker(rank: int, world: int, port: int, tasks, results, threads: int, pg_timeout: float) -> None:
    try:
        _join(rank, world, port, threads, pg_timeout)
    except Exception:  # noqa: BLE001 - reported to the parent
        results.put((rank, -1, "error", traceback.format_exc()))
        return
    while True:
        task = tasks.get()
        if task is None:
            break
        tid, fn, args = task
        try:
            out = fn(rank, world, *args)
            results.put((rank, tid, "ok", out))
        except BaseException:  # noqa: BLE001 - reported to the parent
            results.put((rank, tid, "error", traceback.format_exc()))
    # no destroy_process_group: it waits for the peers, and the pool is being stopped anyway


def _one_shot(rank: int, world: int, port: int, results, fn, args, threads: int, pg_timeout: float) -> None:
    _join(rank, world, port, threads, pg_timeout)
    try:
        out = fn(rank, world, *args)
        results.put((rank, 0, "ok", out))
    except BaseException:  # noqa: BLE001
        results.put((rank, 0, "error", traceback.format_exc()))
        raise SystemExit(1) from None
    dist.destroy_process_group()


class RankPool:
    def __init__(self, world: int, threads: int = 1, pg_timeout: float = 60.0):
        self.world, self.threads, self.pg_timeout = world, threads, pg_timeout
        self.procs: list = []
        self._tid = 0

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        port = free_port()
        self.results = ctx.Queue()
        self.tasks = [ctx.Queue() for _ in range(self.world)]
        self.procs = [
            ctx.Process(
                target=_worker,
                args=(r, self.world, port, self.tasks[r], self.results, self.threads, self.pg_timeout),
                daemon=True,
            )
            for r in range(self.world)
        ]
        for p in self.procs:
            p.start()

    def run(self, fn, *args, timeout: float = 120.0) -> list:
        if not self.procs or not all(p.is_alive() for p in self.procs):
            self.close()
            self._start()
        self._tid += 1
        tid = self._tid
        for q in self.tasks:
            q.put((tid, fn, args))
        got: dict = {}
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
        while len(got) < self.world:
            left = (deadline - datetime.datetime.now()).total_seconds()
            try:
                rank, t, status, out = self.results.get(timeout=max(left, 0.01))
            except queue.Empty:
                self.close()
                raise AssertionError(
                    f"{fn.__name__}: ranks {sorted(set(range(self.world)) - set(got))} did not finish within "
                    f"{timeout:.0f} s (a hang); the pool was stopped"
                ) from None
            if t == -1:
                self.close()
                raise AssertionError(f"rank {rank} could not join the process group:\n{out}")
            if t == tid:
                got[rank] = (status, out)
        errors = {r: out for r, (s, out) in got.items() if s != "ok"}
        if errors:
            text = "\n".join(f"--- rank {r} ---\n{tb}" for r, tb in sorted(errors.items()))
            raise AssertionError(f"{fn.__name__} failed on ranks {sorted(errors)}:\n{text}")
        return [got[r][1] for r in range(self.world)]

    def close(self) -> None:
        for q in getattr(self, "tasks", []):
            try:
                q.put(None)
            except Exception:  # noqa: BLE001
                pass
        for p in self.procs:
            p.join(timeout=2)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        self.procs = []


def run_once(
    fn, world: int, *args, timeout: float = 60.0, threads: int = 1, pg_timeout: float = 20.0
) -> dict:
    """Run ``fn`` on ``world`` fresh processes (for tests where ranks fail or exit); returns
    ``{rank: (status, result_or_traceback, exitcode)}``. Processes still alive at the timeout are killed."""
    ctx = mp.get_context("spawn")
    port = free_port()
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_one_shot, args=(r, world, port, results, fn, args, threads, pg_timeout), daemon=True
        )
        for r in range(world)
    ]
    for p in procs:
        p.start()
    got: dict = {}
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
    while len(got) < world:
        left = (deadline - datetime.datetime.now()).total_seconds()
        if left <= 0:
            break
        try:
            rank, _, status, out = results.get(timeout=min(left, 1.0))
            got[rank] = (status, out)
        except queue.Empty:
            if not any(p.is_alive() for p in procs) and results.empty():
                break
    out = {}
    for r, p in enumerate(procs):
        p.join(timeout=max((deadline - datetime.datetime.now()).total_seconds(), 0.1))
        if p.is_alive():
            p.kill()
            p.join()
        status, res = got.get(r, ("missing", None))
        out[r] = (status, res, p.exitcode)
    return out


os.environ.setdefault("OMP_NUM_THREADS", "1")
