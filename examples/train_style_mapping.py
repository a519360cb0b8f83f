"""Train the style-aware talking head's StyleMapping on pyface's synthetic face pairs: the
neutral image's appearance volume is warped (pyface.nn.DenseMotion: fused keypoint
heatmaps, sparse motions and keypoint_warp) to the reference's pose and expression and
decoded; the loss is L1 plus the style-aware photometric loss on the reference's parsing.

    python examples/train_style_mapping.py --steps 100 --device cpu
"""
import argparse

import torch

from pyface.data import style_pair_batch
from pyface.models import StyleMapping, StyleMappingLoss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="image size, a multiple of 4")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = StyleMapping(num_keypoints=15).to(args.device)
    criterion = StyleMappingLoss().to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for step in range(1, args.steps + 1):
        batch = style_pair_batch(args.batch_size, generator, args.size, args.device)
        out = model(batch["neutral"], batch["reference"])  # the Intermediate Style Pattern image and keypoints
        loss = criterion(out["image"], batch["reference"], batch["parsing"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == 1 or step % 10 == 0:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
