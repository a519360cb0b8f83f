#!/usr/bin/env bash
# The style-aware talking head's CPU recipe (README, "The style-aware talking head, end to
# end"): its four stages' `pyface train --preset cpu` in order (the generator learns from the
# trained style mapping's patterns), `pyface eval style-aware`, the figure of the patterns
# (style_patterns.py) and the demo on a recording.
# Run from the repository root with pyface installed, on an otherwise idle machine (the wall
# times are part of the result). PYFACE_STAGES="style-generator" (say) trains only those
# stages, the others' checkpoints already in the runs directory, and adds to the log.
#   bash benchmarks/models/style_aware.sh [OUT_DIR]
set -euo pipefail
out=${1:-benchmarks/results/models}
runs=${PYFACE_RUNS:-runs}/style-aware
mkdir -p "$out" "$runs"
log="$out/style-aware-train.log"
[ -n "${PYFACE_STAGES:-}" ] || : > "$log"
recipe_start=$(date +%s)
for stage in ${PYFACE_STAGES:-style-mapping style-generator face-reader audio-motion}; do
    extra=()
    [ "$stage" = style-generator ] && extra=(--style-mapping "$runs/style-mapping.pt")
    start=$(date +%s)
    pyface train "$stage" --synthetic --preset cpu --device cpu --checkpoint "$runs/$stage.pt" "${extra[@]}" 2>&1 \
        | tr '\r' '\n' | grep -E "held-out|steps [0-9]+-[0-9]+ in" | sed "/^$stage:/!s/^/$stage: /" >> "$log"
    echo "$stage: wall time $(( $(date +%s) - start )) s" >> "$log"
    cp "$runs/$stage.pt.curve.json" "$out/style-aware-$stage-curve.json"
done
echo "recipe (${PYFACE_STAGES:-all stages}): wall time $(( $(date +%s) - recipe_start )) s" >> "$log"
cat "$log"
for stage in style-mapping style-generator face-reader audio-motion; do
    pyface eval "$stage" --checkpoint "$runs/$stage.pt" --device cpu --json "$out/style-aware-$stage-eval.json"
done
pyface eval style-aware --checkpoints "$runs" --device cpu --json "$out/style-aware-eval.json"
python benchmarks/models/style_patterns.py "$runs" "$out/style-aware-patterns.png"
# the demo: a new face, a synthesised recording, and another speaker's clip as the style source
python - "$runs" <<'PY'
import sys

import soundfile
import torch
from PIL import Image

from pyface.data.styles import SpeakingStyle, styled_talking_batch
from pyface.demo import write_video

runs = sys.argv[1]
g = torch.Generator().manual_seed(11)
face = styled_talking_batch(1, 100, g)
soundfile.write(f"{runs}/speech.wav", face["waveform"][0].numpy(), 16000)
Image.fromarray((face["source"][0].permute(1, 2, 0) * 255).round().byte().numpy()).save(f"{runs}/face.png")
# the style source: another speaker, smiling wide and opening wide
styled = styled_talking_batch(1, 75, g, styles=SpeakingStyle(torch.tensor([0.9]), torch.tensor([1.0])))
write_video(styled["frames"][0], styled["waveform"][0], f"{runs}/style.mp4")
PY
pyface demo style-aware --image "$runs/face.png" --wav "$runs/speech.wav" --style "$runs/style.mp4" \
    --checkpoints "$runs" --out "$out/style-aware-demo.mp4"
pyface demo style-aware --image "$runs/face.png" --wav "$runs/speech.wav" --style "$runs/style.mp4" \
    --checkpoints "$runs" --out "$out/style-aware-demo-frames.png" --max-frames 20
cp "$runs/style.mp4" "$out/style-aware-demo-style-source.mp4"
# the same face and recording without a style source (the neutral style), to compare
pyface demo style-aware --image "$runs/face.png" --wav "$runs/speech.wav" \
    --checkpoints "$runs" --out "$out/style-aware-demo-neutral-frames.png" --max-frames 20
