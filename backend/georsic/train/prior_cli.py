"""``georsic train prior`` and ``georsic train prior-export``: the Code-RSIC prior's commands."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from georsic.errors import GeorsicError, InputError


def cmd_train_prior(args) -> int:
    import torch

    from georsic.prior.model import PRESETS
    from georsic.train.prior import PriorTrainConfig, train_prior
    from georsic.train.prior_data import BENCHMARK_EXCLUDE

    device = _device(args.device)
    if args.stage == "4":
        return _train_fusion(args, device)
    overrides = {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        if not value or key not in PRESETS["cpu"]:
            raise InputError(f"--set {item!r}: expected NAME=VALUE with NAME one of "
                             f"{', '.join(PRESETS['cpu'])}, e.g. width=64")
        overrides[key] = float(value) if "." in value else int(value)
    cfg = PriorTrainConfig(
        out=args.out, stage=args.stage, data=list(args.data),
        exclude=list(args.exclude) if args.exclude is not None else list(BENCHMARK_EXCLUDE),
        cache=args.cache, preset=args.preset, overrides=overrides, steps=args.steps,
        batch=args.batch, patch=args.patch, lr=args.lr, device=device,
        threads=args.threads or (0 if device != "cpu" else torch.get_num_threads()),
        time_limit=args.time_limit, gan_start=args.gan_start, gan_weight=args.gan_weight,
        lpips_weight=args.lpips_weight, seed=args.seed,
        command=" ".join(["georsic", *map(shlex.quote, sys.argv[1:])]))
    return _run_training(train_prior, cfg, args)


def _train_fusion(args, device: str) -> int:
    """Stage 4: HPIN's image scale on top of a trained prior (the rest frozen)."""
    import torch

    from georsic.train.prior_fusion import FusionTrainConfig, train_fusion

    if not args.cache:
        raise InputError("stage 4 needs --cache: the pair cache of `georsic train prior-cache`")
    cfg = FusionTrainConfig(
        out=args.out, cache=args.cache, init=args.init, width=args.fusion_width,
        steps=args.steps, batch=args.batch, patch=args.patch, lr=args.lr,
        lpips_weight=args.lpips_weight, gan_start=args.gan_start, gan_weight=args.gan_weight,
        device=device, threads=args.threads or (0 if device != "cpu" else torch.get_num_threads()),
        time_limit=args.time_limit, seed=args.seed,
        command=" ".join(["georsic", *map(shlex.quote, sys.argv[1:])]))
    return _run_training(train_fusion, cfg, args)


def _run_training(train, cfg, args) -> int:
    """Run ``train(cfg)`` with ``--pid-file`` held while it runs; bad data is a one-line error."""
    pid_file = Path(args.pid_file) if args.pid_file else None
    if pid_file:
        pid_file.write_text(f"{os.getpid()}\n")
    try:
        path = train(cfg)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(str(exc)) from None
    finally:
        if pid_file and pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()
    print(f"stage {args.stage} checkpoint: {path}")
    return 0


