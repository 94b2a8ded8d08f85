"""CSPNet stage 1: CAM network shapes/gradients, image-level labels, CAM normalisation, thresholds and their choice."""
import math

import numpy as np
import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet

from nnunet_scribble.cspnet.cam import (CAMNetwork, cams_to_pseudo_label, choose_threshold, image_level_labels,
                                        normalise_cams, stage1_loss, threshold_scores)


def _encoder(dim: int):
    conv = torch.nn.Conv2d if dim == 2 else torch.nn.Conv3d
    norm = torch.nn.InstanceNorm2d if dim == 2 else torch.nn.InstanceNorm3d
    net = PlainConvUNet(1, 3, (8, 16, 32), conv, 3, (1, 2, 2), 1, 4, 1, conv_bias=True, norm_op=norm,
                        norm_op_kwargs={"affine": True}, nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True})
    return net.encoder


@pytest.mark.parametrize("dim", [2, 3])
def test_cam_network_shapes_and_every_parameter_gets_a_gradient(dim):
    model = CAMNetwork(_encoder(dim), cam_stage=1, num_classes=4)
    x = torch.randn(2, 1, *([8] * (dim - 2)), 16, 16) if dim == 3 else torch.randn(2, 1, 16, 16)
    cls, cam, seg = model(x)
    assert cls.shape == (2, 3)
    assert cam.shape == (2, 3, *[s // 2 for s in x.shape[2:]])
    assert seg.shape == (2, 4, *x.shape[2:])
    assert len(model.stages) == 2  # deeper stages dropped
    labels = torch.full((2, *x.shape[2:]), 4)
    labels[0, ..., 2, 3] = 1
    labels[1, ..., 5, 5] = 0
    l_cls, l_seg = stage1_loss(cls, seg, labels, ignore_label=4, lambda_cls=0.1, lambda_segs=0.9)
    (0.1 * l_cls + 0.9 * l_seg).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_cam_is_the_classifier_map_whose_mean_is_the_class_logit():
    model = CAMNetwork(_encoder(2), cam_stage=2, num_classes=3)
    cls, cam, _ = model(torch.randn(1, 1, 16, 16))
    assert torch.allclose(cls, cam.flatten(2).mean(2))


def test_image_level_labels_from_scribbles():
    labels = torch.tensor([[[0, 4, 2], [4, 4, -1]], [[4, 4, 4], [4, 4, 4]], [[1, 3, 0], [4, 2, 2]]])
    assert image_level_labels(labels, 4).tolist() == [[0, 1, 0], [0, 0, 0], [1, 1, 1]]


def test_stage1_loss_values_by_hand():
    # soft margin: mean_k [y log(1+e^-x) + (1-y) log(1+e^x)]; pCE over the two annotated voxels
    cls = torch.tensor([[0.0, 2.0]])
    seg = torch.zeros(1, 3, 1, 2)
    seg[0, 1, 0, 0] = math.log(2)  # probs at voxel 0: (1, 2, 1)/4
    labels = torch.tensor([[[1, 0]]])  # class 1 present, class 2 absent
    l_cls, l_seg = stage1_loss(cls, seg, labels, ignore_label=3, lambda_cls=1.0, lambda_segs=1.0)
    expected_cls = (math.log(2) + math.log(1 + math.e ** 2)) / 2
    expected_seg = (-math.log(0.5) - math.log(1 / 3)) / 2
    assert l_cls.item() == pytest.approx(expected_cls, rel=1e-6)
    assert l_seg.item() == pytest.approx(expected_seg, rel=1e-6)


def test_class_balanced_stage1_loss_by_hand_and_invariant_to_background_size():
    # voxel 0: class 1 (CE -log 1/2); voxels 1-3: background (CE -log 1/3 each); voxel 4 ignored; 5 outside (-1)
    seg = torch.zeros(1, 3, 1, 6)
    seg[0, 1, 0, 0] = math.log(2)
    labels = torch.tensor([[[1, 0, 0, 0, 3, -1]]])
    cls = torch.zeros(1, 2)
    _, plain = stage1_loss(cls, seg, labels, 3, 1.0, 1.0)
    _, balanced = stage1_loss(cls, seg, labels, 3, 1.0, 1.0, class_balanced=True)
    assert plain.item() == pytest.approx((math.log(2) + 3 * math.log(3)) / 4, rel=1e-6)
    assert balanced.item() == pytest.approx((math.log(2) + math.log(3)) / 2, rel=1e-6)
    # more labelled background (the outside-image region marked 0) leaves the balanced loss unchanged
    _, balanced_more_bg = stage1_loss(cls, seg, torch.tensor([[[1, 0, 0, 0, 0, 0]]]), 3, 1.0, 1.0,
                                      class_balanced=True)
    assert balanced_more_bg.item() == pytest.approx(balanced.item(), rel=1e-6)


@pytest.mark.parametrize("spatial", [(4, 4), (2, 3, 4)])
def test_class_balanced_stage1_loss_equals_plain_for_equal_counts_and_ignores_unannotated(spatial):
    torch.manual_seed(0)
    seg = torch.randn(2, 3, *spatial, requires_grad=True)
    labels = torch.arange(2 * int(np.prod(spatial))).reshape(2, *spatial) % 4  # 0, 1, 2 equally often; 3 ignored
    assert len({(labels == c).sum().item() for c in range(3)}) == 1
    _, plain = stage1_loss(torch.zeros(2, 2), seg, labels, 3, 1.0, 1.0)
    _, balanced = stage1_loss(torch.zeros(2, 2), seg, labels, 3, 1.0, 1.0, class_balanced=True)
    assert balanced.item() == pytest.approx(plain.item(), rel=1e-6)
    balanced.backward()
    unannotated = (labels == 3).unsqueeze(1).expand_as(seg)
    assert seg.grad[unannotated].abs().max().item() == 0.0
    assert seg.grad[~unannotated].abs().max().item() > 0.0


def test_stage1_loss_without_annotation_is_finite():
    seg = torch.randn(2, 3, 4, 4, requires_grad=True)
    cls = torch.randn(2, 2, requires_grad=True)
    l_cls, l_seg = stage1_loss(cls, seg, torch.full((2, 4, 4), 3), 3, 0.1, 0.9)
    assert l_seg.item() == 0.0 and torch.isfinite(l_cls)
    (l_cls + l_seg).backward()


def test_normalise_cams_relu_max_and_absent_classes():
    cams = torch.tensor([[[-1.0, 2.0], [4.0, 1.0]], [[3.0, 3.0], [0.0, -5.0]], [[9.0, 1.0], [1.0, 1.0]]])
    out = normalise_cams(cams, [True, True, False], eps=0.0)
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.5], [1.0, 0.25]]))
    assert torch.allclose(out[1], torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert (out[2] == 0).all()
    with pytest.raises(ValueError):
        normalise_cams(cams, [True, False])


def test_cam_thresholding_on_a_constructed_activation():
    # class 1 peaks on the left, class 2 on the right, nothing above 0.5 in the middle column
    cams = torch.tensor([[[1.0, 0.3, 0.1]], [[0.2, 0.4, 0.9]]])  # (K-1=2, 1, 3)
    assert cams_to_pseudo_label(cams, 0.5).tolist() == [[1, 0, 2]]
    assert cams_to_pseudo_label(cams, 0.35).tolist() == [[1, 2, 2]]
    assert cams_to_pseudo_label(cams, 0.95).tolist() == [[1, 0, 0]]
    # scribbles override; the ignore label (3) and -1 do not
    scribble = torch.tensor([[0, 3, -1]])
    assert cams_to_pseudo_label(cams, 0.35, scribble, num_classes=3).tolist() == [[0, 2, 2]]


def test_threshold_choice_maximises_mean_recall_on_scribbles():
    # one image: background scribble where the CAM is 0.3, class-1 scribble where it is 0.8
    cams = torch.tensor([[[0.3, 0.8, 0.0]]])  # (1, 1, 3)
    scribble = torch.tensor([[0, 1, 2]])  # 2 = ignore (num_classes 2)
    thresholds = (0.2, 0.5, 0.9)
    scores = threshold_scores(cams, scribble, 2, thresholds)
    assert scores.shape == (3, 2, 2)
    assert scores[:, 1].tolist() == [[1, 1]] * 3  # one scribble voxel per class
    assert scores[:, 0].tolist() == [[0, 1], [1, 1], [1, 0]]
    threshold, recall = choose_threshold(scores, thresholds)
    assert (threshold, recall) == (0.5, 1.0)
    with pytest.raises(ValueError):
        choose_threshold(np.zeros((3, 2, 2), dtype=np.int64), thresholds)


def test_distance_gate_removes_far_foreground_of_each_class():
    from nnunet_scribble.cspnet.cam import gate_by_scribble_distance

    label = np.array([[1, 1, 1, 1, 1, 2, 2]])
    scribble = np.array([[1, 4, 4, 4, 4, 4, 4]])  # class 1 scribbled at x=0, class 2 not at all
    out = gate_by_scribble_distance(label, scribble, 3, max_distance=2.0)
    assert out.tolist() == [[1, 1, 1, 0, 0, 0, 0]]  # distance <= 2 kept; class 2 without scribble removed
    assert gate_by_scribble_distance(label, scribble, 3, float("inf")).tolist() == label.tolist()
    # spacing-aware in 3D: one slice away at 5x spacing is 5 units
    label3 = np.ones((2, 1, 1), dtype=int)
    scribble3 = np.array([[[1]], [[4]]])
    assert gate_by_scribble_distance(label3, scribble3, 2, 4.0, spacing=(5.0, 1.0, 1.0)).ravel().tolist() == [1, 0]
    assert gate_by_scribble_distance(label3, scribble3, 2, 5.0, spacing=(5.0, 1.0, 1.0)).ravel().tolist() == [1, 1]
