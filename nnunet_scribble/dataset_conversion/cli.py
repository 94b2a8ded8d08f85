"""Command-line plumbing shared by the converters: common options, output location, progress, finishing."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from tqdm import tqdm

from nnunet_scribble.dataset_conversion.common import dataset_folder_name, install_splits

T = TypeVar("T")


def make_parser(description: str, default_id: int | None, default_name: str | None, epilog: str | None = None
                ) -> argparse.ArgumentParser:
    """Return a parser with the options every converter has: -d, -n, -o, --overwrite, --preprocessed_root.

    ``-d``/``-n`` are required when their default is None (derived datasets have no natural ID).
    """
    parser = argparse.ArgumentParser(description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--dataset_id", type=int, default=default_id, required=default_id is None,
                        help="nnU-Net dataset ID of the output" + (
                            f" (default: {default_id})" if default_id is not None else " (required)"))
    parser.add_argument("-n", "--name", default=default_name, required=default_name is None,
                        help="dataset name, the folder becomes DatasetXXX_<name>" + (
                            f" (default: {default_name})" if default_name is not None else " (required)"))
    parser.add_argument("-o", "--output_root", default=None,
                        help="folder that receives DatasetXXX_Name (default: $nnUNet_raw)")
    parser.add_argument("--preprocessed_root", default=None,
                        help="where splits_final.json is installed (default: $nnUNet_preprocessed; skipped if unset)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output dataset")
    return parser


def output_dataset_dir(args: argparse.Namespace) -> Path:
    """Resolve ``<output_root or $nnUNet_raw>/DatasetXXX_Name`` and refuse an existing one without --overwrite.

    Raises:
        ValueError: if neither ``--output_root`` nor ``$nnUNet_raw`` is given.
        FileExistsError: if the dataset folder exists and ``--overwrite`` is not set.
    """
    root = args.output_root or os.environ.get("nnUNet_raw")
    if not root:
        raise ValueError("no output folder: pass -o/--output_root or set the nnUNet_raw environment variable")
    final = Path(root) / dataset_folder_name(args.dataset_id, args.name)
    if final.exists() and not args.overwrite:
        raise FileExistsError(f"{final} already exists; pass --overwrite to replace it")
    return final


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    """A tqdm progress bar on stderr over ``items``."""
    return tqdm(items, desc=desc, total=total, unit="case", file=sys.stderr, dynamic_ncols=True)


def finish(final_dir: Path, args: argparse.Namespace, summary: str) -> None:
    """Install ``splits_final.json`` into nnU-Net's preprocessed folder and print a one-paragraph summary."""
    installed = install_splits(final_dir, args.preprocessed_root)
    if installed:
        where = f"splits installed to {installed}"
    elif (final_dir / "splits_final.json").is_file():
        where = "splits_final.json kept in the raw folder only ($nnUNet_preprocessed unset)"
    else:
        where = "no splits_final.json written: nnU-Net will make its own 5 random folds"
    print(f"Wrote {final_dir}\n{summary}\n{where}")


def run_main(body: Callable[[], None]) -> int:
    """Run a converter body: warnings printed as one line each, input errors as ``error: ...`` with exit code 2."""
    def _show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        print(f"warning: {message}", file=sys.stderr)

    old = warnings.showwarning
    warnings.showwarning = _show
    try:
        body()
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = old
    return 0
