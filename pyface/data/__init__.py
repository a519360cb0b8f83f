"""Synthetic data that trains the models without downloads: procedurally drawn faces with
exact parsing labels and landmarks (pyface.data.faces) and the emotion-with-context task of
GLAMOR-Net (pyface.data.emotion)."""
from pyface.data.emotion import EMOTIONS, SyntheticEmotionFaces, emotion_batch
from pyface.data.faces import LANDMARKS, FaceParameters, draw_faces, random_parameters

__all__ = ["EMOTIONS", "LANDMARKS", "FaceParameters", "SyntheticEmotionFaces", "draw_faces", "emotion_batch",
           "random_parameters"]
