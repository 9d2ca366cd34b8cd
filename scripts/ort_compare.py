#!/usr/bin/env python3
"""onnxruntime's side of the tract-vs-onnxruntime comparison, and the model's FLOPs.

Times `InferenceSession.run` on the same ONNX file and the same input tensor that
`boneage bench --dump-input FILE` wrote (raw little-endian float32, the model's
`image` input, shape [1, 1, H, W]), with `intra_op_num_threads` = each of --threads,
one inter-op thread, sequential execution, all graph optimisations. Prints one JSON
object: per thread count the median / min / max milliseconds of one run, plus the
graph's multiply-add count (convolutions, transposed convolutions, Gemm and MatMul,
counted from ONNX shape inference) so a caller can relate time to the machine's
peak. `scripts/bench.sh` calls it and writes the ratio into BENCHMARKS.md.

    python scripts/ort_compare.py --model models/boneage-default.onnx \
        --input target/bench/input.f32 --threads 1 2 --runs 200
"""

import argparse
import json
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import shape_inference


def dims(vi):
    return [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]


def count_macs(model):
    """Multiply-adds of the heavy operators, with every symbolic dimension set to 1."""
    # Fix the batch dimension so shape inference gives concrete sizes.
    for inp in model.graph.input:
        for d in inp.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = 1
    inferred = shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shapes[vi.name] = dims(vi)
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    by_op = {}
    unknown = []
    for node in inferred.graph.node:
        op = node.op_type
        if op not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        try:
            if op == "Conv":
                w = shapes[node.input[1]]  # [Cout, Cin/g, kh, kw]
                out = shapes[node.output[0]]  # [N, Cout, Ho, Wo]
                macs = int(np.prod(out)) * int(np.prod(w[1:]))
            elif op == "ConvTranspose":
                w = shapes[node.input[1]]  # [Cin, Cout/g, kh, kw]
                x = shapes[node.input[0]]  # [N, Cin, H, W]
                macs = int(np.prod(x)) * int(np.prod(w[1:]))
            else:
                a = shapes[node.input[0]]
                b = shapes[node.input[1]]
                trans_a = any(at.name == "transA" and at.i for at in node.attribute)
                k = a[-2] if trans_a else a[-1]
                out = shapes[node.output[0]]
                macs = int(np.prod(out)) * int(k)
                del b
        except KeyError:
            unknown.append(node.name or op)
            continue
        by_op[op] = by_op.get(op, 0) + macs
    return by_op, unknown


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True, help="raw float32 image tensor from `boneage bench --dump-input`")
    ap.add_argument("--sex", type=float, default=1.0, help="1 male, 0 female")
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()

    model = onnx.load(args.model)
    macs, unknown = count_macs(onnx.load(args.model))
    img_in = next(i for i in model.graph.input if i.name == "image")
    shape = [d.dim_value if d.HasField("dim_value") else 1 for d in img_in.type.tensor_type.shape.dim]
    x = np.fromfile(args.input, dtype="<f4")
    if x.size != int(np.prod(shape)):
        raise SystemExit(f"{args.input}: {x.size} values, the model's image input {shape} needs {int(np.prod(shape))}")
    feeds = {"image": x.reshape(shape).astype(np.float32), "sex": np.array([[args.sex]], dtype=np.float32)}

    results = []
    for t in args.threads:
        so = ort.SessionOptions()
        so.intra_op_num_threads = t
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
        outs = None
        for _ in range(args.warmup):
            outs = sess.run(None, feeds)
        ms = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            outs = sess.run(None, feeds)
            ms.append((time.perf_counter() - t0) * 1000.0)
        names = [o.name for o in sess.get_outputs()]
        bone_age = float(np.asarray(outs[names.index("bone_age_months")]).reshape(-1)[0])
        results.append(
            {
                "threads": t,
                "median_ms": round(statistics.median(ms), 3),
                "min_ms": round(min(ms), 3),
                "max_ms": round(max(ms), 3),
                "bone_age_months": round(bone_age, 4),
            }
        )
    total = sum(macs.values())
    print(
        json.dumps(
            {
                "runtime": f"onnxruntime {ort.__version__}",
                "model": args.model,
                "input_shape": shape,
                "runs": args.runs,
                "warmup": args.warmup,
                "macs": total,
                "flops": 2 * total,
                "macs_by_op": macs,
                "ops_not_counted": unknown,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
