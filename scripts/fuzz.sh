#!/usr/bin/env bash
# Fuzz the upload decoder (fuzz/fuzz_targets/decode.rs) for a bounded time.
#   scripts/fuzz.sh [SECONDS]     (default 600)
#   BONEAGE_BIN=target/release/boneage scripts/fuzz.sh 900
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Seeds are
# small synthetic radiographs as PNG (8/16-bit), JPEG, TIFF and DICOM, transcoded by
# dcmtk to compressed transfer syntaxes when it is installed. Crashes are kept in
# fuzz/artifacts/decode/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
corpus=fuzz/corpus/decode
mkdir -p "$corpus"
# The seeds come from `boneage synth`: BONEAGE_BIN names a built binary, else a
# debug one is built.
bin="${BONEAGE_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --quiet --bin boneage
    bin=target/debug/boneage
fi
"$bin" synth --width 96 --height 120 --seed 1 "$corpus/hand8.png"
"$bin" synth --width 96 --height 120 --bits 16 --seed 2 "$corpus/hand16.png"
"$bin" synth --width 96 --height 120 --bits 12 --seed 3 --dicom-sex F \
    --dicom-birth-date 20160101 --dicom-study-date 20260101 "$corpus/hand.dcm"
python3 - "$corpus" <<'PY' || true
import sys
try:
    from PIL import Image
except ImportError:
    sys.exit(0)
d = sys.argv[1]
im = Image.open(f"{d}/hand8.png")
im.save(f"{d}/hand.jpg", quality=80)
im.save(f"{d}/hand.tif")
PY
if command -v dcmcjpeg >/dev/null; then
    dcmcjpeg +e1 "$corpus/hand.dcm" "$corpus/hand-jpegll.dcm"
    dcmcjpls "$corpus/hand.dcm" "$corpus/hand-jpegls.dcm"
    dcmcrle "$corpus/hand.dcm" "$corpus/hand-rle.dcm"
    dcmconv +td "$corpus/hand.dcm" "$corpus/hand-deflate.dcm"
fi
echo "fuzzing decode for ${secs}s with $(ls "$corpus" | wc -l) seeds"
cargo +nightly fuzz run decode "$corpus" -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10
