"""The base trainer of every scribble method, and by itself the "nnU-Net + partial loss" baseline."""
from __future__ import annotations

import json
import os
from typing import ClassVar

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTransform
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_scribble.trainers.common import TrainerCommon

#: Value the data loader and the spatial augmentation give to voxels outside the image.
OUTSIDE_IMAGE = -1


def check_ignore_label(dataset_json: dict, dataset_json_file: str) -> int:
    """Return the ignore label of ``dataset_json``; raise a helpful error if it is missing or not the highest.

    Raises:
        ValueError: naming ``dataset_json_file`` and showing how to declare ``"ignore"``.
    """
    labels = dataset_json.get("labels", {})
    example = {k: v for k, v in labels.items() if k != "ignore"}
    fixed = json.dumps({**example, "ignore": max([int(v) for v in example.values() if not isinstance(v, (list, tuple))]
                                                  or [0]) + 1})
    if "ignore" not in labels:
        raise ValueError(
            f"{dataset_json_file} declares no ignore label, but scribble trainers learn from partially annotated "
            f"labels: unannotated voxels must carry an 'ignore' label, the highest label value. Declare it in "
            f"'labels', e.g. \"labels\": {fixed}, write that value into every unannotated voxel of labelsTr, and "
            f"re-run nnUNetv2_plan_and_preprocess. (The converters in dataset_conversion/ do this for you.)")
    ignore = labels["ignore"]
    others = [v for k, v in labels.items() if k != "ignore"]
    flat = [int(x) for v in others for x in (v if isinstance(v, (list, tuple)) else [v])]
    if not isinstance(ignore, int) or (flat and ignore <= max(flat)):
        raise ValueError(f"{dataset_json_file}: the ignore label must be one integer higher than every other label, "
                         f"got \"ignore\": {ignore!r} with labels {labels}; e.g. \"labels\": {fixed}")
    return ignore


def declares_regions(dataset_json: dict) -> bool:
    """Whether ``dataset_json`` asks for region-based training (a label given as a list of values)."""
    return "regions_class_order" in dataset_json or any(
        isinstance(v, (list, tuple)) for k, v in dataset_json.get("labels", {}).items() if k != "ignore")


def replace_outside_image_label(transforms: BasicTransform, ignore_label: int) -> int:
    """Make ``RemoveLabelTransform(-1 -> 0)`` of nnU-Net's pipeline map to ``ignore_label`` instead (in place).

    nnU-Net pads patches beyond the image and the spatial augmentation's out-of-image samples with -1, then turns -1
    into background. With scribbles, background is an annotation like any other class, so these voxels must be
    unannotated. Returns the number of transforms changed.
    """
    changed = 0
    stack = [transforms]
    while stack:
        t = stack.pop()
        if isinstance(t, RemoveLabelTransform) and t.label_value == OUTSIDE_IMAGE and t.set_to == 0:
            t.set_to = ignore_label
            changed += 1
        stack.extend(getattr(t, "transforms", []) if isinstance(t, ComposeTransforms) else [])
        if hasattr(t, "transform"):  # RandomTransform
            stack.append(t.transform)
    return changed


#: ``dataset.json`` key by which a converter declares that background outside the non-zero region is labelled
OUTSIDE_IMAGE_BACKGROUND_KEY = "outside_image_background"


