"""A seeded random projection of flat gradients to ``k`` dimensions (a count sketch).

LESS projects LoRA gradients with a dense Gaussian/Rademacher matrix through TRAK's CUDA kernel;
a dense ``P x k`` matrix is out of the question in plain PyTorch (8192 dims of a 10M-parameter
adapter is 80G entries). A count sketch sends each coordinate, with a random sign, into one of
``k`` buckets: ``E[<Sx, Sy>] = <x, y>`` with variance about ``|x|^2 |y|^2 / k``, like a dense
Johnson-Lindenstrauss map, at O(P) time and memory (one bucket index and sign per coordinate).
"""

from __future__ import annotations

from infuser.lazy import TYPE_CHECKING, lazy_import

if TYPE_CHECKING:
    import torch
    from torch import Tensor
else:
    torch = lazy_import("torch")  # parsing a command line imports this module, never torch


class CountSketch:
    """``x -> S x`` for a fixed random ``S`` of shape ``(k, dim)`` with one ``+-1`` per column.

    Args:
        dim: length of the vectors to project.
        k: projected dimension.
        seed: the same seed gives the same ``S`` on every run and device.
        device: where the bucket indices live (the vectors' device).
    """

    def __init__(self, dim: int, k: int, seed: int, device: torch.device | str = "cpu") -> None:
        if k < 1:
            raise ValueError(f"projection dimension must be >= 1, got {k}")
        generator = torch.Generator().manual_seed(seed)
        self.k = k
        self.bucket = torch.randint(k, (dim,), generator=generator).to(device)
        self.sign = (torch.randint(2, (dim,), generator=generator) * 2 - 1).to(device, torch.float32)

    def __call__(self, vector: Tensor) -> Tensor:
        return self.add(torch.zeros(self.k, dtype=vector.dtype, device=vector.device), vector, slice(0, vector.numel()))

    def add(self, sketch: Tensor, values: Tensor, span: slice) -> Tensor:
        """Add the projection of ``values``, the coordinates ``span`` of a vector, to ``sketch``
        (``S x`` is a sum over coordinates, so a vector can be projected chunk by chunk)."""
        return sketch.index_add_(0, self.bucket[span], values * self.sign[span])
