#!/usr/bin/env python3
"""Measure the service and write BENCHMARKS.md (issue 8). Every figure in that file
comes from one run of this script on one machine.

    cargo build --release
    python3 -m venv ../venv-bench && ../venv-bench/bin/pip install -r scripts/requirements-bench.txt
    cargo install oha --version 1.16.0 --locked       # the load generator
    ../venv-bench/bin/python scripts/benchmarks.py    # about 10 minutes; --quick for a smoke run

What it does, in order (nothing else should run on the machine meanwhile):
1. test images in target/bench/: an 8-bit PNG of about 1000x1300, a 16-bit PNG of
   about 2000x2500 and the same as a DR-style DICOM (MONOCHROME1, 14 bits stored,
   JPEG lossless SV1 by dcmtk's `dcmcjpeg +e1`), all made from one real RSNA radiograph
   of ../shared (a synthetic hand from `boneage synth` when ../shared is absent);
2. `boneage bench` on each (median per stage over --runs analyses, then one model pass
   alone), with 1 and 2 inference threads;
3. onnxruntime on the same ONNX file and the same input tensor, 1 and 2 threads
   (scripts/ort_compare.py), the graph's multiply-adds, and the fraction of the two
   cores' peak that each runtime reaches;
4. the real server on loopback (`boneage serve`, fresh database, default workers and
   queue) driven by oha: one client for the HTTP overhead against the bare library,
   then 1, 2, 4, 16 and 64 concurrent clients for --load-seconds each: throughput,
   latency of the accepted (2xx) requests, 503s, errors, and the server's peak RSS.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "rsna"
OUT_DIR = ROOT / "target" / "bench"


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def machine():
    info = {"python": platform.python_version(), "kernel": platform.release()}
    cpu = Path("/proc/cpuinfo").read_text()
    info["cpu"] = re.search(r"model name\s*:\s*(.*)", cpu).group(1).strip()
    info["mhz"] = float(re.search(r"cpu MHz\s*:\s*([\d.]+)", cpu).group(1))
    flags = set(re.search(r"flags\s*:\s*(.*)", cpu).group(1).split())
    info["avx2_fma"] = {"avx2", "fma"} <= flags
    info["avx512f"] = "avx512f" in flags
    info["cores"] = os.cpu_count()
    mem = Path("/proc/meminfo").read_text()
    info["mem_gib"] = round(int(re.search(r"MemTotal:\s*(\d+)", mem).group(1)) / 2**20, 1)
    info["rustc"] = sh(["rustc", "--version"]).strip()
    lock = (ROOT / "Cargo.lock").read_text()
    m = re.search(r'name = "tract-core"\nversion = "([^"]+)"', lock)
    info["tract"] = m.group(1) if m else "?"
    try:
        info["oha"] = sh(["oha", "--version"]).strip()
    except (OSError, subprocess.CalledProcessError):
        info["oha"] = None
    return info


def make_images(boneage, quick):
    """The three benchmark inputs; returns {name: path} and a description of the source."""
    import numpy as np
    from PIL import Image

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    labels = SHARED / "half512" / "labels.csv"
    if labels.exists():
        # The first validation image (id divisible by 10) of half512: a real radiograph.
        import csv

        with open(labels) as f:
            row = next(r for r in csv.DictReader(f) if int(r["id"]) % 10 == 0)
        src = Image.open(labels.parent / row["image"]).convert("L")
        source = f"RSNA half512 id {row['id']} ({src.width}x{src.height}), upscaled (bicubic)"
        sex = "male" if row["male"] in ("1", "True", "true") else "female"
    else:
        p = OUT_DIR / "synth.png"
        sh([boneage, "synth", str(p), "--width", "1000", "--height", "1300"])
        src = Image.open(p).convert("L")
        source = "synthetic hand (`boneage synth`, no ../shared)"
        sex = "male"
    w8 = 1000
    h8 = round(src.height * w8 / src.width)
    png8 = OUT_DIR / "hand-8bit.png"
    src.resize((w8, h8), Image.BICUBIC).save(png8)
    w16 = 2000
    h16 = round(src.height * w16 / src.width)
    big = np.asarray(src.convert("F").resize((w16, h16), Image.BICUBIC), dtype=np.float64)
    # 14 bits of signal with a little noise, as a DR detector delivers.
    rng = np.random.default_rng(8)
    v14 = np.clip(big * 64.0 + rng.normal(0.0, 8.0, big.shape), 0, 16383).astype(np.uint16)
    png16 = OUT_DIR / "hand-16bit.png"
    Image.fromarray(v14).save(png16)  # uint16 → "I;16"
    dcm = OUT_DIR / "hand-dr-jpegll.dcm"
    raw = OUT_DIR / "hand-dr-raw.dcm"
    write_dr_dicom(16383 - v14, raw)  # MONOCHROME1: bright = air
    try:
        sh(["dcmcjpeg", "+e1", str(raw), str(dcm)])
    except OSError:
        sys.exit("dcmcjpeg (Debian package dcmtk) is needed for the DICOM JPEG-lossless input")
    images = {
        "png8": {"path": png8, "desc": f"8-bit PNG {w8}x{h8}"},
        "png16": {"path": png16, "desc": f"16-bit PNG {w16}x{h16}"},
        "dicom": {"path": dcm, "desc": f"DICOM {w16}x{h16}, MONOCHROME1, 14 of 16 bits, JPEG lossless SV1"},
    }
    for v in images.values():
        v["bytes"] = v["path"].stat().st_size
    return images, source, sex


def write_dr_dicom(px, path):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.BodyPartExamined = "HAND"
    ds.PatientSex = ""
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.BitsAllocated = 16
    ds.BitsStored = 14
    ds.HighBit = 13
    ds.PixelRepresentation = 0
    ds.PixelData = px.astype("<u2").tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    del pydicom


def bench(boneage, image, runs, threads, sex, dump=None):
    cmd = [boneage, "bench", "--image", str(image), "--runs", str(runs), "--warmup", "3",
           "--threads", str(threads), "--sex", sex]
    if dump:
        cmd += ["--dump-input", str(dump)]
    return json.loads(sh(cmd))


def model_file(boneage):
    info = json.loads(sh([boneage, "model", "info"]))
    path = ROOT / "models" / "boneage-default.onnx"
    return info, path


def start_server(boneage, db_dir, workers=None):
    cmd = [boneage, "serve", "--listen", "127.0.0.1:0", "--db", str(Path(db_dir) / "bench.db")]
    if workers:
        cmd += ["--workers", str(workers)]
    # The log goes to a file: a pipe nobody reads would fill and stall the server.
    log_path = Path(db_dir) / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stderr=log, stdout=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    deadline = time.time() + 60
    while time.time() < deadline:
        m = re.search(r"listening on (http://[\d.:]+)", log_path.read_text())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    sys.exit(f"the server did not start:\n{log_path.read_text()}")


def peak_rss_mb(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s*(\d+) kB", status).group(1)) / 1024


def store_ms(base):
    """Mean milliseconds of the durable commit of an analysis, from the server's metrics."""
    text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    got = {}
    for line in text.splitlines():
        m = re.match(r'boneage_stage_duration_seconds_(sum|count)\{stage="store"\} (\S+)', line)
        if m:
            got[m.group(1)] = float(m.group(2))
    if not got.get("count"):
        return None
    return round(got["sum"] / got["count"] * 1000, 3)


