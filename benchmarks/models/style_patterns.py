"""The style-aware pipeline's Intermediate Style Patterns on held-out clips, as one image:
per row a new face, the four style references the key motion templates pick from another
speaker's clip, the four patterns the style mapping makes of the face with them, and the
neutral pattern (the face as its own reference).
    python benchmarks/models/style_patterns.py CHECKPOINTS_DIR OUT.png [ROWS]"""
import sys
from pathlib import Path

import torch

from pyface.data.styles import random_styles, speaker_identities, styled_talking_batch
from pyface.demo import write_grid
from pyface.evaluate import CLIP_FRAMES, HELD_OUT_SEED
from pyface.pipelines import StyleAwareTalkingHead


def main(checkpoints: str, out: str, rows: int = 3) -> None:
    pipeline = StyleAwareTalkingHead.from_checkpoints(checkpoints)
    generator = torch.Generator().manual_seed(HELD_OUT_SEED)  # the evaluation's first clips
    style, speakers, identities = random_styles(rows, generator), speaker_identities(rows, generator), \
        speaker_identities(rows, generator)
    shown = styled_talking_batch(rows, CLIP_FRAMES, generator, pipeline.size, styles=style, identities=speakers)
    target = styled_talking_batch(rows, CLIP_FRAMES, generator, pipeline.size, styles=style, identities=identities)
    tiles = []
    for i in range(rows):
        face, style_frames = target["source"][i:i + 1], shown["frames"][i]
        references = style_frames[pipeline.style_references(style_frames)]
        patterns, _ = pipeline.style(face, style_frames)
        tiles += [face, references, patterns, pipeline.style(face, None)[0][:1]]
    write_grid(torch.cat(tiles), Path(out), columns=10)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
