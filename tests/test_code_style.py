"""Source files keep the line length that setup.cfg's flake8 section and pyproject's tool settings declare."""
from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("nnunet_scribble", "benchmarks", "dataset_conversion", "scripts", "tests")


def test_no_python_line_exceeds_the_configured_length():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    limit = cfg.getint("flake8", "max-line-length")
    assert f"line-length = {limit}" in (ROOT / "pyproject.toml").read_text()  # the two settings agree
    too_long = [f"{path.relative_to(ROOT)}:{number}: {len(line)} characters"
                for folder in FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if len(line) > limit]
    assert not too_long, f"lines longer than {limit} characters:\n" + "\n".join(too_long)
