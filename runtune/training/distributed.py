"""Data-parallel training under `torchrun`: one process per GPU (NCCL), or per CPU worker (gloo).

`World.from_env` reads torchrun's `RANK`, `WORLD_SIZE` and `LOCAL_RANK`; without them (or with a
world of one) it is `SINGLE`, whose every collective is the identity, so a trainer started as
`python -m jobs.trainer` runs exactly as it always did.

What the recipe does with a world of N (docs/architecture.md, "Data-parallel training"):
- every rank draws the same batches (a pure function of seed and epoch) and takes its share of each
  optimizer step's group (`share`): the plan's global batch is kept, so the loss curve is the one
  process's;
- the trainable gradients are summed across ranks once per optimizer step (`sum_gradients`), after
  the whole accumulation group, with the loss divided by the group's global answer tokens: exactly
  the one process's gradient;
- rank 0 is the only writer (events, metrics, checkpoints, status, exports); what it decides from
  the store or the clock (the stop flags, a checkpoint due, a job already over) it `decide`s for all;
- a stop signal on any rank is `agree`d at the next step boundary, so all ranks stop at one step;
- a collective that fails because a peer is gone raises `PeerLost`: the job is left `running` for
  the restart, never failed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch

T = TypeVar("T")
# Rank 0 alone evaluates, saves model checkpoints and exports while the others wait at their next
# collective: the group's timeout must outlast those phases (torch's default is 10-30 minutes).
COLLECTIVE_TIMEOUT = timedelta(hours=2)


class PeerLost(Exception):
    """A collective failed: another rank of the group died (a SIGKILL, an OOM kill, a lost node).
    torchrun tears the group down; the job stays `running` and the restart resumes."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> World:
        env = os.environ if environ is None else environ
        size = int(env.get("WORLD_SIZE", "1") or 1)
        if size <= 1:
            return SINGLE
        return cls(rank=int(env["RANK"]), size=size, local_rank=int(env.get("LOCAL_RANK", env["RANK"])))

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        return "nccl" if torch.cuda.is_available() else "gloo"

    def start(self) -> None:
        """Join the process group (torchrun's rendezvous: `MASTER_ADDR`/`MASTER_PORT`); one GPU per rank."""
        if not self.distributed:
            return
        import torch.distributed as dist

        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
        dist.init_process_group(self.backend, rank=self.rank, world_size=self.size, timeout=COLLECTIVE_TIMEOUT)

    def close(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    # -- collectives (the identity for SINGLE) ----------------------------------------------------

    def decide(self, value: T) -> T:
        """Rank 0's `value` on every rank (any picklable value)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        _collective(lambda: dist.broadcast_object_list(box, src=0))
        return box[0]  # type: ignore[return-value]

    def gather(self, value: T) -> list[T]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.size
        _collective(lambda: dist.all_gather_object(out, value))
        return out

    def agree(self, *values: int) -> tuple[int, ...]:
        """The element-wise maximum over the ranks of small non-negative integers (a flag set on any
        rank is set on all)."""
        if not self.distributed:
            return values
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.long, device=self._device())
        _collective(lambda: dist.all_reduce(tensor, op=dist.ReduceOp.MAX))
        return tuple(int(v) for v in tensor.tolist())

    def sum(self, values: Sequence[float]) -> list[float]:
        """The element-wise sum over the ranks (float64, so counts stay exact)."""
        if not self.distributed:
            return list(values)
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.float64, device=self._device())
        _collective(lambda: dist.all_reduce(tensor))
        return tensor.tolist()

    def sum_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        """Sum the trainable gradients over the ranks in one flat all-reduce (the LoRA tensors only: a
        few MB). A parameter no rank computed a gradient for keeps `grad = None`, as in one process
        (AdamW then leaves it alone: no moment update, no weight decay)."""
        if not self.distributed or not parameters:
            return
        import torch.distributed as dist

        device = parameters[0].device
        flat = torch.cat(
            [
                (p.grad if p.grad is not None else torch.zeros_like(p, dtype=torch.float32)).reshape(-1).float()
                for p in parameters
            ]
            + [torch.tensor([float(p.grad is not None) for p in parameters], device=device)]
        )
        _collective(lambda: dist.all_reduce(flat))
        offset = 0
        had = flat[-len(parameters) :]
        for index, p in enumerate(parameters):
            size = p.numel()
            if had[index] > 0:
                summed = flat[offset : offset + size].view_as(p).to(p.dtype)
                if p.grad is None:
                    p.grad = summed.clone()
                else:
                    p.grad.copy_(summed)
            offset += size

    def align(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        """Rank 0's values of `parameters` on every rank (after setup and resume: one starting point)."""
        if not self.distributed:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for p in parameters:
                _collective(lambda p=p: dist.broadcast(p.data, src=0))

    # -- the data ----------------------------------------------------------------------------------

    def share(self, group: list[list[T]], accumulation: int) -> list[list[T]]:
        """This rank's part of an optimizer step's `group` (its micro-batches). With the plan's
        accumulation divisible by the world size, whole micro-batches go round-robin (each rank runs
        `accumulation / size` micro-batches of the planned size, so a GPU holds what the estimate
        sized); otherwise every micro-batch is split by example (`batch_size / size` a rank, rounded
        up). Either way the ranks together see exactly the group one process would."""
        if not self.distributed:
            return group
        if accumulation % self.size == 0:
            return group[self.rank :: self.size]
        parts = [batch[self.rank :: self.size] for batch in group]
        return [part for part in parts if part]

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


SINGLE = World()


def _collective(call: Callable[[], Any]) -> None:
    try:
        call()
    except RuntimeError as exc:  # gloo: "Connection closed by peer"; NCCL: a watchdog abort
        raise PeerLost(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
