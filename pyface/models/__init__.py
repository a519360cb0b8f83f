"""Models built on pyface.ops and pyface.nn."""
from pyface.contracts.mouth import (
    MOUTH_TEMPLATES,
    mouth_descriptor,
    nearest_templates,
    select_style_references,
)
from pyface.models.atvgnet import ATNet, LandmarkPCA, RegressionDiscriminator, VGNet
from pyface.models.audio_motion import AudioMotionGenerator, StyleEncoder, manifold_projection
from pyface.models.face_reader import FaceReader
from pyface.models.facial_map import render_facial_map
from pyface.models.glamor import GLAMORNet
from pyface.models.speech_gan import FrameDiscriminator, SequenceDiscriminator, SpeechDrivenGenerator
from pyface.models.style_aware import (
    KeypointExtractor,
    PoseExpressionNet,
    StyleAwareGenerator,
    StyleAwareGeneratorLoss,
    StyleMapping,
    StyleMappingLoss,
)

__all__ = [
    "ATNet", "AudioMotionGenerator", "FaceReader", "FrameDiscriminator", "LandmarkPCA", "RegressionDiscriminator",
    "SequenceDiscriminator", "SpeechDrivenGenerator", "VGNet", "GLAMORNet", "KeypointExtractor", "MOUTH_TEMPLATES",
    "PoseExpressionNet", "StyleAwareGenerator", "StyleAwareGeneratorLoss", "StyleEncoder", "StyleMapping",
    "StyleMappingLoss",
    "manifold_projection", "mouth_descriptor", "nearest_templates", "render_facial_map", "select_style_references",
]
