"""What every data loader shares: the error type, uint8 -> float tensors, ImageNet constants.

Example::

    >>> to_tensor(np.zeros((2, 28, 28), np.uint8)).shape
    torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DatasetError", "to_tensor"]

#: Per-channel mean and standard deviation of ImageNet (RGB), as torchvision's weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DatasetError(ValueError):
    """A data file is missing or malformed; the message names the file and the problem."""


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images -> float32 ``(N, C, H, W)`` in [0, 1].

    Grey ``(N, H, W)`` or ``(N, 1, H, W)`` gives ``C = 1``; colour ``(N, H, W, 3)`` (the layout
    Pillow and the CUB/CEL data sets store) or ``(N, 3, H, W)`` gives ``C = 3``.

    Example::

        >>> to_tensor(np.full((2, 28, 28), 255, np.uint8)).amax().item()
        1.0
        >>> tuple(to_tensor(np.zeros((2, 8, 8, 3), np.uint8)).shape)
        (2, 3, 8, 8)
    """
    array = np.asarray(images)
    if array.dtype != np.uint8:
        raise DatasetError(f"to_tensor expects uint8 images, got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] == 3 and array.shape[1] != 3:
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise DatasetError(
            f"to_tensor expects (N, H, W), (N, 1, H, W), (N, H, W, 3) or (N, 3, H, W), got shape {array.shape}"
        )
    return torch.from_numpy(np.ascontiguousarray(array)).to(torch.float32).div_(255.0)

