"""Cost of the per-class scribble distance maps (MaCo's CPL input) against the pipeline and the step they feed.

Per sample, at the planned ACDC patch sizes (2d 256x224, 3d_fullres 10x256x224 and a 20-slice variant), with a
real ACDC scribble (Valvano et al.) when available, else a synthetic one, this prints:

- the distance maps, exact (``max_distance=None``) and truncated at the CPL cut-off ``ln(1/tau)/alpha`` (what the
  trainer uses);
- the continuous pseudo labels computed from them in the training step;
- nnU-Net's stock training augmentation of one sample (spatial + intensity + mirroring + DS downsampling);
- with ``--plans``: nnU-Net's training step (planned network, DC+CE, forward+backward+SGD) on this machine, per
  sample, at a small batch.

Run: ``python benchmarks/bench_distance_maps.py [--plans .../nnUNetPlans.json] [--scribble x_scribble.nii.gz]``.
Timings are single-threaded like nnU-Net's augmentation workers (``threadpool_limits(1)``), mean of N runs after
one warm-up (the augmentation cost varies with its random parameters, so the mean is what throughput sees).
"""
from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from nnunet_scribble.transforms.distance_maps import (ScribbleDistanceTransform, continuous_pseudo_labels,
                                                      scribble_distance_maps)

IGNORE = 4
NUM_CLASSES = 4
DEFAULT_SCRIBBLE = "/work/shared/data/ACDC/scribbles_valvano/patient001_frame01_scribble.nii.gz"
ACDC_SPACING_3D = (10.0, 1.48, 1.48)


def mean_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.mean(times)