def oha(url, body, clients, seconds=None, requests=None, ctype="image/png"):
    cmd = ["oha", "--no-tui", "--output-format", "json", "--stats-success-breakdown",
           "-c", str(clients), "-m", "POST", "-T", ctype, "-D", str(body)]
    if seconds:
        cmd += ["-z", f"{seconds}s"]
    else:
        cmd += ["-n", str(requests)]
    r = json.loads(sh(cmd + [url]))
    codes = {str(k): v for k, v in r.get("statusCodeDistribution", {}).items()}
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    total = sum(codes.values())
    # Requests still in flight when the time is up are cut by oha itself, not failed.
    errors = sum(v for k, v in r.get("errorDistribution", {}).items() if "deadline" not in k)
    lat = r.get("latencyPercentilesSuccessful") or r["latencyPercentiles"]
    elapsed = r["summary"]["total"]
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "responses": total,
        "ok": ok,
        "shed_503": codes.get("503", 0),
        "other_status": total - ok - codes.get("503", 0),
        "errors": errors,
        "ok_per_s": round(ok / elapsed, 2),
        "ok_p50_ms": round(lat["p50"] * 1000, 2) if lat.get("p50") is not None else None,
        "ok_p99_ms": round(lat["p99"] * 1000, 2) if lat.get("p99") is not None else None,
        "status_codes": codes,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boneage", default=str(ROOT / "target" / "release" / "boneage"))
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--ort-runs", type=int, default=200)
    ap.add_argument("--load-seconds", type=int, default=20)
    ap.add_argument("--overhead-rounds", type=int, default=5)
    ap.add_argument("--overhead-runs", type=int, default=40)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 16, 64])
    ap.add_argument("--quick", action="store_true", help="few runs, short loads: a smoke test of the script")
    ap.add_argument("--skip-load", action="store_true")
    ap.add_argument("--json", default=str(OUT_DIR / "results.json"))
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--render-only", action="store_true", help="rewrite --out from the --json of an earlier run")
    args = ap.parse_args()
    if args.render_only:
        res = json.loads(Path(args.json).read_text())
        res["peak"] = {int(k): v for k, v in res["peak"].items()}
        for k, v in res["run_args"].items():
            setattr(args, k, v)
        Path(args.out).write_text(render(res, args))
        return
    if args.quick:
        args.runs, args.ort_runs, args.load_seconds = 5, 20, 3
        args.overhead_rounds, args.overhead_runs = 2, 10
    boneage = args.boneage
    if not Path(boneage).exists():
        sys.exit(f"{boneage} missing: cargo build --release")

    res = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "run_args": {"runs": args.runs, "ort_runs": args.ort_runs, "load_seconds": args.load_seconds}}
    print("machine:", res["machine"], file=sys.stderr)
    images, source, sex = make_images(boneage, args.quick)
    res["images"] = {k: {"desc": v["desc"], "bytes": v["bytes"]} for k, v in images.items()}
    res["image_source"] = source
    res["sex"] = sex
    info, onnx_path = model_file(boneage)
    res["model"] = {"name": info["name"], "version": info["version"], "sha256": info["sha256"]}

    # 2. the library, per stage.
    res["bench"] = {}
    tensor = OUT_DIR / "input.f32"
    for name, img in images.items():
        for t in (1, 2):
            print(f"bench {name} threads={t}", file=sys.stderr)
            dump = tensor if (name == "png8" and t == 1) else None
            res["bench"][f"{name}/t{t}"] = bench(boneage, img["path"], args.runs, t, sex, dump)

    # What batching would buy: one pass over N copies, per image.
    res["batching"] = []
    for n in (2, 4, 8):
        print(f"batch {n}", file=sys.stderr)
        r = json.loads(sh([boneage, "bench", "--image", str(images["png8"]["path"]), "--runs", str(args.runs),
                           "--warmup", "3", "--threads", "1", "--sex", sex, "--batch", str(n)]))
        res["batching"].append({"size": n, "single_ms": r["model_pass_ms"]["median"],
                                "per_image_ms": r["batched"]["per_image_ms"]["median"],
                                "pass_ms": r["batched"]["pass_ms"]["median"]})

    # 3. onnxruntime on the same file and tensor.
    print("onnxruntime", file=sys.stderr)
    ort = json.loads(sh([sys.executable, str(ROOT / "scripts" / "ort_compare.py"), "--model", str(onnx_path),
                         "--input", str(tensor), "--sex", "1" if sex == "male" else "0",
                         "--threads", "1", "2", "--runs", str(args.ort_runs)]))
    res["ort"] = ort
    # tract's one-pass figure, measured the same way (one call, no analysis around it).
    tract_pass = {t: res["bench"][f"png8/t{t}"]["model_pass_ms"]["median"] for t in (1, 2)}
    # The machine's limit, measured: an FMA loop per core (scripts/peak_flops.c).
    peak_bin = OUT_DIR / "peak_flops"
    sh(["gcc", "-O3", "-mavx2", "-mfma", "-mavx512f", "-pthread", str(ROOT / "scripts" / "peak_flops.c"),
        "-o", str(peak_bin)])
    peak = {r["threads"]: r for r in json.loads(sh([str(peak_bin), "2"]))["results"]}
    res["peak"] = peak
    cmp_rows = []
    for r in ort["results"]:
        t = r["threads"]
        tr = tract_pass[t]
        peak_avx2 = peak[t]["avx2_gflops"]  # GFLOP/s of the t cores used
        peak_512 = peak[t]["avx512_gflops"]
        cmp_rows.append({
            "threads": t,
            "tract_ms": tr,
            "ort_ms": r["median_ms"],
            "ratio": round(tr / r["median_ms"], 3),
            "tract_gflops": round(ort["flops"] / tr / 1e6, 2),
            "ort_gflops": round(ort["flops"] / r["median_ms"] / 1e6, 2),
            "peak_avx2_gflops": round(peak_avx2, 1),
            "peak_avx512_gflops": round(peak_512, 1),
        })
    res["compare"] = cmp_rows

    # 4. the service.
    if not args.skip_load:
        if not shutil.which("oha"):
            sys.exit("oha is missing: cargo install oha --version 1.16.0 --locked")
        with tempfile.TemporaryDirectory() as db_dir:
            proc, base = start_server(boneage, db_dir)
            url = f"{base}/v1/analyses?sex={sex}&chronological_age_months=120"
            try:
                png8 = images["png8"]["path"]
                # Overhead: rounds that alternate the bare library (`boneage bench`) and
                # one HTTP client on the same image, so drifts of the machine hit both.
                res["http_overhead"] = {}
                for name in ("png8", "png16"):
                    img = images[name]["path"]
                    ctype = "image/png"
                    print(f"http overhead {name}", file=sys.stderr)
                    oha(url, img, 1, requests=10, ctype=ctype)  # warm-up
                    lib_ms, http_ms = [], []
                    for _ in range(args.overhead_rounds):
                        lib_ms.append(bench(boneage, img, args.overhead_runs, 1, sex)["median_ms"]["total"])
                        http_ms.append(oha(url, img, 1, requests=args.overhead_runs, ctype=ctype)["ok_p50_ms"])
                    lib, http = statistics.median(lib_ms), statistics.median(http_ms)
                    res["http_overhead"][name] = {
                        "library_total_ms": round(lib, 3),
                        "http_p50_ms": round(http, 3),
                        "overhead_ms": round(http - lib, 3),
                        "overhead_pct": round((http / lib - 1) * 100, 1),
                        "rounds": args.overhead_rounds,
                        "runs_per_round": args.overhead_runs,
                    }
                store = store_ms(base)
                res["store_commit_ms"] = store
                res["load"] = []
                for c in args.clients:
                    print(f"load c={c}", file=sys.stderr)
                    res["load"].append(oha(url, png8, c, seconds=args.load_seconds))
                res["peak_rss_mb"] = round(peak_rss_mb(proc.pid), 1)
                res["server"] = {"workers": os.cpu_count(), "queue_depth": 16}
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    Path(args.out).write_text(render(res, args))
    print(f"wrote {args.out} and {args.json}", file=sys.stderr)


