#!/usr/bin/env python
"""Whether oneDNN's int8 convolution is exact and fast on this CPU for 7-bit inputs.

On AVX2 without VNNI, oneDNN adds pairs of u8 x s8 products in saturating int16: with inputs
in 0..127 and weights in -127..127 every pair sum stays below 2**15, so the int32 sums are
exact, as they are with 8-bit inputs only on VNNI.  This times one such convolution against
the float32 one (oneDNN, channels-last, one thread) on ``g_s``'s largest layer shapes, after
checking its sums against float64:

    python benchmarks/int8_u7.py [--repeat 5]

(issue 29: the route an exact synthesis with 7-bit activations, ``QAT_LEVELS=127``, would
take on CPUs without VNNI.)
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

#: (input channels, output channels, kernel, size): g_s's 3x3 at 512 px, its upsampling as a
#: phase convolution at 256 px, a 1x1 at 512 px
SHAPES = ((32, 32, 3, 512), (64, 256, 3, 256), (64, 32, 1, 512))


def best_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    op = torch.ops.onednn.qconv2d_pointwise
    generator = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}"
          ", one thread")
    print("| in -> out, kernel, size | int8 (u7 x s8) exact | int8 ms | float32 ms | ratio |")
    print("|---|---|---|---|---|")
    for channels_in, channels_out, k, size in SHAPES:
        weight = torch.randint(-127, 128, (channels_out, channels_in, k, k),
                               generator=generator).float()
        x = torch.randint(0, 128, (1, channels_in, size, size), generator=generator).float()
        x[..., :4, :] = 127.0  # saturating rows: the largest pair sums
        pad = [k // 2] * 2
        u8 = x.to(torch.uint8).contiguous(memory_format=torch.channels_last)
        packed = torch.ops.onednn.qconv_prepack(weight.to(torch.int8), torch.ones(channels_out),
                                                1.0, 0, [1, 1], pad, [1, 1], 1, None)
        ones, zeros = torch.ones(channels_out), torch.zeros(channels_out, dtype=torch.int64)

        def int8(u8=u8, packed=packed, ones=ones, zeros=zeros, pad=pad):
            return op(u8, 1.0, 0, packed, ones, zeros, None, [1, 1], pad, [1, 1], 1, 1.0, 0,
                      torch.float32, "none", [], "")

        xf = x.contiguous(memory_format=torch.channels_last)
        wf = weight.contiguous(memory_format=torch.channels_last)

        def float32(xf=xf, wf=wf, pad=pad):
            return F.conv2d(xf, wf, None, 1, pad)

        exact = torch.equal(int8().double(), F.conv2d(x.double(), weight.double(), None, 1, pad))
        a, b = best_ms(int8, args.repeat), best_ms(float32, args.repeat)
        print(f"| {channels_in} -> {channels_out}, {k}x{k}, {size} | {exact} | {a:.1f} | "
              f"{b:.1f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
