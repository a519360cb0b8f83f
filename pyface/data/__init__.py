"""Synthetic data that trains the models without downloads: procedurally drawn faces with
exact parsing labels and landmarks (pyface.data.faces), the emotion-with-context task of
GLAMOR-Net (pyface.data.emotion) and the talking-head pairs (pyface.data.talking)."""
from pyface.data.emotion import EMOTIONS, SyntheticEmotionFaces, emotion_batch
from pyface.data.faces import LANDMARKS, FaceParameters, draw_faces, random_parameters
from pyface.data.talking import style_pair_batch

__all__ = ["EMOTIONS", "LANDMARKS", "FaceParameters", "SyntheticEmotionFaces", "draw_faces", "emotion_batch",
           "random_parameters", "style_pair_batch"]
