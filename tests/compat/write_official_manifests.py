"""Writes tests/compat/official_manifests.json: for each official class pyface.compat must
match (issue 18), the name and shape of every parameter and buffer in its state dict, as the
official code builds it with its official config. Run against local copies of the official
repositories (not part of pyface; their code is not copied here, only these facts):

    python tests/compat/write_official_manifests.py OFFICIAL_DIR > tests/compat/official_manifests.json

OFFICIAL_DIR holds AliaksandrSiarohin+first-order-model (c027484, config/vox-256.yaml),
zhanglonghao1992+One-Shot_Free-View_Neural_Talking_Head_Synthesis (9511d25, config/vox-256.yaml)
and KwaiVGI+LivePortrait (1986663, src/config/models.yaml). Needs pyyaml.
"""
import importlib
import json
import sys
from pathlib import Path

import yaml

FOMM = "AliaksandrSiarohin+first-order-model"
FACEVID2VID = "zhanglonghao1992+One-Shot_Free-View_Neural_Talking_Head_Synthesis"
LIVEPORTRAIT = "KwaiVGI+LivePortrait"


def shapes(module) -> dict[str, list[int]]:
    return {name: list(tensor.shape) for name, tensor in module.state_dict().items()}


def import_from(root: Path, repo: str, names: list[str]) -> list:
    """The official modules of one repository (the three share top-level package names)."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("modules", "sync_batchnorm", "src"):
            del sys.modules[name]
    sys.path.insert(0, str(root / repo))
    try:
        return [importlib.import_module(name) for name in names]
    finally:
        sys.path.pop(0)


def main(root: Path) -> dict:
    manifests = {}
    config = yaml.safe_load((root / FOMM / "config/vox-256.yaml").read_text())["model_params"]
    keypoints, generator = import_from(root, FOMM, ["modules.keypoint_detector", "modules.generator"])
    common = config["common_params"]
    manifests["fomm.KPDetector"] = shapes(keypoints.KPDetector(**config["kp_detector_params"], **common))
    built = generator.OcclusionAwareGenerator(**config["generator_params"], **common)
    manifests["fomm.OcclusionAwareGenerator"] = shapes(built)
    manifests["fomm.DenseMotionNetwork"] = shapes(built.dense_motion_network)

    config = yaml.safe_load((root / FACEVID2VID / "config/vox-256.yaml").read_text())["model_params"]
    keypoints, generator = import_from(root, FACEVID2VID, ["modules.keypoint_detector", "modules.generator"])
    common = config["common_params"]
    manifests["facevid2vid.KPDetector"] = shapes(keypoints.KPDetector(**config["kp_detector_params"], **common))
    manifests["facevid2vid.HEEstimator"] = shapes(keypoints.HEEstimator(**config["he_estimator_params"], **common))
    built = generator.OcclusionAwareGenerator(**config["generator_params"], **common)
    manifests["facevid2vid.OcclusionAwareGenerator"] = shapes(built)
    manifests["facevid2vid.DenseMotionNetwork"] = shapes(built.dense_motion_network)
    manifests["facevid2vid.OcclusionAwareSPADEGenerator"] = shapes(
        generator.OcclusionAwareSPADEGenerator(**config["generator_params"], **common))

    config = yaml.safe_load((root / LIVEPORTRAIT / "src/config/models.yaml").read_text())["model_params"]
    appearance, motion, warping, spade, stitching = import_from(root, LIVEPORTRAIT, [
        "src.modules.appearance_feature_extractor", "src.modules.motion_extractor", "src.modules.warping_network",
        "src.modules.spade_generator", "src.modules.stitching_retargeting_network"])
    manifests["liveportrait.AppearanceFeatureExtractor"] = shapes(
        appearance.AppearanceFeatureExtractor(**config["appearance_feature_extractor_params"]))
    manifests["liveportrait.MotionExtractor"] = shapes(motion.MotionExtractor(**config["motion_extractor_params"]))
    built = warping.WarpingNetwork(**config["warping_module_params"])
    manifests["liveportrait.WarpingNetwork"] = shapes(built)
    manifests["liveportrait.DenseMotionNetwork"] = shapes(built.dense_motion_network)
    manifests["liveportrait.SPADEDecoder"] = shapes(spade.SPADEDecoder(**config["spade_generator_params"]))
    for part, params in config["stitching_retargeting_module_params"].items():
        manifests[f"liveportrait.StitchingRetargetingNetwork[{part}]"] = shapes(
            stitching.StitchingRetargetingNetwork(**params))
    return manifests


if __name__ == "__main__":
    json.dump(main(Path(sys.argv[1])), sys.stdout, indent=1)
    print()
