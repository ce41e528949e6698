#!/usr/bin/env python
"""oneDNN int8 convolutions (u8 x s8, int32 sums) against float32 ones on g_s-shaped layers.

Checks each int8 result against float64 (exact integers: inputs in 0..127, so AVX2 kernels do
not saturate their int16 pair sums) and prints the median time of each, one thread.  Run with
``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` for the AVX2 class.

    python benchmarks/int8_sums.py
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

#: (input channels, output channels, kernel, side): the layers of a 1024-px tile's g_s stages
LAYERS = ((32, 32, 3, 512), (64, 32, 1, 512), (32, 64, 1, 512), (64, 64, 3, 256),
          (64, 256, 3, 256))  # the last: an upsampling as its phase convolution


def median_seconds(fn, repeat: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[repeat // 2]


def measure(cin: int, cout: int, k: int, side: int) -> str:
    x = torch.randint(0, 127, (1, cin, side, side)).float()
    x[..., :4, :] = 127.0  # saturating rows: the largest pair sums
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randint(-127, 127, (cout, cin, k, k)).float()
    pad = [k // 2] * 2
    ones, zeros = torch.ones(cout), torch.zeros(cout, dtype=torch.int64)
    packed = torch.ops.onednn.qconv_prepack(w.to(torch.int8), ones, 1.0, 0, [1, 1], pad,
                                            [1, 1], 1, None)
    xq = x.to(torch.uint8)

    def as_float32() -> torch.Tensor:
        return F.conv2d(x, w, None, 1, k // 2)

    def as_int8() -> torch.Tensor:
        return torch.ops.onednn.qconv2d_pointwise(
            xq, 1.0, 0, packed, ones, zeros, None, [1, 1], pad, [1, 1], 1, 1.0, 0,
            torch.float32, "none", [], "")

    reference = F.conv2d(x.double(), w.double(), None, 1, k // 2)
    error = float((as_int8().double() - reference).abs().max())
    return (f"{cin}->{cout} {k}x{k} {side}^2: float32 {median_seconds(as_float32) * 1e3:.1f} ms,"
            f" int8 {median_seconds(as_int8) * 1e3:.1f} ms, int8 error {error}")


def main() -> None:
    torch.set_num_threads(1)
    for layer in LAYERS:
        print(measure(*layer))


if __name__ == "__main__":
    main()
