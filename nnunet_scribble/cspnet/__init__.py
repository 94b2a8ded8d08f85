"""CSPNet's stage 1 inside nnU-Net: CAM network, CAM -> pseudo labels, their storage (see :mod:`.stage1`)."""
