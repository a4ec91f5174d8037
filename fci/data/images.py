"""Image datasets for the convolutional models, with nothing downloaded.

`digit_images()` is scikit-learn's bundled 8x8 grey digits as (N, 1, 8, 8)
images in [0, 1]; `load_images(path)` reads a user's `.npz` holding `X_train`
of shape (N, C, H, W), `y_train`, `X_test`, `y_test`, validated like
`fci.data.load_embeddings` (every refusal names the file and the key).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fci.data.datasets import _TrainTest

__all__ = ["ImageDataset", "digit_images", "load_images", "IMAGE_KEYS"]

IMAGE_KEYS = ("X_train", "y_train", "X_test", "y_test")


@dataclass(frozen=True, eq=False)
class ImageDataset(_TrainTest):
    """Images on the CPU: x_* (N, C, H, W) float32, y_* (N,) int64 class ids."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)
    loss: str = "ce"

    def __post_init__(self):
        for part, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.ndim != 4:
                raise ValueError(f"{self.name}: x_{part} must be (N, C, H, W), got shape {tuple(x.shape)}")
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(f"{self.name}: y_{part} must hold one label per image ({x.shape[0]}), got shape {tuple(y.shape)}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"{self.name}: x_train images are {tuple(self.x_train.shape[1:])} but x_test's are {tuple(self.x_test.shape[1:])}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(int(v) for v in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def n_out(self) -> int:
        return int(max(int(self.y_train.max()), int(self.y_test.max())) + 1)

    def describe(self) -> str:
        c, h, w = self.shape
        return f"{self.name}: {self.n_train} train / {self.n_test} test images of {c}x{h}x{w}, {self.n_out} classes"

    def __repr__(self) -> str:
        return f"ImageDataset({self.describe()})"


def digit_images(seed: int = 0, test_fraction: float = 0.25) -> ImageDataset:
    """scikit-learn's digits as (N, 1, 8, 8) images, pixels / 16, with the same
    stratified split as `fci.data.digits(seed, test_fraction)`."""
    from fci.data.datasets import digits

    d = digits(seed=seed, test_fraction=test_fraction)
    return ImageDataset(name=f"digit-images-s{seed}-t{test_fraction:g}",
                        x_train=d.x_train.reshape(-1, 1, 8, 8).contiguous(), y_train=d.y_train,
                        x_test=d.x_test.reshape(-1, 1, 8, 8).contiguous(), y_test=d.y_test,
                        info={**d.info, "shape": [1, 8, 8]})


def load_images(path: str | os.PathLike, standardize: bool = True) -> ImageDataset:
    """Images from an `.npz` with `X_train` (N, C, H, W), `y_train`, `X_test`,
    `y_test`. Labels are integers (integral floats count) or strings, mapped to
    class ids 0..K-1 in sorted order of the training labels; every test label
    must be one of them. With `standardize`, each channel is centred and scaled
    by the training split's mean and standard deviation. Raises ValueError
    naming the file and the missing or malformed key."""
    from fci.data.datasets import _read_npz, _stem, class_ids, _standardized

    path = os.fspath(path)
    arrays = _read_npz(path, IMAGE_KEYS, "--images", "an images file")
    for k in ("X_train", "X_test"):
        a = arrays[k]
        if a.ndim != 4 or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise ValueError(f"{path}: {k} must be a 4-d real array (N, C, H, W), got shape {a.shape} dtype {a.dtype}")
        if not np.isfinite(a).all():
            raise ValueError(f"{path}: {k} holds NaN or infinite values")
        if len(a) == 0:
            raise ValueError(f"{path}: {k} holds no images")
    if arrays["X_train"].shape[1:] != arrays["X_test"].shape[1:]:
        raise ValueError(f"{path}: X_train images are (C, H, W) = {arrays['X_train'].shape[1:]} but X_test's are {arrays['X_test'].shape[1:]}")
    ytr_ids, yte_ids, classes = class_ids(path, arrays, "image", "{n} images but y_{part} has {m} labels")
    xtr, xte = _standardized(arrays, standardize, axes=(0, 2, 3))  # per channel
    return ImageDataset(
        name=f"images-{_stem(path)}",
        x_train=torch.from_numpy(xtr), y_train=torch.from_numpy(ytr_ids),
        x_test=torch.from_numpy(xte), y_test=torch.from_numpy(yte_ids),
        info={"source": os.path.abspath(path), "classes": [str(c) for c in classes], "standardize": standardize,
              "shape": list(xtr.shape[1:])},
    )