class nnUNetTrainerScribble(TrainerCommon):
    """nnU-Net trained on scribbles with its partial loss: the baseline, and the base of every scribble method.

    What it adds to nnU-Net (everything else, network, optimiser, schedule, patch/batch size, augmentation and
    inference, is nnU-Net's):

    - refuses a dataset without an ignore label, before anything is written, naming the ``dataset.json``;
    - the supervised term is nnU-Net's partial loss (Dice + CE over annotated voxels, deep supervision), built by
      ``nnUNetTrainer._build_loss`` with the dataset's ignore label;
    - voxels that the data loader or the spatial augmentation pull in from outside the image are ignore, not
      background, in training and online validation. Deviation from plain nnU-Net, stated: nnU-Net's preprocessing
      also writes -1 into voxels outside the non-zero mask (where every channel is exactly 0) when it crops to
      non-zero; a background scribble there becomes unannotated as well. ``outside_image_background = True``
      keeps nnU-Net's -1 -> background instead: with a converter that labels the exact-zero region around the body
      background (MSCMRseg's ``--zero_border_background``) that region is then supervised, as nnU-Net does for
      dense labels. Such a converter declares ``"outside_image_background": true`` in ``dataset.json`` and the
      trainers follow it (:meth:`dataset_hyperparameters`); ``nnUNet_scribble_hparams`` still overrides it;
    - everything of :class:`~nnunet_scribble.trainers.common.TrainerCommon` (named loss terms logged per epoch,
      extra checkpoint state, deep supervision on every decoder, typed hyperparameters, dense final validation).

    Method trainers override :meth:`compute_loss_terms` (and ``build_network_architecture`` when they add decoders)
    and keep ``nnUNetTrainer``'s ``__init__`` signature.
    """

    #: Region-based datasets (overlapping regions, sigmoid outputs): nnU-Net's partial loss handles them; the methods'
    #: terms (softmax pseudo labels, class distance maps, class prototypes) need mutually exclusive classes.
    SUPPORTS_REGIONS: ClassVar[bool] = True
    #: Train the voxels nnU-Net marks -1 (beyond the image, out-of-image augmentation samples, background labels
    #: outside the non-zero mask) as background, as plain nnU-Net does, instead of ignore (the default).
    outside_image_background: bool = False

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        location = _dataset_json_location(plans)
        if not self.SUPPORTS_REGIONS and declares_regions(dataset_json):
            raise ValueError(f"{location} declares regions (labels given as lists of values: "
                             f"{dataset_json.get('labels')}), but {type(self).__name__} needs mutually exclusive "
                             f"classes (softmax outputs). Train regions with nnUNetTrainerScribble, or convert the "
                             f"dataset to one label per voxel.")
        check_ignore_label(dataset_json, location)
        super().__init__(plans, configuration, fold, dataset_json, device)

    def dataset_hyperparameters(self, dataset_json: dict) -> dict:
        """``{"outside_image_background": value}`` when ``dataset.json`` declares the key, else nothing.

        A dataset whose converter labelled background outside the image's non-zero region says so in its
        ``dataset.json``: the labels there only reach the loss when -1 counts as background, so a trainer that
        ignored the declaration would silently train on a dataset without them.
        """
        value = dataset_json.get(OUTSIDE_IMAGE_BACKGROUND_KEY)
        return {} if value is None else {"outside_image_background": value}

    def outside_is_background(self) -> bool:
        """Whether the transforms being built map nnU-Net's -1 to background (else to the ignore label).

        ``outside_image_background``; a method with a phase that must not see that background overrides this.
        """
        return self.outside_image_background

    def on_train_start(self):
        if not self.was_initialized:
            self.initialize()
        self.warn_about_unannotated_classes()
        super().on_train_start()

    def warn_about_unannotated_classes(self) -> dict[int, str]:
        """Warn (log and console) about foreground classes scribbled in no training case of this fold.

        Such a class can never be predicted by a scribble-trained network (and its Dice will be 0), so a user should
        learn it before training for days. Read from the ``class_locations`` nnU-Net's preprocessing stores in every
        case's ``.pkl``, so it costs one small file per case. Background is not checked (nnU-Net does not record
        its locations). Returns ``{label: name}`` of the unannotated classes.
        """
        from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_pickle

        if self.label_manager.has_regions or self.local_rank != 0 or getattr(self, "_annotation_checked", False):
            return {}
        self._annotation_checked = True
        tr_keys, _ = self.do_split()
        names = {v: k for k, v in self.dataset_json["labels"].items() if isinstance(v, int)}
        seen: set[int] = set()
        wanted = set(self.label_manager.foreground_labels) - {self.label_manager.ignore_label}
        for key in tr_keys:
            pkl = join(self.preprocessed_dataset_folder, key + ".pkl")
            if not isfile(pkl):
                return {}  # e.g. a dataset written by another preprocessor: nothing to check
            locations = load_pickle(pkl).get("class_locations", {})
            # int keys are classes; a tuple key is nnU-Net's "any annotated voxel" entry of ignore-label datasets
            seen.update(int(c) for c, loc in locations.items()
                        if isinstance(c, (int, np.integer)) and loc is not None and len(loc) > 0)
            if wanted <= seen:
                return {}
        missing = {c: names.get(c, str(c)) for c in sorted(wanted - seen)}
        if missing:
            listed = ", ".join(f"'{n}' (label {c})" for c, n in missing.items())
            self.print_to_log_file(
                f"WARNING: {listed} {'is' if len(missing) == 1 else 'are'} not annotated in any of the "
                f"{len(tr_keys)} training cases of fold {self.fold}: the network cannot learn "
                f"{'it' if len(missing) == 1 else 'them'} from scribbles and will score Dice 0 there. Check labelsTr "
                f"(and the label values in dataset.json) before training.", also_print_to_console=True)
        return missing

    def extra_target_transforms(self) -> list[BasicTransform]:
        """Per-sample transforms that append channels to ``segmentation`` after spatial augmentation.

        They run in the data-augmentation workers, after out-of-image voxels became ignore and before the targets
        are downsampled for deep supervision; the appended channels reach :meth:`compute_loss_terms` as ``extra``
        (full resolution). Validation targets stay single-channel. Default: none.
        """
        return []

    def get_training_transforms(self, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None) -> BasicTransform:
        # an instance method (nnU-Net's is static) so that methods can add transforms that need the trainer's state
        transforms = nnUNetTrainer.get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm, is_cascaded, foreground_labels, regions, ignore_label)
        if ignore_label is not None and not self.outside_is_background():
            replace_outside_image_label(transforms, ignore_label)
        extra = self.extra_target_transforms()
        if extra:
            steps = transforms.transforms
            ds = [i for i, t in enumerate(steps) if isinstance(t, DownsampleSegForDSTransform)]
            at = ds[0] if ds else len(steps)
            transforms.transforms = steps[:at] + list(extra) + steps[at:]
        return transforms

    def get_validation_transforms(self, deep_supervision_scales, is_cascaded=False, foreground_labels=None,
                                  regions=None, ignore_label=None) -> BasicTransform:
        # an instance method (nnU-Net's is static, always called through self) to read outside_image_background
        transforms = nnUNetTrainer.get_validation_transforms(deep_supervision_scales, is_cascaded,
                                                             foreground_labels, regions, ignore_label)
        if ignore_label is not None and not self.outside_is_background():
            replace_outside_image_label(transforms, ignore_label)
        return transforms


def _dataset_json_location(plans: dict) -> str:
    """Best guess of the dataset.json file nnU-Net read, for error messages."""
    name = plans.get("dataset_name", "<dataset>")
    for root in (nnUNet_preprocessed, nnUNet_raw):
        if root.is_set():
            return os.path.join(root.get(), name, "dataset.json")
    return os.path.join(name, "dataset.json")
