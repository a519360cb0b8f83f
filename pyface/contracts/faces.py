"""What the face data and the face models agree on: the face-parsing classes, the landmark
layout, and the input sizes of the models that fix them."""
from __future__ import annotations

# Face-parsing classes in CelebAMask-HQ order (the label value is the index).
CELEBAMASK_HQ_CLASSES = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)
LABEL = {name: index for index, name in enumerate(CELEBAMASK_HQ_CLASSES)}

# Landmarks, in this order, as (x, y) in the image's [-1, 1] coordinates.
LANDMARKS = ("l_eye", "r_eye", "nose", "mouth_left", "mouth_right", "upper_lip", "lower_lip", "l_brow", "r_brow")

# GLAMOR-Net's face crop and context image sides (pixels).
FACE_SIZE, CONTEXT_SIZE = 96, 112
