"""nnunet_scribble.provenance: which package code trained a model, and whether this checkout's differs from it."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nnunet_scribble import __version__, benchmarking as bm, provenance

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path):
    """A repository ``repo`` holding a package ``repo/pkg`` and a README, one commit."""
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "loss.py").write_text("WEIGHT = 1.0\n")
    (repo / "README.md").write_text("docs\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "first")
    return repo


def test_commit_and_uncommitted_changes_of_the_package(checkout):
    pkg = checkout / "pkg"
    head = _git(checkout, "rev-parse", "--short", "HEAD")
    assert provenance.git_commit(pkg) == (head, None)
    (checkout / "README.md").write_text("other docs\n")
    assert provenance.git_commit(pkg) == (head, None)  # only the package's files count
    (pkg / "loss.py").write_text("WEIGHT = 2.0\n")
    commit, edit = provenance.git_commit(pkg)
    assert commit == head and edit is not None and provenance.git_commit(pkg)[1] == edit  # deterministic
    (pkg / "new_loss.py").write_text("X = 1\n")  # an untracked module counts too
    _, with_new = provenance.git_commit(pkg)
    assert with_new not in (None, edit)
    (pkg / "new_loss.py").write_text("X = 2\n")
    assert provenance.git_commit(pkg)[1] not in (None, edit, with_new)


def test_no_commit_outside_its_own_checkout(tmp_path, checkout):
    plain = tmp_path / "site-packages" / "pkg"
    plain.mkdir(parents=True)
    assert provenance.git_commit(plain) == (None, None)
    nested = checkout / "venv" / "pkg"  # an installed copy inside another project's repository
    nested.mkdir(parents=True)
    assert provenance.git_commit(nested) == (None, None)


def test_differs_only_when_the_package_changed_since_the_recorded_commit(checkout):
    pkg = checkout / "pkg"
    recorded = {"version": __version__, "commit": _git(checkout, "rev-parse", "--short", "HEAD"), "dirty": False}
    assert not provenance.differs(recorded, pkg)
    (checkout / "README.md").write_text("new docs\n")
    _git(checkout, "commit", "-qam", "docs only")
    assert not provenance.differs(recorded, pkg)  # a later commit that leaves the package alone
    (pkg / "loss.py").write_text("WEIGHT = 2.0\n")
    assert provenance.differs(recorded, pkg)  # uncommitted change of the package
    _git(checkout, "commit", "-qam", "method change")
    assert provenance.differs(recorded, pkg)  # committed change
    now = {"version": __version__, "commit": _git(checkout, "rev-parse", "--short", "HEAD"), "dirty": False}
    assert not provenance.differs(now, pkg)
    (pkg / "loss.py").write_text("WEIGHT = 3.0\n")  # train from uncommitted edits ...
    edited = {**now, "dirty": True, "changes": provenance.git_commit(pkg)[1]}
    assert not provenance.differs(edited, pkg)  # ... and reuse the model with the same edits
    assert provenance.differs(now, pkg)
    (pkg / "loss.py").write_text("WEIGHT = 4.0\n")
    assert provenance.differs(edited, pkg)  # other edits
    assert provenance.differs({**edited, "changes": None}, pkg)  # dirty without a digest: unknown
    assert provenance.differs({**now, "commit": "0000000"}, pkg)  # a commit this clone does not know
    assert provenance.differs(None, pkg)  # written before the code was recorded


def test_versions_are_compared_without_commits(tmp_path):
    plain = tmp_path / "pkg"
    plain.mkdir()
    assert not provenance.differs({"version": __version__, "commit": None, "dirty": False}, plain)
    assert provenance.differs({"version": "0.0.1", "commit": None, "dirty": False}, plain)
    assert provenance.differs({"version": __version__, "commit": "abc1234", "dirty": False}, plain)


def test_descriptions_and_table_note():
    assert provenance.describe(None) == "<not recorded>"
    assert provenance.describe({"version": "0.1.0", "commit": "abc1234", "dirty": False}) == "commit abc1234"
    assert provenance.describe({"version": "0.1.0", "commit": "abc1234", "dirty": True}) == \
        "commit abc1234 with uncommitted changes"
    assert provenance.describe({"version": "0.1.0", "commit": None, "dirty": False}) == "version 0.1.0"
    assert bm.reused_models_note([]) == ""
    note = bm.reused_models_note([], ["MaCo (run 0): <not recorded>"])
    assert "Reused models whose training code" in note and "MaCo (run 0): <not recorded>." in note
    assert "other hyperparameters" not in note
    both = bm.reused_models_note(["MaCo (run 0): con_normalisation 'class' -> 'voxel'"], ["MaCo (run 0): x"])
    assert both.index("other hyperparameters") < both.index("training code")
