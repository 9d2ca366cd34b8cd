#!/usr/bin/env python3
"""Write the training preprocessing's output for the parity fixtures.

For every PNG in tests/fixtures/parity/ this runs exactly what scripts/train.py does to
an image before the network (`load_images`: PIL grey, BILINEAR resize to the input
size when the size differs; `zscore`: per-image standardisation of value/255) and
writes the 100x100 float32 tensor, little endian, next to it as `<name>.train.f32`.
tests/parity.rs checks that the service's decode -> preprocess gives the same tensor.

    python scripts/parity_fixtures.py
"""

from pathlib import Path
import sys

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train  # noqa: E402

SIZE = 100
DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "parity"


def main():
    for png in sorted(DIR.glob("*.png")):
        x = train.load_images([{"image": str(png)}], SIZE)  # [1, H, W] uint8
        t = train.zscore(torch.from_numpy(x).unsqueeze(1).float() / 255.0)
        out = png.with_suffix(".train.f32")
        out.write_bytes(t.numpy().astype("<f4").tobytes())
        print(f"{png.name}: mean {float(t.mean()):+.2e} sd {float(t.std(unbiased=False)):.4f} -> {out.name}")


if __name__ == "__main__":
    main()
