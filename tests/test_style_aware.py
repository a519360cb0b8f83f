"""The style-aware talking-head motion modules: shapes, learning, fused vs reference
backends, compile, bad inputs."""
import helpers
import pytest
import torch

import pyface
from pyface.data import style_pair_batch
from pyface.models import KeypointExtractor, PoseExpressionNet, StyleMapping, StyleMappingLoss

needs_extension = pytest.mark.skipif(not pyface._extension.loaded(), reason="compiled extension not built")


def pairs(n=2, size=32, seed=0):
    return style_pair_batch(n, torch.Generator().manual_seed(seed), size)


def small_model(**options):
    torch.manual_seed(0)
    return StyleMapping(num_keypoints=5, feature_channels=4, depth=4, width=8, **options)


def test_keypoint_extractor_gives_points_in_the_volume():
    torch.manual_seed(0)
    extractor = KeypointExtractor(num_keypoints=6, depth=4, block_expansion=8, num_blocks=2, max_features=32)
    keypoints = extractor(pairs()["neutral"])
    assert keypoints.shape == (2, 6, 3) and keypoints.abs().max() <= 1


def test_pose_expression_keypoints():
    torch.manual_seed(0)
    net = PoseExpressionNet(num_keypoints=6, width=8, blocks=3)
    pose = net(pairs()["reference"])
    assert pose["yaw"].shape == (2, 66) and pose["translation"].shape == (2, 3) and pose["expression"].shape == (2, 6, 3)
    assert PoseExpressionNet.keypoints(torch.zeros(2, 6, 3), pose).shape == (2, 6, 3)
    with pytest.raises(ValueError, match="expression must be \\(2, 5, 3\\)"):  # K mismatch
        PoseExpressionNet.keypoints(torch.zeros(2, 5, 3), pose)


def test_style_mapping_shapes():
    model = small_model().eval()
    batch = pairs()
    out = model(batch["neutral"], batch["reference"])
    assert out["image"].shape == (2, 3, 32, 32) and out["kp_driving"].shape == (2, 5, 3)
    assert out["deformation"].shape == (2, 4, 8, 8, 3) and out["occlusion"].shape == (2, 1, 8, 8)


def test_patterns_are_the_frozen_mapping_of_each_face_and_reference():
    model = small_model().train()
    faces, references = pairs(2, seed=1)["neutral"], torch.stack([pairs(3, seed=2)["reference"]] * 2)
    patterns = model.patterns(faces, references)
    assert patterns.shape == (2, 3, 3, 32, 32) and not patterns.requires_grad and model.training
    model.eval()
    with torch.no_grad():
        for i in range(2):
            torch.testing.assert_close(patterns[i], model(faces[i:i + 1].expand(3, -1, -1, -1), references[i])["image"])
    with pytest.raises(ValueError, match="references must be \\(N, P, 3, H, W\\)"):
        model.patterns(faces, references[0])


def test_a_residual_mapping_starts_as_a_copy_of_the_neutral_face():
    model = small_model(residual=True).eval()
    batch = pairs(seed=3)
    with torch.no_grad():
        out = model(batch["neutral"], batch["reference"])["image"]
    assert torch.equal(out, batch["neutral"])
    model.train()
    model(batch["neutral"], batch["reference"])["image"].sum().backward()
    assert model.decoder[-1].weight.grad.abs().sum() > 0  # the change learns, through the clamp too


def test_a_few_steps_lower_the_loss():
    model, criterion = small_model(), StyleMappingLoss()
    batch = pairs(4)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss():
        return criterion(model(batch["neutral"], batch["reference"])["image"], batch["reference"], batch["parsing"])

    before, after = helpers.loss_before_and_after(loss, optimizer, 10)
    assert after < 0.8 * before, (before, after)


@needs_extension
def test_fused_backend_matches_reference():
    fused, reference = small_model().double(), small_model(backend="reference").double()
    reference.load_state_dict(fused.state_dict())
    batch = pairs(2)
    results = []
    for model in (fused, reference):
        criterion = StyleMappingLoss(backend=model.dense_motion.backend)
        out = model(batch["neutral"].double(), batch["reference"].double())
        loss = criterion(out["image"], batch["reference"].double(), batch["parsing"])
        results.append((out["image"], torch.autograd.grad(loss, list(model.parameters()))))
    (got, got_grads), (want, want_grads) = results
    helpers.assert_close_to_largest(got, want, torch.float64)
    for g, w in zip(got_grads, want_grads):
        helpers.assert_close_to_largest(g, w, torch.float64)


