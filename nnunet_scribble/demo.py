"""``nnunet_scribble_demo``: the main job end to end on the embedded synthetic dataset.

1. generate the synthetic cardiac-like scribble dataset (dense ground truth kept for evaluation);
2. ``nnUNetv2_plan_and_preprocess``; write the preset's reduced plans (``nnUNetPlans_demo``);
3. ``nnUNetv2_train`` with a scribble trainer (fold 0; its final validation also reports dense Dice/HD95);
4. ``nnUNetv2_predict`` on the held-out cases;
5. evaluate against the dense labels: a table in the terminal, ``summary_dense.json``/``.md``, a box plot, and PNG
   overlays (image, scribbles, prediction, ground truth) of a few validation cases.

All of it happens under ``--workdir`` (nnU-Net's three folders are created there; your own ``nnUNet_*`` folders are
not touched).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from nnunet_scribble import pipeline


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnunet_scribble_demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="nnunet_scribble_demo", help="working folder (default: %(default)s)")
    p.add_argument("-tr", "--trainer", default="nnUNetTrainerScribble", help="trainer class (default: %(default)s)")
    p.add_argument("--preset", default="demo", choices=sorted(pipeline.PRESETS),
                   help="training preset (default: %(default)s, about 2 minutes of training on 2 CPU cores)")
    p.add_argument("--dim", type=int, default=2, choices=(2, 3),
                   help="2: single-slice images, configuration 2d; 3: volumes, configuration 3d_fullres")
    p.add_argument("-d", "--dataset_id", type=int, default=None, help="dataset ID (default: 901 for 2D, 902 for 3D)")
    p.add_argument("--num_train", type=int, default=20, help="training cases (default: %(default)s)")
    p.add_argument("--num_test", type=int, default=10, help="held-out test cases (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the dataset generator (default: %(default)s)")
    p.add_argument("-device", "--device", default="cpu", choices=("cpu", "cuda", "mps"),
                   help="device for training and prediction (default: %(default)s)")
    p.add_argument("--num_overlays", type=int, default=3, help="PNG overlays to write (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from nnunet_scribble.data.synthetic import generate_synthetic_dataset
    from nnunet_scribble.evaluation import evaluate_folder, format_table
    from nnunet_scribble.evaluation.overlays import save_case_overlays

    dataset_id = args.dataset_id or (901 if args.dim == 2 else 902)
    configuration = "2d" if args.dim == 2 else "3d_fullres"
    preset = pipeline.PRESETS[args.preset]
    work = Path(args.workdir).resolve()
    raw, pre, res = work / "nnUNet_raw", work / "nnUNet_preprocessed", work / "nnUNet_results"
    for d in (raw, pre, res):
        d.mkdir(parents=True, exist_ok=True)
    env = pipeline.nnunet_env(raw, pre, res)
    log = work / "commands.log"
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    print(f"[1/5] generating the synthetic {args.dim}D scribble dataset {dataset_id}", flush=True)
    ds_dir = generate_synthetic_dataset(raw, dataset_id=dataset_id, dim=args.dim, num_train=args.num_train,
                                        num_test=args.num_test, seed=args.seed, overwrite=True, progress=False)
    for stale in (pre / ds_dir.name, res / ds_dir.name):  # a fresh run: results of an earlier demo are replaced
        shutil.rmtree(stale, ignore_errors=True)
    timings["generate"] = time.perf_counter() - t0

    print(f"[2/5] planning and preprocessing (log: {log})", flush=True)
    timings["plan_and_preprocess"] = pipeline.plan_and_preprocess(dataset_id, [configuration], env, log)
    (pre / ds_dir.name).mkdir(exist_ok=True)
    if (ds_dir / "splits_final.json").is_file():
        shutil.copyfile(ds_dir / "splits_final.json", pre / ds_dir.name / "splits_final.json")
    plans_id = pipeline.write_preset_plans(pre / ds_dir.name, preset)

    print(f"[3/5] training {args.trainer} ({configuration}, fold 0, preset '{preset.name}': {preset.schedule})",
          flush=True)
    timings["train"] = pipeline.train(dataset_id, configuration, 0, args.trainer, plans_id, env, preset.schedule,
                                      args.device, log_file=log)

    pred_dir = work / "predictions"
    shutil.rmtree(pred_dir, ignore_errors=True)
    print("[4/5] predicting the held-out cases", flush=True)
    timings["predict"] = pipeline.predict(ds_dir / "imagesTs", pred_dir, dataset_id, configuration, 0,
                                          args.trainer, plans_id, env, args.device, log_file=log)

    print("[5/5] evaluating against the dense ground truth", flush=True)
    summary = evaluate_folder(ds_dir / "labelsTs", pred_dir, output_json=work / "summary_dense.json",
                              output_markdown=work / "summary_dense.md", output_boxplot=work / "boxplot_dense.png")
    fold_dir = res / ds_dir.name / f"{args.trainer}__{plans_id}__{configuration}" / "fold_0"
    overlays = _write_overlays(ds_dir, fold_dir / "validation", work / "overlays", args.num_overlays,
                               save_case_overlays)
    print(f"\nDense Dice / HD95 of {args.trainer} on {len(summary['cases'])} held-out cases "
          f"(trained on scribbles only):\n{format_table(summary)}")
    print("\nTimings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"Results: {work / 'summary_dense.md'}, {work / 'boxplot_dense.png'}, overlays in {work / 'overlays'} "
          f"({len(overlays)} PNG), model in {fold_dir}")
    return 0


def _write_overlays(ds_dir: Path, val_dir: Path, out_dir: Path, n: int, save_case_overlays) -> list[Path]:
    """Overlays of the first ``n`` validation cases: image, scribbles, prediction, dense ground truth."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ignore = json.loads((ds_dir / "dataset.json").read_text())["labels"].get("ignore")
    written = []
    for pred in sorted(val_dir.glob("*.nii.gz"))[:n]:
        case = pred.name[:-len(".nii.gz")]
        written.append(save_case_overlays(
            ds_dir / "imagesTr" / f"{case}_0000.nii.gz", out_dir / f"{case}.png", prediction_file=pred,
            reference_file=ds_dir / "labelsTr_dense" / pred.name, scribble_file=ds_dir / "labelsTr" / pred.name,
            ignore_label=ignore, title=case))
    return written


if __name__ == "__main__":
    raise SystemExit(main())