def paired_mean_ms(fn_a: Callable[[], object], fn_b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Mean times of ``fn_a`` and ``fn_b``, each run ``repeats`` times with the same seeds in turn, so that both
    augmentation pipelines draw the same random parameters (the distance transform draws none)."""
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(repeats + 1):
        for fn, store in zip((fn_a, fn_b), times):
            random.seed(i)
            torch.manual_seed(i)
            np.random.seed(i)
            start = time.perf_counter()
            fn()
            if i:  # the first round is a warm-up
                store.append(time.perf_counter() - start)
    return 1000 * statistics.mean(times[0]), 1000 * statistics.mean(times[1])


def load_scribble(path: str) -> np.ndarray:
    """(Z, Y, X) scribble volume, or a synthetic one (ring of background, three blobs) if ``path`` is missing."""
    if os.path.isfile(path):
        import SimpleITK as sitk
        return sitk.GetArrayFromImage(sitk.ReadImage(path)).astype(np.int16)
    yy, xx = np.mgrid[:256, :216]
    r = np.hypot(yy - 128, xx - 108)
    vol = np.full((10, 256, 216), IGNORE, np.int16)
    vol[:, (r > 60) & (r < 62)] = 0
    for c, (cy, cx) in zip((1, 2, 3), ((120, 80), (130, 110), (128, 130))):
        vol[:, (np.abs(yy - cy) < 15) & (np.abs(xx - cx) < 1)] = c
    return vol


def fit(vol: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Centre-crop / pad (with ignore) ``vol`` to ``shape``; repeats slices when more are asked for."""
    while vol.shape[0] < shape[0]:
        vol = np.concatenate([vol, vol])
    out = np.full(shape, IGNORE, np.int16)
    src, dst = [], []
    for have, want in zip(vol.shape, shape):
        n = min(have, want)
        src.append(slice((have - n) // 2, (have - n) // 2 + n))
        dst.append(slice((want - n) // 2, (want - n) // 2 + n))
    out[tuple(dst)] = vol[tuple(src)]
    return out


def stock_augmentation(patch: tuple[int, ...], extra: object | None = None
                       ) -> Callable[[torch.Tensor, torch.Tensor], dict]:
    """nnU-Net's training transforms for ``patch``, with ``extra`` inserted before the DS downsampling."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    dim = len(patch)
    rot = (-math.pi, math.pi) if dim == 2 else (-math.pi / 36, math.pi / 36)  # 3d anisotropic: dummy-2d rotations
    ds_scales = [[1.0] * dim] + [[0.5 ** i] * dim for i in range(1, 5)]
    transforms = nnUNetTrainer.get_training_transforms(
        patch, rot, ds_scales, tuple(range(dim)), do_dummy_2d_data_aug=dim == 3, ignore_label=IGNORE)
    if extra is not None:
        transforms.transforms.insert(len(transforms.transforms) - 1, extra)
    return lambda img, seg: transforms(image=img.clone(), segmentation=seg.clone())


def step_ms_per_sample(plans_file: str, configuration: str, batch: int) -> float:
    """Mean training step of nnU-Net's planned network on this machine, divided by ``batch``."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    cm = PlansManager(plans_file).get_configuration(configuration)
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, 1, NUM_CLASSES, deep_supervision=False)
    loss = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, ignore_label=IGNORE)
    opt = torch.optim.SGD(net.parameters(), 1e-2, momentum=0.99, nesterov=True)
    x = torch.randn(batch, 1, *cm.patch_size)
    y = torch.randint(0, IGNORE + 1, (batch, 1, *cm.patch_size))

    def step():
        opt.zero_grad()
        loss(net(x), y).backward()
        opt.step()
    return mean_ms(step, 2) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scribble", default=DEFAULT_SCRIBBLE)
    parser.add_argument("--plans", default=None, help="nnUNetPlans.json of ACDC for the training-step timing")
    parser.add_argument("--step-batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    vol = load_scribble(args.scribble)
    cutoff = math.log(1 / 0.05) / 0.1
    cases = [("2d", (256, 224), None), ("3d_fullres", (10, 256, 224), ACDC_SPACING_3D),
             ("3d 20 slices", (20, 256, 224), ACDC_SPACING_3D)]
    print(f"scribble: {args.scribble if os.path.isfile(args.scribble) else 'synthetic'}; torch threads "
          f"{torch.get_num_threads()}; CPL cut-off {cutoff:.2f} units; times are ms per sample, 1 thread")
    for name, shape, spacing in cases:
        seg = fit(vol, shape) if len(shape) == 3 else fit(vol, (1, *shape))[0]
        seg_t = torch.from_numpy(seg)[None]
        img = torch.randn(1, *shape)
        with threadpool_limits(1):
            torch.set_num_threads(1)
            exact = mean_ms(lambda: scribble_distance_maps(seg, NUM_CLASSES, IGNORE, spacing), args.repeats)
            trunc = mean_ms(lambda: scribble_distance_maps(seg, NUM_CLASSES, IGNORE, spacing, cutoff), args.repeats)
            dist = torch.from_numpy(scribble_distance_maps(seg, NUM_CLASSES, IGNORE, spacing, cutoff))[None]
            cpl = mean_ms(lambda: continuous_pseudo_labels(dist), args.repeats)
            aug = stock_augmentation(shape)
            aug_dist = stock_augmentation(shape, ScribbleDistanceTransform(NUM_CLASSES, IGNORE, spacing, cutoff))
            stock, both = paired_mean_ms(lambda: aug(img, seg_t), lambda: aug_dist(img, seg_t), 2 * args.repeats)
        torch.set_num_threads(os.cpu_count() or 1)
        print(f"{name:13s} {str(shape):15s} distances exact {exact:8.1f} | truncated {trunc:8.1f} | CPL {cpl:6.1f} | "
              f"stock DA {stock:8.1f} | stock DA + distances {both:8.1f} (x{both / stock:.2f})")
    if args.plans:
        for configuration in ("2d", "3d_fullres"):
            ms = step_ms_per_sample(args.plans, configuration, args.step_batch)
            print(f"nnU-Net training step {configuration}: {ms:.0f} ms per sample on this CPU "
                  f"({torch.get_num_threads()} threads, batch {args.step_batch})")


if __name__ == "__main__":
    main()
