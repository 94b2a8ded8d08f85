"""Which code of this package is running: version, git commit and whether the package's sources differ from it.

Trainers record :func:`code_version` in every checkpoint (``checkpoint["nnunet_scribble"]["code"]``) so that a model
found later in ``nnUNet_results`` says which code trained it. ``run_quality.py --reuse`` asks :func:`differs`
whether ``git diff`` finds changes to the package since that commit: its hyperparameter check catches changed
defaults, only the code check catches a changed method with unchanged hyperparameters.

The commit is read with ``git`` from the folder holding this package, and only when that folder is the top level of
the repository checkout that holds *this* package (a development install or a clone on ``PYTHONPATH``); an installed
copy (site-packages, even inside some other repository) has no commit, only the version.
"""
from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

from nnunet_scribble import __version__

PACKAGE_DIR = Path(__file__).resolve().parent


def _git(repo: Path, *args: str, strip: bool = True) -> str | None:
    """Output of ``git -C repo args`` (stripped), or None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() if strip else done.stdout


def _untracked(package_dir: Path) -> list[str]:
    """The package's untracked, not ignored files (paths relative to ``package_dir``)."""
    return (_git(package_dir, "ls-files", "--others", "--exclude-standard", "--", str(package_dir)) or "").split()


def _changes_digest(package_dir: Path, untracked: list[str]) -> str | None:
    """Digest of the package's uncommitted changes (``git diff HEAD`` of its tracked files plus the paths and bytes of
    its ``untracked`` files), None when there are none."""
    diff = _git(package_dir, "diff", "HEAD", "--", str(package_dir), strip=False) or ""
    if not diff and not untracked:
        return None
    h = hashlib.sha256(diff.encode())
    for name in sorted(untracked):
        h.update(name.encode())
        h.update((package_dir / name).read_bytes())  # git prints the paths relative to package_dir
    return h.hexdigest()[:16]


def _checkout_state(package_dir: Path) -> tuple[str | None, str | None, list[str]]:
    """Short commit, uncommitted-changes digest and untracked files of the checkout holding ``package_dir``;
    ``(None, None, [])`` outside such a checkout."""
    package_dir = Path(package_dir).resolve()
    top = _git(package_dir, "rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != package_dir.parent:  # installed copy, or another project's repository
        return None, None, []
    untracked = _untracked(package_dir)
    return _git(package_dir, "rev-parse", "--short", "HEAD"), _changes_digest(package_dir, untracked), untracked


def git_commit(package_dir: Path = PACKAGE_DIR) -> tuple[str | None, str | None]:
    """Short commit of the checkout holding ``package_dir`` and a digest of the package's uncommitted changes (None
    when there are none); ``(None, None)`` outside such a checkout."""
    commit, changes, _ = _checkout_state(package_dir)
    return commit, changes


@functools.lru_cache(maxsize=None)
def code_version() -> dict:
    """``{"version": ..., "commit": short hash or None, "dirty": bool, "changes": digest or None}`` of the running
    package (``changes``: :func:`_changes_digest`, which tells two trainings from the same uncommitted edits apart from
    trainings from different ones).

    Cached: the first call of a process describes the code it imported (later edits to the files do not change what
    runs), which is what a checkpoint should record.
    """
    commit, changes = git_commit()
    return {"version": __version__, "commit": commit, "dirty": changes is not None, "changes": changes}


def describe(code: dict | None) -> str:
    """``'commit abc1234'``, ``'commit abc1234 with uncommitted changes'``, ``'version 0.1.0'`` or
    ``'<not recorded>'`` (checkpoints written before the code was recorded)."""
    if not code:
        return "<not recorded>"
    if code.get("commit"):
        return f"commit {code['commit']}" + (" with uncommitted changes" if code.get("dirty") else "")
    return f"version {code.get('version', '?')}"


def differs(recorded: dict | None, package_dir: Path = PACKAGE_DIR) -> bool:
    """Whether the package code that wrote a checkpoint (``recorded``, a :func:`code_version`) may differ from the
    package sources in ``package_dir`` now.

    False only when that can be shown: ``git diff`` finds no difference between the recorded commit and the tracked
    files under ``package_dir`` (so commits that changed only documentation, benchmarks or tests do not count), or,
    for a model trained from uncommitted changes, the checkout is at the same commit with the same changes; outside a
    git checkout, when the recorded version equals the installed one and neither side knows a commit. True for
    checkpoints that record no code (written before it was recorded).
    """
    if not recorded:
        return True
    package_dir = Path(package_dir).resolve()
    commit, changes, untracked = _checkout_state(package_dir)
    if recorded.get("dirty"):
        return not (recorded.get("commit") == commit and recorded.get("changes") and recorded["changes"] == changes)
    if recorded.get("commit") and commit:
        if untracked:
            return True  # new files the diff below does not see
        try:
            done = subprocess.run(["git", "-C", str(package_dir), "diff", "--quiet", recorded["commit"], "--",
                                   str(package_dir)], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return True
        return done.returncode != 0  # 1: differences, 128: commit unknown to this clone
    return bool(recorded.get("commit") or commit) or recorded.get("version") != __version__
