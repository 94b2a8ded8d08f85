"""Staged writing: nothing half-written stays behind, also when the converter is terminated."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from nnunet_scribble.dataset_conversion.common import staged_dataset_folder

CHILD = """
import sys, time
from nnunet_scribble.dataset_conversion.common import staged_dataset_folder
with staged_dataset_folder(sys.argv[1]) as tmp:
    (tmp / "imagesTr").mkdir()
    print("ready", flush=True)
    time.sleep(60)
"""


def test_sigterm_removes_the_staging_folder(tmp_path):
    final = tmp_path / "Dataset123_X"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(final)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_exception_keeps_existing_dataset(tmp_path):
    final = tmp_path / "Dataset123_X"
    final.mkdir()
    (final / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_dataset_folder(final, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["Dataset123_X"] and (final / "keep.txt").read_text() == "old"
    with staged_dataset_folder(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new.txt"]
