"""The set of classes annotated in the whole image of each training sample (MedCL's image-level labels ``Ψ``).

nnU-Net trains on patches, but MedCL's category loss needs the classes annotated anywhere in the sample's *image*:
the slice in 2D (nnU-Net's 2D configurations take one slice along the first axis of the preprocessed case), the case
in 3D. Cropping and augmentation must not change it, so it is read from the preprocessed label map, not from the
augmented patch:

- :func:`class_presence_table` scans a case's label map once, slice by slice: ``(slices, C)`` booleans;
- :class:`ClassPresenceDataLoader` (an ``nnUNetDataLoader``) records which slice each sample came from (the crop
  box chosen by ``get_bbox``), looks the row up (2D) or takes the union over slices (3D) and adds
  ``batch["class_presence"]``, ``(B, C)`` bool, to every batch. Tables are cached in memory per loader, i.e. once
  per case and data-augmentation worker; nothing is written next to the preprocessed data;
- :func:`use_data_loader_class` makes ``nnUNetTrainer.get_dataloaders`` build this loader without copying that
  method (it names the loader class through its module's global, which is swapped for the duration of the call).

Labels outside ``[0, C)`` (the ignore label, nnU-Net's -1 outside the non-zero mask) are not classes.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader


def class_presence_table(seg: np.ndarray, num_classes: int) -> np.ndarray:
    """For every index along the first spatial axis, which of the classes ``0..num_classes-1`` occur.

    Args:
        seg: label map ``(1, Z, Y, X)`` (nnU-Net's layout, also for 2D data) or ``(Z, Y, X)``/``(Z, X)``.
        num_classes: ``C``; other values (ignore, -1) are skipped.

    Returns:
        ``(spatial[0], C)`` bool array.
    """
    seg = np.asarray(seg)
    if seg.ndim == 4:  # nnU-Net's (1, Z, Y, X)
        seg = seg[0]
    if seg.ndim < 2:
        raise ValueError(f"expected a label map with at least 2 spatial axes, got shape {seg.shape}")
    table = np.zeros((seg.shape[0], num_classes), dtype=bool)
    for i, s in enumerate(seg):
        s = s[(s >= 0) & (s < num_classes)].astype(np.int64)
        table[i] = np.bincount(s, minlength=num_classes)[:num_classes] > 0
    return table


class ClassPresenceDataLoader(nnUNetDataLoader):
    """nnU-Net's data loader that also returns ``class_presence``: ``(B, C)`` classes annotated in each image.

    ``C`` is the label manager's number of segmentation outputs; see the module docstring for what "image" means.
    """

    def __init__(self, data, batch_size, patch_size, final_patch_size, label_manager, *args, **kwargs):
        super().__init__(data, batch_size, patch_size, final_patch_size, label_manager, *args, **kwargs)
        if label_manager.has_regions:
            raise ValueError("class presence is defined for label-based training, not for regions")
        self.num_classes = label_manager.num_segmentation_heads
        self._tables: dict[str, np.ndarray] = {}
        self._bbox_lbs: list[list[int]] = []

    def get_bbox(self, data_shape, force_fg, class_locations, overwrite_class=None, verbose=False):
        lbs, ubs = super().get_bbox(data_shape, force_fg, class_locations, overwrite_class, verbose)
        self._bbox_lbs.append(list(lbs))
        return lbs, ubs

    def table(self, identifier: str) -> np.ndarray:
        """The cached :func:`class_presence_table` of a case."""
        if identifier not in self._tables:
            seg = self._data.load_case(identifier)[1]
            self._tables[identifier] = class_presence_table(np.asarray(seg[:]), self.num_classes)
        return self._tables[identifier]

    def image_presence(self, identifier: str, bbox_lbs: list[int]) -> np.ndarray:
        """Classes of the sample's image: its slice (2D configuration) or the whole case (3D)."""
        table = self.table(identifier)
        if not self.patch_size_was_2d:
            return table.any(0)
        z = bbox_lbs[0]
        return table[z] if 0 <= z < table.shape[0] else np.zeros(self.num_classes, dtype=bool)

    def generate_train_batch(self) -> dict:
        self._bbox_lbs = []
        batch = super().generate_train_batch()
        if len(self._bbox_lbs) != len(batch["keys"]):
            raise RuntimeError(f"expected one crop box per sample, got {len(self._bbox_lbs)} for "
                               f"{len(batch['keys'])} samples")
        presence = [self.image_presence(k, lbs) for k, lbs in zip(batch["keys"], self._bbox_lbs)]
        batch["class_presence"] = torch.from_numpy(np.stack(presence))
        return batch


@contextmanager
def use_data_loader_class(cls: type[nnUNetDataLoader]) -> Iterator[None]:
    """Within the block, ``nnUNetTrainer.get_dataloaders`` builds ``cls`` instead of ``nnUNetDataLoader``."""
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module

    original = trainer_module.nnUNetDataLoader
    trainer_module.nnUNetDataLoader = cls
    try:
        yield
    finally:
        trainer_module.nnUNetDataLoader = original
