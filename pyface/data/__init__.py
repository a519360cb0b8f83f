"""Synthetic data that trains the models without downloads: procedurally drawn faces with
exact parsing labels and landmarks (pyface.data.faces), the emotion-with-context task of
GLAMOR-Net (pyface.data.emotion) and the talking-head pairs (pyface.data.talking)."""
from pyface.data.emotion import EMOTIONS, SyntheticEmotionFaces, emotion_batch
from pyface.data.faces import LANDMARKS, FaceParameters, draw_faces, face_landmarks, random_parameters
from pyface.data.folder import TalkingFaceFolder
from pyface.data.talking import speech_envelope, speech_waveform, style_pair_batch, talking_sequence_batch

__all__ = [
    "EMOTIONS", "LANDMARKS", "FaceParameters", "SyntheticEmotionFaces", "TalkingFaceFolder", "draw_faces",
    "emotion_batch", "face_landmarks", "random_parameters", "speech_envelope", "speech_waveform", "style_pair_batch",
    "talking_sequence_batch",
]