def _device(name: str) -> str:
    """cpu, cuda or auto (without importing the codec, which a GPU training machine lacks)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GeorsicError("device 'cuda' was asked for but no CUDA GPU is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise InputError(f"unknown device {name!r}; use auto, cpu or cuda")
    return name


def cmd_export_prior(args) -> int:
    from georsic.train.prior_export import export_prior

    try:
        entry = export_prior(args.run, args.out, args.model_id, make_default=args.default,
                             figures=args.figures, default_fidelity=args.fidelity)
    except (FileNotFoundError, ValueError) as exc:
        raise GeorsicError(str(exc)) from None
    print(f"{entry['id']}: {entry['file']} {entry['bytes'] / 1e6:.1f} MB sha256 "
          f"{entry['sha256'][:12]} in {args.out}")
    return 0


def cmd_prior_cache(args) -> int:
    import torch

    from georsic.train.prior_data import BENCHMARK_EXCLUDE, build_pair_cache

    torch.set_num_threads(args.threads)

    exclude = list(args.exclude) if args.exclude is not None else list(BENCHMARK_EXCLUDE)
    try:
        cache = build_pair_cache(args.data, args.out, exclude=exclude,
                                 regions_per_image=args.regions, region=args.region,
                                 between=args.between)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    print(f"pair cache: {cache}")
    return 0


def add_parsers(train: argparse._SubParsersAction) -> None:
    p = train.add_parser("prior-cache", help="decode training regions once with the default "
                                             "codec, for the prior's stages 2 and 3")
    p.add_argument("data", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="cache folder (resumes: done images stay)")
    p.add_argument("--exclude", nargs="*", default=None,
                   help="skip files whose name has these (default: the benchmark images)")
    p.add_argument("--region", type=int, default=256, help="region edge, pixels")
    p.add_argument("--regions", type=int, default=4, help="regions per image at most")
    p.add_argument("--between", type=int, default=1,
                   help="random quality levels between 0 and 2 added per region")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1)")
    p.set_defaults(func=cmd_prior_cache)

    p = train.add_parser("prior", help="train the Code-RSIC codebook prior, one stage a run")
    p.add_argument("data", nargs="*", help="image files or folders (stage 1; stage 2 builds its "
                                           "pair cache from them if it has none)")
    p.add_argument("--out", required=True, help="run folder (each stage resumes from its "
                                                "checkpoint there)")
    p.add_argument("--stage", choices=["1", "2", "3", "2,3", "4"], required=True,
                   help="1: VQGAN; 2: code lookup; 3: HPIN; 2,3: stages 2 and 3 as one run; "
                        "4: HPIN's image scale on a trained prior (the rest frozen)")
    p.add_argument("--init", help="stage 4: the installed prior to start from (model id; "
                                  "default: OUT's stage 3 checkpoint)")
    p.add_argument("--fusion-width", type=int, default=48,
                   help="stage 4: channels of the image-scale fusion network")
    p.add_argument("--exclude", nargs="*", default=None,
                   help="skip files whose name has these (default: the benchmark images)")
    p.add_argument("--cache", help="pair cache folder (default OUT/cache)")
    p.add_argument("--preset", choices=["cpu", "gpu"], default="cpu", help="widths")
    p.add_argument("--set", nargs="*", metavar="NAME=VALUE",
                   help="override preset widths, e.g. width=64 layers=6")
    p.add_argument("--steps", type=int, default=3000, help="total steps of this stage")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--gan-start", type=int, default=1500,
                   help="step from which the PatchGAN loss is on")
    p.add_argument("--gan-weight", type=float, default=0.05)
    p.add_argument("--lpips-weight", type=float, default=1.0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.add_argument("--time-limit", type=float, default=0.0,
                   help="stop after this many seconds of this run (a checkpoint is saved)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pid-file", help="write this process's id here while it trains (others "
                                      "pause it with SIGSTOP/SIGCONT; SIGTERM saves and stops)")
    p.set_defaults(func=cmd_train_prior)

    p = train.add_parser("prior-export", help="write a trained prior's weights and manifest "
                                              "entry")
    p.add_argument("run", help="the run folder of `georsic train prior`")
    p.add_argument("--out", default="resources/weights", help="weights folder")
    p.add_argument("--model-id", required=True)
    p.add_argument("--default", action="store_true", help="make it the default prior")
    p.add_argument("--figures", help="a JSON file of measured figures to record in the entry")
    p.add_argument("--fidelity", type=float, default=None,
                   help="the w recorded as this prior's default (default: the preset's)")
    p.set_defaults(func=cmd_export_prior)


def main(argv: list[str] | None = None) -> int:
    """``python -m georsic.train.prior_cli prior ...``: the prior's training commands alone,
    for a training machine that has torch but not the codec's or GIS packages."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(prog="georsic-train")
    add_parsers(parser.add_subparsers(dest="what", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GeorsicError as exc:
        print(f"georsic: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
