"""explainers.datasets.common: uint8 arrays to float tensors, grey and colour layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explainers.datasets.common import DatasetError, to_tensor


def test_to_tensor_scales_and_shapes():
    images = np.array([[[0, 255] * 14] * 28], dtype=np.uint8)
    x = to_tensor(images)
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert x.min().item() == 0.0 and x.max().item() == 1.0
    assert to_tensor(images[:, None]).shape == (1, 1, 28, 28)
    with pytest.raises(DatasetError, match="uint8"):
        to_tensor(images.astype(np.float32))
    with pytest.raises(DatasetError, match="shape"):
        to_tensor(np.zeros((2, 2, 28, 28), np.uint8))
    with pytest.raises(DatasetError, match="shape"):
        to_tensor(np.zeros((28, 28), np.uint8))
    # Colour (CUB/CEL): channels-last as stored, or channels-first, both to (N, 3, H, W).
    rgb = np.zeros((2, 8, 6, 3), np.uint8)
    rgb[1, 2, 3] = (255, 0, 51)
    x = to_tensor(rgb)
    assert x.shape == (2, 3, 8, 6) and x[1, :, 2, 3].tolist() == pytest.approx([1.0, 0.0, 0.2])
    torch.testing.assert_close(to_tensor(rgb.transpose(0, 3, 1, 2)), x)
