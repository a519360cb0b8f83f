"""Train GLAMOR-Net on pyface's synthetic emotion-with-context data: the loop a user copies
into their own training code. GLAMORNet's Global-Local Attention runs on pyface's fused
kernels (backend=None picks the best built for the device; "reference" is the eager one).

    python examples/train_glamor.py --steps 100 --device cpu
"""
import argparse

import torch
import torch.nn.functional as F

from pyface.data import emotion_batch
from pyface.models import GLAMORNet


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = GLAMORNet(num_classes=7).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for step in range(1, args.steps + 1):
        batch = emotion_batch(args.batch_size, generator, args.device)  # face, context (face box masked), label
        logits = model(batch["face"], batch["context"])
        loss = F.cross_entropy(logits, batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == 1 or step % 10 == 0:
            accuracy = (logits.argmax(1) == batch["label"]).float().mean().item()
            print(f"step {step}: loss {loss.item():.4f}, batch accuracy {accuracy:.2f}")

    model.eval()
    with torch.no_grad():
        batch = emotion_batch(64, torch.Generator().manual_seed(1), args.device)
        logits, attention = model(batch["face"], batch["context"], return_attention=True)
    print(f"held-out accuracy {(logits.argmax(1) == batch['label']).float().mean().item():.2f}, "
          f"attention map {tuple(attention.shape[1:])}")


if __name__ == "__main__":
    main()
