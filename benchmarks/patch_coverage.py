#!/usr/bin/env python
"""How much of each image nnU-Net's patch sampling shows the network, on a scribble (ignore-label) dataset.

With an ignore label, nnU-Net's data loader centres *every* training patch on an annotated voxel (a random annotated
voxel, or for the oversampled share of the batch a voxel of a random foreground class); only datasets without an
ignore label get random patch positions. When the patch is smaller than the image, unannotated regions far from
every scribble are then rarely or never inside a patch: the network never learns what they are, and the methods'
unsupervised terms (pseudo labels, consistency, contrast), which act on unannotated voxels, never reach them. This
script measures that with nnU-Net's own sampler (``nnUNetDataLoader.get_bbox`` and its oversampling rule) on the
preprocessed training cases of a fold:

    python benchmarks/patch_coverage.py -d 27 -c 2d -p nnUNetPlans_cpu --patch 128 128

For each patch size (the plans' patch, plus every ``--patch``) it prints, over the voxels of the sampled cases
(outside nnU-Net's crop mask excluded): the mean probability that a voxel lies inside a training patch, for the
annotated voxels and for unannotated voxels farther than ``--distances`` mm from every annotated voxel, and the share
of the latter that are inside a patch less than 5 % of the time. In 2D (patches of one slice) the probability is per
draw on the voxel's slice; in 3D per draw on its case. The final patch is taken centred where nnU-Net's loader
centres its (larger) pre-augmentation crop; rotation and scaling are ignored.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
from scipy import ndimage


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--dataset_id", type=int, required=True, help="preprocessed dataset ID ($nnUNet_preprocessed)")
    p.add_argument("-c", "--configuration", default="2d")
    p.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default: %(default)s)")
    p.add_argument("-f", "--fold", type=int, default=0)
    p.add_argument("--patch", type=int, nargs="+", action="append", default=[],
                   help="another patch size to compare (repeatable), e.g. --patch 128 128")
    p.add_argument("--cases", type=int, default=20, help="training cases sampled, evenly spaced (default: %(default)s)")
    p.add_argument("--draws", type=int, default=2000, help="patch draws per case (default: %(default)s)")
    p.add_argument("--distances", type=float, nargs="+", default=[20.0, 50.0],
                   help="distance thresholds in mm from the nearest annotated voxel (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def coverage(loader, seg: np.ndarray, class_locations: dict, patch: tuple[int, ...], draws: int,
             per_slice: bool) -> np.ndarray:
    """Probability that each voxel of ``seg`` ``(Z, X, Y)`` is inside a training patch, with nnU-Net's sampler.

    ``loader`` is an ``nnUNetDataLoader`` whose ``patch_size`` is ``patch`` (3 axes; 2D patches have 1 slice).
    """
    counts = np.zeros(seg.shape, dtype=np.float64)
    per_draw_slices = np.zeros(seg.shape[0])
    for i in range(draws):
        force_fg = loader.get_do_oversample(i % loader.batch_size)
        lbs, ubs = loader.get_bbox(np.array(seg.shape), force_fg, class_locations)
        window = tuple(slice(max(lb, 0), max(min(ub, s), 0)) for lb, ub, s in zip(lbs, ubs, seg.shape))
        counts[window] += 1
        per_draw_slices[window[0]] += 1
    if per_slice:
        return counts / np.maximum(per_draw_slices, 1)[:, None, None]
    return counts / draws


def main(argv=None) -> int:
    args = parse_args(argv)
    from batchgenerators.utilities.file_and_folder_operations import join, load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    np.random.seed(args.seed)
    name = maybe_convert_to_dataset_name(args.dataset_id)
    pre = join(nnUNet_preprocessed, name)
    pm = PlansManager(join(pre, args.plans + ".json"))
    cm = pm.get_configuration(args.configuration)
    lm = pm.get_label_manager(load_json(join(pre, "dataset.json")))
    if not lm.has_ignore_label:
        raise SystemExit(f"{name} has no ignore label: nnU-Net samples its patches at random positions")
    folder = join(pre, cm.data_identifier)
    keys = load_json(join(pre, "splits_final.json"))[args.fold]["train"]
    keys = [keys[i] for i in np.linspace(0, len(keys) - 1, min(args.cases, len(keys))).astype(int)]
    dataset = infer_dataset_class(folder)(folder, identifiers=keys)
    is_2d = len(cm.patch_size) == 2
    spacing = list(cm.spacing)
    patches = [tuple(cm.patch_size)] + [tuple(p) for p in args.patch]

    print(f"{name} {args.plans} {args.configuration}, fold {args.fold}: {len(keys)} training cases x {args.draws} "
          f"draws, batch {cm.batch_size}, oversampling 0.33; spacing {spacing} mm")
    header = ["patch", "annotated voxels"] + [f"> {d:g} mm from scribbles" for d in args.distances] + \
             [f"share > {d:g} mm in < 5 % of patches" for d in args.distances]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for patch in patches:
        if len(patch) != len(cm.patch_size):
            raise SystemExit(f"--patch {patch} has {len(patch)} axes, the configuration {len(cm.patch_size)}")
        full = (1, *patch) if is_2d else patch
        loader = nnUNetDataLoader(dataset, cm.batch_size, full, full, lm, oversample_foreground_percent=0.33)
        annotated, far = [], {d: [] for d in args.distances}
        for key in keys:
            _, seg, _, props = dataset.load_case(key)
            seg = np.asarray(seg[0])
            cov = coverage(loader, seg, props["class_locations"], full, args.draws, per_slice=is_2d)
            inside = seg != -1
            ann = inside & (seg != lm.ignore_label)
            if is_2d:
                dist = np.stack([ndimage.distance_transform_edt(~a, sampling=spacing) if a.any()
                                 else np.full(a.shape, np.inf) for a in ann])
            else:
                dist = ndimage.distance_transform_edt(~ann, sampling=spacing)
            annotated.append(cov[ann])
            for d in args.distances:
                far[d].append(cov[inside & (dist > d)])
        row = [" x ".join(map(str, patch)), f"{100 * np.concatenate(annotated).mean():.1f} %"]
        far_all = {d: np.concatenate(v) for d, v in far.items()}
        row += [f"{100 * v.mean():.1f} %" if v.size else "-" for v in far_all.values()]
        row += [f"{100 * (v < 0.05).mean():.1f} %" if v.size else "-" for v in far_all.values()]
        print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("nnUNet_def_n_proc", "1")
    raise SystemExit(main())