@needs_extension
def test_eval_forward_compiles():
    model = small_model().eval()
    batch = pairs(2)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        got, want = compiled(batch["neutral"], batch["reference"]), model(batch["neutral"], batch["reference"])
    helpers.assert_close_to_largest(got["image"], want["image"], torch.float32)


def test_bad_inputs():
    model = small_model()
    batch = pairs()
    with pytest.raises(ValueError, match="multiples of 4"):
        model(batch["neutral"][..., :30, :30], batch["reference"][..., :30, :30])
    with pytest.raises(ValueError, match="must be an \\(N, 3, H, W\\) RGB batch"):
        model(batch["neutral"][:, :1], batch["reference"])
    with pytest.raises(ValueError, match="the images must have one shape"):
        model(batch["neutral"], batch["reference"][:1])


def test_style_aware_generator():
    torch.manual_seed(0)
    from pyface.models import StyleAwareGenerator

    generator = StyleAwareGenerator(width=8)
    source, facial_map, patterns = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32), torch.rand(2, 4, 3, 32, 32)
    frame = generator(source, facial_map, patterns)
    assert frame.shape == (2, 3, 32, 32) and 0 <= frame.min() and frame.max() <= 1
    from pyface.models import StyleAwareGeneratorLoss

    target, parsing = torch.rand(2, 3, 32, 32), torch.randint(0, 19, (2, 32, 32), dtype=torch.uint8)
    criterion, optimizer = StyleAwareGeneratorLoss(), torch.optim.Adam(generator.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = criterion(generator(source, facial_map, patterns), target, patterns[:, 3], parsing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="style_patterns must be"):
        generator(source, facial_map, patterns[:, :3])
    with pytest.raises(ValueError, match="facial_map must be"):
        generator(source, facial_map[:, :, :16], patterns)


def test_landmark_warp_moves_what_sits_at_each_keypoint():
    from pyface.models.style_aware import landmark_warp

    image = torch.zeros(1, 1, 33, 33)
    image[0, 0, 16, 8] = 1.0  # a bright pixel at x = -0.5, y = 0 (align_corners: pixel i at -1 + i / 16)
    kp_source = torch.tensor([[[-0.5, 0.0], [0.5, 0.5]]])
    kp_driving = kp_source + torch.tensor([[[0.0, -0.25], [0.0, 0.0]]])  # the first keypoint up by 4 pixels
    warped = landmark_warp(image, kp_source, kp_driving, sigma=0.08, background=-4.0, backend="reference")
    assert warped[0, 0].flatten().argmax().item() == 12 * 33 + 8  # row 12, column 8
    # still keypoints, and everything away from the moving one, stay put
    torch.testing.assert_close(landmark_warp(image, kp_source, kp_source, backend="reference"), image)
    assert warped[0, 0, 30:, :].abs().max() == 0


def test_a_warping_generator_starts_as_the_warped_source_and_needs_the_landmarks():
    from pyface.models import StyleAwareGenerator
    from pyface.models.style_aware import landmark_warp

    torch.manual_seed(0)
    generator = StyleAwareGenerator(width=8, warp_sigma=0.1, backend="reference")
    source, facial_map, patterns = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32), torch.rand(2, 4, 3, 32, 32)
    rest = torch.rand(2, 9, 2) * 2 - 1
    moved = rest + 0.1 * torch.randn(2, 9, 2)
    frame = generator(source, facial_map, patterns, source_landmarks=rest, landmarks=moved)
    expected = landmark_warp(source, rest, moved, 0.1, backend="reference")
    torch.testing.assert_close(frame, expected)  # its last layer starts at 0
    assert not torch.allclose(frame, source)
    with pytest.raises(ValueError, match="built with warp_sigma, it needs source_landmarks and landmarks"):
        generator(source, facial_map, patterns)
    with pytest.raises(ValueError, match="built with warp_sigma"):
        generator(source, facial_map, patterns, source_landmarks=rest, landmarks=moved[:, :5])
