"""Train the speech-driven temporal GAN on pyface's synthetic talking faces (the mouth
follows a speech-like waveform's loudness), then animate a face from a real recording:

    espeak-ng -w hello.wav "hello from pyface"
    python examples/train_speech_gan.py --steps 200 --wav hello.wav --out hello.png
"""
import argparse

import torch
import torch.nn.functional as F

from pyface import audio
from pyface.data import talking_sequence_batch
from pyface.models import FrameDiscriminator, SequenceDiscriminator, SpeechDrivenGenerator
from pyface.nn import LowerFaceL1Loss


def adversarial(scores: torch.Tensor, real: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(scores, torch.full_like(scores, 1.0 if real else 0.0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--wav", default=None, help="a recording to animate after training")
    parser.add_argument("--out", default="speech_gan.png")
    args = parser.parse_args()

    torch.manual_seed(0)
    size = (64, 48)
    generator = SpeechDrivenGenerator(size, width=16)
    frame_disc, sequence_disc = FrameDiscriminator(width=16), SequenceDiscriminator(width=16, hidden=64)
    g_opt = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam([*frame_disc.parameters(), *sequence_disc.parameters()], lr=2e-4, betas=(0.5, 0.999))
    lower_face = LowerFaceL1Loss()  # pyface's fused L1 on the lower half of the face
    data = torch.Generator().manual_seed(0)
    for step in range(1, args.steps + 1):
        batch = talking_sequence_batch(args.batch_size, 8, data, render=True, frame_size=size, features=("windows",))
        real, still, windows = batch["frames"], batch["frames"][:, 0], batch["windows"]

        fake = generator(still, windows)
        g_loss = 400 * lower_face(fake, real) + adversarial(frame_disc(fake, still), True) + \
            adversarial(sequence_disc(fake, windows), True)
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()

        fake = fake.detach()
        d_loss = (adversarial(frame_disc(real, still), True) + adversarial(frame_disc(fake, still), False) +
                  adversarial(sequence_disc(real, windows), True) + adversarial(sequence_disc(fake, windows), False))
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        if step == 1 or step % 20 == 0:
            print(f"step {step}: generator {g_loss.item():.3f}, discriminators {d_loss.item():.3f}")

    if args.wav:
        waveform, rate = audio.load(args.wav, sample_rate=16000)
        windows = audio.waveform_windows(waveform, rate, fps=25)[:40].unsqueeze(0)
        generator.eval()
        with torch.no_grad():
            frames = generator(real[:1, 0], windows)[0]  # (T, 3, H, W)
        from PIL import Image

        strip = torch.cat(list(frames[:10]), dim=2)  # the first ten frames side by side
        Image.fromarray((strip.permute(1, 2, 0) * 255).round().byte().numpy()).save(args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
