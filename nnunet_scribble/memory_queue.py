"""A per-class FIFO memory queue of embeddings for contrastive losses, checkpointable and DDP-aware.

Per rank the queue is a plain tensor object (not a module: it is not part of the network, so the network's
state_dict, the checkpoint's ``network_weights`` and inference are unchanged). Under DDP every rank gathers the
embeddings of all ranks (in rank order) before enqueueing, so that all ranks hold identical queues.

References:
    Wang et al., "Exploring Cross-Image Pixel Contrast for Semantic Segmentation", ICCV 2021 (segment queue);
    Lei et al., "PCLMix", ICIC 2024, §3.3 (500 class-mean embeddings per class). Deviation from the PCLMix
    reference code: background is enqueued too (the reference never enqueues class 0, so its background entries
    stay at their initial values), and entries not yet written are excluded rather than random vectors.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import distributed as dist


def all_gather_variable(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (``(N_r, *rest)``, ``N_r`` may differ per rank) from every rank, in rank order.

    Identity without an initialised process group or with a single process.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    world = dist.get_world_size()
    count = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    padded = x.new_zeros((max(counts), *x.shape[1:]))
    padded[:x.shape[0]] = x
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:c] for g, c in zip(gathered, counts)])


class ClassMemoryQueue:
    """``num_classes`` FIFO queues of ``size`` embeddings of dimension ``dim`` (background included).

    Args:
        num_classes: classes including background.
        size: entries per class (PCLMix: 500).
        dim: embedding dimension (PCLMix: 256).
        device: where the queue lives.
    """

    def __init__(self, num_classes: int, size: int = 500, dim: int = 256, device: torch.device | str = "cpu"):
        if num_classes < 1 or size < 1 or dim < 1:
            raise ValueError(f"num_classes, size and dim must be positive, got {num_classes}, {size}, {dim}")
        self.queue = torch.zeros(num_classes, size, dim, device=device)
        self.pointer = torch.zeros(num_classes, dtype=torch.long, device=device)
        self.count = torch.zeros(num_classes, dtype=torch.long, device=device)

    @property
    def num_classes(self) -> int:
        return self.queue.shape[0]

    @property
    def size(self) -> int:
        return self.queue.shape[1]

    def to(self, device: torch.device | str) -> ClassMemoryQueue:
        self.queue, self.pointer, self.count = self.queue.to(device), self.pointer.to(device), self.count.to(device)
        return self

    @torch.no_grad()
    def enqueue(self, embeddings: torch.Tensor, labels: torch.Tensor, gather: bool = True) -> None:
        """Append ``embeddings`` (``(N, dim)``) to the queues of their ``labels`` (``(N,)``), oldest entries out.

        With ``gather`` and an initialised process group, the embeddings and labels of all ranks are gathered first
        (:func:`all_gather_variable`), so every rank enqueues the same entries in the same order.
        """
        embeddings = embeddings.detach().to(self.queue.device, self.queue.dtype)
        labels = labels.detach().to(self.queue.device, torch.long)
        if gather:
            embeddings, labels = all_gather_variable(embeddings), all_gather_variable(labels)
        for c in range(self.num_classes):
            rows = embeddings[labels == c][-self.size:]  # more than `size` new entries: keep the newest
            n = rows.shape[0]
            if n == 0:
                continue
            slots = (self.pointer[c] + torch.arange(n, device=rows.device)) % self.size
            self.queue[c, slots] = rows
            self.pointer[c] = (self.pointer[c] + n) % self.size
            self.count[c] = torch.clamp(self.count[c] + n, max=self.size)

    def entries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The written entries and their classes: ``(M, dim)`` and ``(M,)``, class by class."""
        valid = torch.arange(self.size, device=self.queue.device)[None] < self.count[:, None]
        labels = torch.arange(self.num_classes, device=self.queue.device)[:, None].expand_as(valid)
        return self.queue[valid], labels[valid]

    def state_dict(self) -> dict[str, Any]:
        return {"queue": self.queue.cpu(), "pointer": self.pointer.cpu(), "count": self.count.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["queue"].shape) != tuple(self.queue.shape):
            raise ValueError(f"queue of shape {tuple(state['queue'].shape)} does not fit {tuple(self.queue.shape)}")
        device = self.queue.device
        self.queue = state["queue"].to(device)
        self.pointer, self.count = state["pointer"].to(device), state["count"].to(device)
