"""Multi-process training the standard way: ``torchrun`` starts the processes, ``torch.distributed`` connects them.

``torchrun --nproc_per_node=N -m weightsym train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``
and ``MASTER_PORT``; :func:`setup` sees them and joins the process group (``nccl`` on GPUs, ``gloo`` on CPU).  Without
them it returns a single-process context and nothing distributed is touched.  weightsym never spawns processes itself.

Example:
    >>> ctx = setup("cpu")          # not under torchrun: a one-process context
    >>> (ctx.rank, ctx.world_size, ctx.is_main, str(ctx.device))
    (0, 1, True, 'cpu')
    >>> ctx.all_reduce_sum([2.0, 3.0])
    [2.0, 3.0]
"""

from __future__ import annotations

import gc
import json
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"`` → ``cuda:<local_rank>`` if a GPU is visible, else ``cpu``; ``"cuda"`` → ``cuda:<local_rank>``."""
    device = (device or "auto").lower()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank}"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is visible; use --device cpu")
    return torch.device(device)


@dataclass
class DistContext:
    """This process's place in the job: rank, world size, device; helpers that are no-ops for one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that prints, logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Sum a few numbers over all processes (float64, one collective)."""
        if not self.distributed:
            return [float(v) for v in values]
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def all_gather_int(self, value: int) -> list[int]:
        """``[value on rank 0, value on rank 1, ...]`` for a 63-bit integer."""
        if not self.distributed:
            return [int(value)]
        device = self.device if self.device.type == "cuda" else "cpu"
        t = torch.tensor([int(value)], dtype=torch.int64, device=device)
        out = [torch.zeros_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t)
        return [int(o.item()) for o in out]

    def broadcast_object(self, value):
        """Rank 0's ``value`` (JSON values) on every process; sent as JSON text, never pickled."""
        if not self.distributed:
            return value
        device = self.device if self.device.type == "cuda" else "cpu"
        data = json.dumps(value).encode() if self.is_main else b""
        size = torch.tensor([len(data)], dtype=torch.int64, device=device)
        dist.broadcast(size, 0)
        buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
        if self.is_main:
            buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        dist.broadcast(buffer, 0)
        return json.loads(bytes(buffer.cpu().tolist()).decode())

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Copy rank 0's buffers (e.g. BatchNorm running statistics) to every process."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, 0)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``DistributedDataParallel(model)`` when distributed, else ``model``.

        Non-persistent buffers (the gather indices of symmetric layers and of their fold kernels) are derived from
        the architecture, identical on every rank and constant, so DDP is told not to broadcast them each step.
        """
        if not self.distributed:
            return model
        derived = [f"{name}.{buffer}" if name else buffer for name, module in model.named_modules()
                   for buffer in module._non_persistent_buffers_set if module._buffers.get(buffer) is not None]
        if derived:
            torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, derived)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def cleanup(self) -> None:
        """Destroy the process group.  DistributedDataParallel wrappers live in reference cycles; collecting them
        first keeps their gloo work objects from being torn down at interpreter exit (which can abort)."""
        if self.distributed and dist.is_initialized():
            gc.collect()
            dist.destroy_process_group()


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: str = "auto") -> DistContext:
    """Join the process group if started by ``torchrun`` (gloo on CPU, nccl on CUDA); return this process's context."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistContext(device=resolve_device(device, int(os.environ.get("LOCAL_RANK", 0))))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)
