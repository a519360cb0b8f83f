#!/usr/bin/env bash
# Reproduces benchmarks/results/models/ (README, "What each model learns in 15 CPU minutes"):
# every model's `pyface train --preset cpu`, its `pyface eval`, and the talking heads' demos
# on a real recording. Run from the repository root with pyface installed; one model at a
# time on an otherwise idle machine (the wall times are part of the result).
#   bash benchmarks/models/run.sh [OUT_DIR] [MODEL ...]
set -euo pipefail
out=${1:-benchmarks/results/models}
shift || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(glamor speech-gan atvgnet)
runs=${PYFACE_RUNS:-runs}
mkdir -p "$out" "$runs"
for model in "${models[@]}"; do
    # the wall time of the whole command: start-up, training and the learning-curve points
    start=$(date +%s)
    pyface train "$model" --synthetic --preset cpu --device cpu --checkpoint "$runs/$model.pt" 2>&1 \
        | tr '\r' '\n' | grep -E "held-out|steps [0-9]+-[0-9]+ in" > "$out/$model-train.log"
    echo "wall time: $(( $(date +%s) - start )) s" >> "$out/$model-train.log"
    cat "$out/$model-train.log"
    cp "$runs/$model.pt.curve.json" "$out/$model-curve.json"
    cp "$runs/$model.pt.curve.png" "$out/$model-curve.png"
    pyface eval "$model" --checkpoint "$runs/$model.pt" --device cpu --json "$out/$model-eval.json"
done
# the demos: a synthesised recording (espeak-ng, offline) when there is one, else a synthetic clip
speech="$runs/hello.wav"
if command -v espeak-ng > /dev/null; then
    espeak-ng -w "$speech" "Hello from pyface. The mouth opens on the loud parts and closes in the pauses."
else
    python -c "import soundfile, torch; from pyface.data import speech_envelope, speech_waveform; \
g = torch.Generator().manual_seed(7); soundfile.write('$speech', speech_waveform(speech_envelope(1, 100, g), g)[0].numpy(), 16000)"
fi
for model in speech-gan atvgnet; do
    if [ -f "$runs/$model.pt" ]; then
        pyface demo "$model" --wav "$speech" --checkpoint "$runs/$model.pt" --out "$out/$model-demo.mp4"
        pyface demo "$model" --wav "$speech" --checkpoint "$runs/$model.pt" --out "$out/$model-demo-frames.png" \
            --max-frames 20
    fi
done
