"""Files replaced atomically: written to ``<path>.tmp-<pid>`` next to the target, then renamed over it.

A process killed at any moment (SIGKILL included) leaves either the previous complete file or the new one, never a
partial file under the target's name. Leftover ``<path>.tmp-*`` files of killed writers are removed after the next
successful write (one writer per target, e.g. rank 0 of one training).
"""
from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Callable
from typing import Any

import torch
from batchgenerators.utilities.file_and_folder_operations import save_json


def atomic_write(path: str, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)``, then move ``tmp_path`` to ``path`` and remove stale temporary files of ``path``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    write(tmp)
    os.replace(tmp, path)
    for stale in glob.glob(glob.escape(path) + ".tmp-*"):
        with contextlib.suppress(OSError):
            os.remove(stale)


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)``, atomically."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_save_json(obj: Any, path: str) -> None:
    """``save_json(obj, path)`` (batchgenerators' JSON writer, as nnU-Net uses), atomically."""
    atomic_write(path, lambda tmp: save_json(obj, tmp))
