"""Weight schedules shared by the methods' loss terms."""
from __future__ import annotations

import math


def sigmoid_rampup(current: float, length: float) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = clip(current / length, 0, 1)`` (Laine & Aila, ICLR 2017); 1 when ``length``
    is 0.

    Used by PCLMix's entropy threshold (reference code) and by CSPNet's optional ramp of its distance-perception
    weights (``dp_rampup_fraction``, not in the paper).
    """
    if length <= 0:
        return 1.0
    t = min(max(current / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)
