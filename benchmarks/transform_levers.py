#!/usr/bin/env python
"""g_a and g_s of the default model on one tile, one thread, by lever: torch NCHW,
channels-last, ONNX Runtime (when ``onnxruntime`` and ``onnx`` are installed), and ONNX Runtime
with g_s's transposed convolutions as sub-pixel convolutions, then as phase convolutions with
layout anchors (``synthesis_for_onnxruntime``, where torch has no NNPACK), then ONNX Runtime
between the upsamplings and NNPACK for them (``synthesis_stages``: what GeoRSIC runs on a CPU
below AVX-512), then both in bfloat16 in torch's oneDNN kernels (``Bfloat16Transform``: what
it runs on a CPU with native bfloat16).

    python benchmarks/transform_levers.py [--size 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import os
import time
import warnings

import torch

from georsic.codec import TileCodec
from georsic.models.runtime import (
    Bfloat16Transform,
    bfloat16_transforms_pay,
    nnpack_available,
    synthesis_for_onnxruntime,
    synthesis_stages,
    with_subpixel_convolutions,
)
from georsic.weights import find_model


def timed(fn, arg, repeat: int) -> float:
    fn(arg)
    started = time.perf_counter()
    for _ in range(repeat):
        fn(arg)
    return (time.perf_counter() - started) / repeat


def onnx_runner(net: torch.nn.Module, example: torch.Tensor):
    import onnxruntime as ort

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), buffer, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {2: "h", 3: "w"}}, dynamo=False, opset_version=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(buffer.getvalue(), options,
                                   providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x.numpy()})[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    native_bfloat16 = bfloat16_transforms_pay()  # asked before GEORSIC_RUNTIME is set
    os.environ["GEORSIC_RUNTIME"] = "torch"  # the torch modules, timed below one by one
    model = TileCodec(find_model(None), "cpu").model
    g_s = model.g_s.to(memory_format=torch.contiguous_format)
    x = torch.rand(1, 3, args.size, args.size)
    with torch.no_grad():
        y = torch.round(model.g_a(x))
        rows = [("as shipped (NCHW)", timed(model.g_a, x, args.repeat), timed(g_s, y, args.repeat))]
        g_a_cl = model.g_a.to(memory_format=torch.channels_last)
        g_s_cl = g_s.to(memory_format=torch.channels_last)
        x_cl, y_cl = (t.contiguous(memory_format=torch.channels_last) for t in (x, y))
        rows.append(("channels-last", timed(g_a_cl, x_cl, args.repeat),
                     timed(g_s_cl, y_cl, args.repeat)))
        model.g_a.to(memory_format=torch.contiguous_format)
        g_s.to(memory_format=torch.contiguous_format)
    try:
        rows.append(("ONNX Runtime", timed(onnx_runner(model.g_a, x), x, args.repeat),
                     timed(onnx_runner(g_s, y), y, args.repeat)))
        sub = with_subpixel_convolutions(g_s)
        rows.append(("ONNX Runtime, g_s with sub-pixel convolutions", float("nan"),
                     timed(onnx_runner(sub, y), y, args.repeat)))
        phases = synthesis_for_onnxruntime(g_s, y.shape[1])
        rows.append(("ONNX Runtime, g_s with phase convolutions and layout anchors",
                     float("nan"), timed(onnx_runner(phases, y), y, args.repeat)))
        if nnpack_available():
            stages = [m if kind == "nnpack" else onnx_runner(m, torch.zeros(1, c, 64, 64))
                      for kind, m, c in synthesis_stages(g_s, y.shape[1])]

            def staged(x, stages=stages):
                for stage in stages:
                    x = torch.as_tensor(stage(x))
                return x

            rows.append(("ONNX Runtime between upsamplings, NNPACK for them", float("nan"),
                         timed(staged, y, args.repeat)))
    except ImportError as exc:
        rows.append((f"ONNX Runtime: not installed ({exc.name})", float("nan"), float("nan")))
    with torch.inference_mode():
        # emulated (slow) where the CPU has no native bfloat16: bfloat16_transforms_pay()
        label = "" if native_bfloat16 else " (emulated: this CPU has no bfloat16)"
        rows.append((f"torch oneDNN bfloat16, g_s with sub-pixel convolutions{label}",
                     timed(Bfloat16Transform(model.g_a), x, args.repeat),
                     timed(Bfloat16Transform(g_s), y, args.repeat)))
    print(f"load {os.getloadavg()[0]:.2f}; {args.size}-px tile, one thread")  # noqa: T201
    print("| lever | g_a s | g_s s |\n|---|---|---|")
    for name, a, s in rows:
        print(f"| {name} | {a:.3f} | {s:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
