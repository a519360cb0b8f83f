"""Training on several processes (torchrun) with DistributedDataParallel: the processes'
layout, the shard of a global batch each one takes, and the pieces that make an N-process
run take the same optimisation steps as a one-process run (batch statistics and random
draws over the global batch).

A rank's shard of a global batch of B rows is rows rank, rank + W, rank + 2W, ... (W the
world size): the rows DistributedSampler gives it, so synthetic and real data shard alike.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from pyface._usage import UsageError


@dataclass(frozen=True)
class Topology:
    """Where this process stands: its rank among world_size processes, and its device."""
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:  # rank 0 alone writes checkpoints, logs and images
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_world_size() -> int:
    """The number of processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str) -> Topology:
    """The process group torchrun describes in the environment (WORLD_SIZE, RANK, LOCAL_RANK,
    MASTER_ADDR/PORT): gloo on the CPU, NCCL on CUDA with one device per process (cuda:LOCAL_RANK).
    Without torchrun (or with one process), a single process on `device`."""
    world_size = launched_world_size()
    device = torch.device(device)
    if world_size == 1:
        return Topology(0, 1, device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"local rank {local_rank} has no GPU: this node sees {torch.cuda.device_count()}; "
                             f"start at most that many processes per node (--nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size,
                                device_id=device if device.type == "cuda" else None)
    return Topology(rank, world_size, device)


def teardown(topology: Topology) -> None:
    if topology.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(batch: dict[str, Tensor], topology: Topology) -> dict[str, Tensor]:
    """This rank's rows of a global batch (every field has the batch first)."""
    if not topology.distributed:
        return batch
    return {name: value[topology.rank::topology.world_size] for name, value in batch.items()}


def mean_over_ranks(values: Tensor) -> Tensor:
    """The mean over the ranks of a tensor each holds (the global batch's mean loss, when
    each holds its shard's mean over equal shards)."""
    _, world = _world()
    if world > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= world
    return values


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def global_randn(local_shape: tuple[int, ...], device=None, dtype=None) -> Tensor:
    """Standard normal noise for this rank's rows, drawn for the whole global batch from the
    global random stream (every rank draws the same) so that each sample's noise does not
    depend on the number of processes. In one process, torch.randn(local_shape)."""
    rank, world = _world()
    noise = torch.randn(local_shape[0] * world, *local_shape[1:], device=device, dtype=dtype)
    return noise[rank::world]


class GlobalBatchDropout(nn.Dropout):
    """nn.Dropout whose mask is drawn for the whole global batch and cut to this rank's rows
    (so an N-process run drops what the one-process run drops). In one process it draws
    exactly what nn.Dropout draws."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        rank, world = _world()
        ones = torch.ones(x.shape[0] * world, *x.shape[1:], device=x.device, dtype=x.dtype)
        return x * nn.functional.dropout(ones, self.p, True)[rank::world]


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over the ranks; its gradient is the sum of the ranks' gradients
    (every rank's loss depends on every rank's input through it)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def global_batch_statistics(x: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor, int]:
    """(mean, biased variance, count) of x over `dims` and over every rank's x (its batch
    shard), gradients flowing through the sums; two passes, as a one-process variance."""
    count = math.prod(x.shape[d] for d in dims)
    rank, world = _world()
    if world == 1:
        var, mean = torch.var_mean(x, dim=dims, correction=0)
        return mean, var, count
    total = count * world
    mean = _SumOverRanks.apply(x.sum(dim=dims)) / total
    shape = [1 if d in dims else size for d, size in enumerate(x.shape)]  # mean's, broadcast against x
    var = _SumOverRanks.apply(((x - mean.view(shape)) ** 2).sum(dim=dims)) / total
    return mean, var, total


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm (1-D, 2-D or 3-D) normalising with the statistics of the global batch, all
    ranks' shards together: nn.SyncBatchNorm's role, on gloo (the CPU) as well as NCCL.
    Running statistics, eval mode and parameters are nn.BatchNorm's."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"GlobalBatchNorm: expected at least 2-D input (N, C, ...), got {x.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if not self.training and self.track_running_stats:
            return super().forward(x)
        dims = (0, *range(2, x.dim()))
        mean, var, count = global_batch_statistics(x, dims)
        if self.training and self.track_running_stats:
            update_running_statistics(self, mean, var, count)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def update_running_statistics(bn: nn.modules.batchnorm._BatchNorm, mean: Tensor, var: Tensor, count: int) -> None:
    """nn.BatchNorm's running-statistics update from a batch's mean and biased variance."""
    with torch.no_grad():
        bn.num_batches_tracked += 1
        momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        unbiased = var * (count / max(count - 1, 1))
        bn.running_mean.lerp_(mean.detach().to(bn.running_mean.dtype), momentum)
        bn.running_var.lerp_(unbiased.detach().to(bn.running_var.dtype), momentum)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Every nn.BatchNorm1d/2d/3d in `module` replaced by a GlobalBatchNorm holding the same
    parameters and buffers (in place; returns module, or the replacement if it is one)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats)
        converted.load_state_dict(module.state_dict())
        if module.affine:  # the same Parameter objects, so optimisers made before still hold them
            converted.weight, converted.bias = module.weight, module.bias
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        setattr(module, name, convert_batchnorm(child))
    return module


def convert_dropout(module: nn.Module) -> nn.Module:
    """Every plain nn.Dropout in `module` replaced by a GlobalBatchDropout (in place)."""
    for name, child in module.named_children():
        if type(child) is nn.Dropout:
            setattr(module, name, GlobalBatchDropout(child.p, child.inplace))
        else:
            convert_dropout(child)
    return module


__all__ = ["GlobalBatchDropout", "GlobalBatchNorm", "Topology", "convert_batchnorm", "convert_dropout",
           "global_batch_statistics", "global_randn", "launched_world_size", "mean_over_ranks", "setup", "shard",
           "teardown"]
