"""The loss modules of pyface.nn against their formulas written out in PyTorch."""
import pytest
import torch

from pyface.nn import CELEBAMASK_HQ_CLASSES, DynamicPixelWiseLoss, LowerFaceL1Loss, StyleAwarePhotometricLoss


def test_style_aware_photometric_loss_table_and_value():
    loss = StyleAwarePhotometricLoss()
    table = dict(zip(CELEBAMASK_HQ_CLASSES, loss.class_weights.tolist()))
    assert table["mouth"] == table["u_lip"] == table["l_lip"] == 5.0
    assert table["l_eye"] == table["r_eye"] == 3.0 and table["skin"] == 1.0
    assert sum(v == 0.0 for v in table.values()) == 19 - 6
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    labels = torch.randint(0, 19, (2, 16, 16), dtype=torch.uint8)
    weight = loss.class_weights[labels.long()].unsqueeze(1)
    torch.testing.assert_close(loss(x, y, labels), ((x - y).abs() * weight).mean())


def test_style_aware_photometric_loss_overrides():
    loss = StyleAwarePhotometricLoss({"nose": 2.0, "mouth": 4.0})
    assert loss.class_weights[CELEBAMASK_HQ_CLASSES.index("nose")] == 2.0
    assert loss.class_weights[CELEBAMASK_HQ_CLASSES.index("mouth")] == 4.0
    with pytest.raises(ValueError, match="unknown class 'beard'"):
        StyleAwarePhotometricLoss({"beard": 1.0})


@pytest.mark.parametrize("shape,att_shape", [((2, 3, 8, 8), (2, 1, 8, 8)), ((2, 4, 3, 8, 8), (2, 4, 1, 8, 8))])
def test_dynamic_pixel_wise_loss(shape, att_shape):
    x, y = torch.rand(shape, requires_grad=True), torch.rand(shape)
    att = torch.rand(att_shape, requires_grad=True)
    got = DynamicPixelWiseLoss()(x, y, att)
    want = ((x - y).abs() * (att.detach() + 0.5)).mean()
    torch.testing.assert_close(got, want)
    got.backward()
    assert att.grad is None  # the attention is detached, as ATVGnet does


@pytest.mark.parametrize("shape", [(2, 3, 9, 8), (2, 5, 3, 8, 6)])
def test_lower_face_l1_loss(shape):
    x, y = torch.rand(shape), torch.rand(shape)
    half = shape[-2] // 2
    torch.testing.assert_close(LowerFaceL1Loss()(x, y), (x - y).abs()[..., half:, :].mean())