def render(res, args):
    m = res["machine"]
    b = res["bench"]
    L = []
    w = L.append
    w("# Benchmarks")
    w("")
    w("Generated by `scripts/benchmarks.py` (do not edit by hand); rerun it to refresh every")
    w("figure. Medians, never single runs; ratios are between runtimes measured in the same run.")
    w("")
    w("## Machine and method")
    w("")
    w(f"- {m['cpu']}, {m['cores']} cores at {m['mhz']:.0f} MHz (as `/proc/cpuinfo` reports it), "
      f"AVX2+FMA: {'yes' if m['avx2_fma'] else 'no'}, AVX-512F: {'yes' if m['avx512f'] else 'no'}; "
      f"{m['mem_gib']} GiB; Linux {m['kernel']}")
    w(f"- {m['rustc']}, release profile; tract {m['tract']}; {res['ort']['runtime']} (PyPI); {m['oha'] or 'oha not run'}")
    w(f"- model `{res['model']['name']}` {res['model']['version']} (sha256 `{res['model']['sha256'][:16]}…`), input {res['ort']['input_shape']}")
    w(f"- run {res['started']} → {res['finished']}; `boneage bench` medians over {args.runs} analyses after 3 warm-ups; "
      f"onnxruntime over {args.ort_runs} runs after 20 warm-ups")
    w(f"- images: {res['image_source']}; sex {res['sex']}")
    w("")
    w("Commands:")
    w("")
    w("```sh")
    w("cargo build --release")
    w("target/release/boneage bench --image target/bench/hand-16bit.png --runs 30 --threads 1")
    w("python scripts/ort_compare.py --model models/boneage-default.onnx --input target/bench/input.f32 --threads 1 2")
    w("python scripts/benchmarks.py        # everything below, and this file")
    w("```")
    w("")
    w("## One analysis through the library (`boneage bench`)")
    w("")
    w("Median milliseconds per stage. `decode` includes hashing the upload; `inference` sums the "
      "model passes that quality control needed (`passes`); `total` is the whole `Analyzer::analyze` call.")
    w("")
    w("| input | bytes | threads | passes | decode | preprocess | inference | scoring | total | one model pass |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, r in b.items():
        name, t = key.split("/")
        md = r["median_ms"]
        w(f"| {res['images'][name]['desc']} | {res['images'][name]['bytes']:,} | {t[1:]} | {r['passes']} | "
          f"{md['decode']:.2f} | {md['preprocess']:.2f} | {md['inference']:.2f} | {md['scoring']:.3f} | "
          f"**{md['total']:.2f}** | {r['model_pass_ms']['median']:.2f} |")
    w("")
    w("## tract against onnxruntime, and against the machine's peak")
    w("")
    o = res["ort"]
    pk = res["peak"]
    w(f"Same ONNX file, same input tensor (`boneage bench --dump-input`), same thread count; one "
      f"model pass. The graph has {o['macs'] / 1e6:.1f} M multiply-adds in convolutions, "
      f"transposed convolutions and matrix products ({o['flops'] / 1e6:.1f} MFLOP; counted by "
      f"`scripts/ort_compare.py` from ONNX shape inference).")
    w("")
    w(f"The machine's limit is measured, not taken from the nominal clock: `scripts/peak_flops.c` runs "
      f"12 independent FMA chains per core. One core: {pk[1]['avx2_gflops']:.0f} GFLOP/s with 256-bit "
      f"AVX2+FMA (32 FLOP per cycle, so the core runs at about {pk[1]['implied_ghz']:.2f} GHz, not the "
      f"{m['mhz'] / 1000:.2f} GHz `/proc/cpuinfo` shows) and {pk[1]['avx512_gflops']:.0f} GFLOP/s with "
      f"512-bit AVX-512; two cores: {pk[2]['avx2_gflops']:.0f} and {pk[2]['avx512_gflops']:.0f} GFLOP/s. "
      f"The percentages are of the peak of the cores the run used.")
    w("")
    w("| threads | tract (ms) | onnxruntime (ms) | tract / onnxruntime | tract GFLOP/s | onnxruntime GFLOP/s | % of AVX2 peak (tract / ort) | % of AVX-512 peak (tract / ort) |")
    w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in res["compare"]:
        w(f"| {r['threads']} | {r['tract_ms']:.2f} | {r['ort_ms']:.2f} | **{r['ratio']:.2f}×** | {r['tract_gflops']:.1f} | "
          f"{r['ort_gflops']:.1f} | {100 * r['tract_gflops'] / r['peak_avx2_gflops']:.0f}% / "
          f"{100 * r['ort_gflops'] / r['peak_avx2_gflops']:.0f}% | "
          f"{100 * r['tract_gflops'] / r['peak_avx512_gflops']:.0f}% / {100 * r['ort_gflops'] / r['peak_avx512_gflops']:.0f}% |")
    w("")
    w("## Batching")
    w("")
    w("The same model planned by tract for a batch of N images (one thread), one pass over N "
      "copies of the tensor, against single-image passes measured in the same call:")
    w("")
    w("| batch | one image alone (ms) | batched, per image (ms) | gain | batched pass = wait of each image (ms) |")
    w("| ---: | ---: | ---: | ---: | ---: |")
    for r in res["batching"]:
        w(f"| {r['size']} | {r['single_ms']:.2f} | {r['per_image_ms']:.2f} | {r['single_ms'] / r['per_image_ms']:.2f}× | {r['pass_ms']:.2f} |")
    w("")
    if "load" in res:
        w("## The service over HTTP (`boneage serve`, loopback, oha)")
        w("")
        w(f"Server: defaults (workers = {res['server']['workers']} cores, queue depth "
          f"{res['server']['queue_depth']}, one inference thread), a fresh database: every analysis "
          f"is committed (SQLite WAL, synchronous=FULL: an fsync) before it is answered. "
          f"`POST /v1/analyses?sex=…&chronological_age_months=120` with the image as the body.")
        w("")
        w("**HTTP overhead**: one client; rounds alternate the bare library analysis "
          "(`boneage bench`, median total) and HTTP requests (oha, median latency) on the same "
          "image; the figures are the medians over the rounds.")
        w("")
        w("| image | rounds × runs | library (ms) | HTTP (ms) | overhead (ms) | overhead |")
        w("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, h in res["http_overhead"].items():
            w(f"| {res['images'][name]['desc']} | {h['rounds']} × {h['runs_per_round']} | {h['library_total_ms']:.2f} | "
              f"{h['http_p50_ms']:.2f} | {h['overhead_ms']:.2f} | **{h['overhead_pct']:+.1f}%** |")
        w("")
        if res.get("store_commit_ms") is not None:
            w(f"Of the overhead, the durable commit of each analysis took {res['store_commit_ms']:.2f} ms on average "
              f"(server metric `boneage_stage_duration_seconds{{stage=\"store\"}}`).")
            w("")
        w(f"**Peak RSS** of the server over all the runs here: **{res['peak_rss_mb']:.0f} MB**.")
        w("")
        w(f"Load, {args.load_seconds} s per row, oha with N connections each sending requests back to back "
          f"(latency of the accepted, 2xx, requests; a shed request is a 503 with `Retry-After: 1`, "
          f"answered after the server's 100 ms shed delay):")
        w("")
        w("| clients | accepted/s | p50 (ms) | p99 (ms) | p99/p50 | accepted | 503 shed | other status | transport errors |")
        w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in res["load"]:
            ratio = (r["ok_p99_ms"] / r["ok_p50_ms"]) if r["ok_p50_ms"] else float("nan")
            w(f"| {r['clients']} | {r['ok_per_s']:.1f} | {r['ok_p50_ms']} | {r['ok_p99_ms']} | {ratio:.2f} | "
              f"{r['ok']} | {r['shed_503']} | {r['other_status']} | {r['errors']} |")
        one = next((r for r in res["load"] if r["clients"] == 1), None)
        two = next((r for r in res["load"] if r["clients"] == 2), None)
        if one and two and one["ok_per_s"]:
            w("")
            w(f"Throughput from 1 to 2 clients (one to two busy workers): **{two['ok_per_s'] / one['ok_per_s']:.2f}×**.")
        w("")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
