"""Generate the embedded synthetic cardiac scribble dataset (Dataset901 in 2D, Dataset902 in 3D).

Thin wrapper around :func:`nnunet_scribble.data.synthetic.main` (console script ``nnunet_scribble_generate``);
run it with ``--help`` for the options, e.g.::

    python dataset_conversion/Dataset901_SyntheticCardiac.py -o $nnUNet_raw --dim 2
"""
from __future__ import annotations

from nnunet_scribble.data.synthetic import main

if __name__ == "__main__":
    raise SystemExit(main())
