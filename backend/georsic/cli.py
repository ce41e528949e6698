"""GeoRSIC: learned compression of remote-sensing rasters, with their georeferencing.

Exit codes: 0 success, 1 general error, 2 bad input or usage, 3 output not writable
(or exists, without --overwrite), 4 corrupt or unsupported archive, 5 model weights missing,
6 some files of a batch failed, 7 verify --against found a pixel beyond the archive's bound
or another source than the one compressed, 8 verify --decode found a tile of an exact archive
(--exact) whose decoded pixels differ from the digest stored at compression, 129 hung up
(SIGHUP), 130 interrupted (SIGINT), 143 terminated (SIGTERM); an interrupted command leaves
no partial output behind.  Errors print one line on stderr; GEORSIC_DEBUG=1 (or --debug)
shows the traceback instead, for bug reports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from georsic import overviews
from georsic.batch import RASTER_SUFFIXES
from georsic.batch import find_inputs as _batch_inputs
from georsic.defaults import (
    DEFAULT_FIDELITY,
    DEFAULT_OVERLAP,
    DEFAULT_QUALITY,
    DEFAULT_TILE_SIZE,
)
from georsic.errors import (
    DigestError,
    GeorsicError,
    GeorsicWarning,
    InputError,
    lost_tiles_report,
)

BATCH_FAILED = 6
#: ``verify --against``: a pixel beyond the bound, or pixels that are not the source's.
AGAINST_FAILED = 7
#: ``verify --decode``: a tile of an exact archive decodes to pixels other than its digest's
#: (:class:`~georsic.errors.DigestError`).
DIGEST_FAILED = 8


class ProgressBar:
    """Units (tiles, or files of a batch) done / total and rate on stderr, over all workers
    of a cluster too; silent when quiet or not a terminal."""

    def __init__(self, label: str, quiet: bool = False, unit: str = "tiles") -> None:
        self.label = label
        self.unit = unit
        self.enabled = not quiet and sys.stderr.isatty()
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        filled = int(30 * done / max(total, 1))
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] "
                         f"{done}/{total} {self.unit}, {done / elapsed:.2f} {self.unit}/s")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _numbers(text: str, count: int, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count or not all(map(_finite, values)):
        raise InputError(f"{name} takes {count} comma-separated finite numbers, not {text!r}")
    return values


def _finite(value: float) -> bool:
    return value - value == 0.0  # False for nan and +-inf


def _add_codec_options(parser: argparse.ArgumentParser) -> None:
    _add_quality_options(parser)
    parser.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE,
                        help=f"tile edge, pixels ({DEFAULT_TILE_SIZE})")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP,
                        help=f"tile overlap, pixels ({DEFAULT_OVERLAP})")
    parser.add_argument("--model", default=None, help="model id (default: the shipped codec)")
    parser.add_argument("--refine", type=int, default=0, metavar="STEPS",
                        help="encoder-side latent refinement steps per tile: smaller files at "
                             "the same quality, slower encoding, same decoding (default 0: "
                             "off; benchmarks/refine.py measures it)")
    parser.add_argument("--exact", action="store_true",
                        help="an exact archive (format version 8): the same decoded pixels on "
                             "every machine (any CPU, thread count, CUDA), a digest of each "
                             "tile's pixels that verify --decode checks; decoding is several "
                             "times slower (docs/exact_synthesis.md)")


def _add_quality_options(parser: argparse.ArgumentParser) -> None:
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--quality", "-q", type=float, default=None,
                        help="0 (smallest) to 7 (best); fractions interpolate "
                             f"(default {DEFAULT_QUALITY:g})")
    chosen.add_argument("--target-psnr", type=float, metavar="DB",
                        help="instead of --quality: the lowest quality whose PSNR reaches DB "
                             "on this raster (found by coding samples of it)")
    chosen.add_argument("--target-bpp", type=float, metavar="BPP",
                        help="instead of --quality: the highest quality whose coded tiles "
                             "stay within BPP bits per pixel (the header's few hundred bytes "
                             "not counted)")


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overviews", default="source", metavar="source|auto|none|2,4,8",
                        help="overview levels of the decoded GeoTIFF: those of the compressed "
                             "raster (default), automatic down to 256 pixels, none, or these "
                             "factors")
    parser.add_argument("--cog", action="store_true",
                        help="write Cloud Optimized GeoTIFFs (GDAL's COG layout)")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


#: ``--workers`` with no number: one worker per core.
CORES = "cores"


def _whole_number(name: str):
    """An argparse ``type``: a whole number, else one ``georsic: error`` line (exit 2)."""

    def parse(text: str) -> int | str:
        if text == CORES:  # argparse passes --workers's const (no number given) through here
            return text
        try:
            return int(text)
        except ValueError:
            raise InputError(f"{name} takes a whole number, not {text!r}") from None

    return parse


def _add_cluster(parser: argparse.ArgumentParser) -> None:
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--workers", type=_whole_number("--workers"), nargs="?", const=CORES,
                        default=None, metavar="N",
                        help="run on a local Dask cluster of N (at least 1) worker processes "
                             "of one thread (N left out: one per core); prints its dashboard "
                             "address")
    chosen.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (its "
                             "workers need GeoRSIC and the files at the same paths)")
    parser.add_argument("--connect-timeout", type=float, default=None, metavar="SECONDS",
                        help="with --scheduler: give up when the scheduler has not answered "
                             "within SECONDS (default 10, or $GEORSIC_CONNECT_TIMEOUT)")


def _add_tiles_per_task(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tiles-per-task", type=_whole_number("--tiles-per-task"),
                        default=None, metavar="K",
                        help="with --workers/--scheduler: consecutive tiles in one task "
                             "(default: up to 8, fewer on a small raster); same output "
                             "whatever K")


def _check_cluster_args(args) -> None:
    """--workers, --scheduler, --connect-timeout and --tiles-per-task, checked before any
    cluster starts: one line and exit 2 for each mistake."""
    from georsic.parallel import check_tiles_per_task

    if args.workers not in (None, CORES) and args.workers < 1:
        raise InputError(f"--workers takes a whole number of at least 1, not {args.workers} "
                         "(leave the number out for one worker per core)")
    local = args.workers is None and args.scheduler is None
    if getattr(args, "tiles_per_task", None) is not None:
        if local:
            raise InputError("--tiles-per-task is for --workers or --scheduler; without a "
                             "cluster each tile is coded on its own")
        try:
            check_tiles_per_task(args.tiles_per_task)
        except InputError:
            raise InputError(f"--tiles-per-task takes a whole number of at least 1, not "
                             f"{args.tiles_per_task}") from None
    if args.connect_timeout is not None:
        if args.scheduler is None:
            raise InputError("--connect-timeout is for --scheduler")
        if not (0 < args.connect_timeout < float("inf")):
            raise InputError(f"--connect-timeout takes a positive number of seconds, not "
                             f"{args.connect_timeout:g}")
    if args.scheduler is not None:
        from georsic.cluster import check_scheduler

        check_scheduler(args.scheduler)


def _check_quality_args(args) -> None:
    """--quality, --target-psnr and --target-bpp, before any model loads."""
    from georsic.sampling import checked_quality, targeted

    if not targeted(args.quality, args.target_psnr, args.target_bpp):
        checked_quality(args.quality)


def _add_pyramid(p: argparse.ArgumentParser) -> None:
    """--pyramid of compress, and of estimate, which counts the same pyramid."""
    p.add_argument("--pyramid", default="auto", metavar="auto|none|F,F,...",
                   help="overview pyramid stored in the archive for in-place viewing: auto "
                        "(factors 4, 16, 64 ... down to at most 512 px), none, or factors "
                        "(default: auto)")


def _cluster(args):
    """The run's Dask client (or None), as :func:`georsic.cluster.connect` gives it."""
    from georsic.cluster import connect

    workers = 0 if args.workers == CORES else args.workers  # 0: connect's one per core
    return connect(workers, args.scheduler, quiet=args.quiet, debug=args.debug,
                   timeout=args.connect_timeout)


def _quality_kwargs(args) -> dict:
    return {"quality": args.quality, "target_psnr": args.target_psnr,
            "target_bpp": args.target_bpp}


def _report_fit(summary, quiet: bool, label: str = "") -> None:
    """Say on stderr which quality a target gave, and warn when it was out of reach."""
    fit = summary.fit
    if fit is None:
        return
    target = (f"PSNR {fit.target_psnr:g} dB" if fit.target_psnr is not None
              else f"{fit.target_bpp:g} bpp")
    measured = f"measured {fit.psnr:.2f} dB at {fit.bpp:.4f} bpp"
    if fit.reached:
        if not quiet:
            print(f"{label}quality {fit.quality:.2f} meets {target} ({measured})",
                  file=sys.stderr)
    else:
        print(f"{label}warning: {target} is out of reach; the nearest, quality "
              f"{fit.quality:g}, gives {measured}", file=sys.stderr)


def _add_bound_options(parser: argparse.ArgumentParser) -> None:
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--max-error", metavar="D[,D...]",
                        help="bounded error: every valid pixel within D of the source, in the "
                             "band's units (one value, or one per band); integer rasters up to "
                             "16 bits; tiles do not overlap")
    chosen.add_argument("--lossless", action="store_true",
                        help="bit-exact (--max-error 0); integer rasters up to 16 bits, "
                             "floating-point data is refused")
    chosen.add_argument("--target-ratio", type=float, metavar="R",
                        help="bounded error: the smallest bound (all bands) whose sample tiles "
                             "compress at least R times")
    parser.add_argument("--base", metavar="QUALITY|avifL|none",
                        help="with --max-error/--lossless: the learned base's quality, an "
                             "AVIF base at level L (uint8 or uint16 rasters, e.g. avif60), "
                             "or none (default: the smallest of none, 3, 5, 7 and, at bounds "
                             "of 4 and more (uint16: 32), three AVIF levels, on sample tiles; "
                             "--quality also fixes it)")


def _bound_kwargs(args) -> dict:
    """``max_error``/``lossless``/``quality`` for a bounded archive, {} for a normal one."""
    if args.max_error is None and not args.lossless and args.target_ratio is None:
        if args.base is not None:
            raise InputError("--base applies only with --max-error, --lossless or "
                             "--target-ratio")
        return {}
    if args.target_psnr is not None or args.target_bpp is not None:
        raise InputError("--target-psnr/--target-bpp cannot be combined with --max-error or "
                         "--lossless")
    kwargs: dict = {"lossless": True} if args.lossless else {}
    if args.target_ratio is not None:
        kwargs["target_ratio"] = args.target_ratio
    if args.max_error is not None:
        try:
            numbers = [float(v) for v in args.max_error.split(",")]
        except ValueError:
            raise InputError(f"--max-error takes a number or one per band separated by "
                             f"commas, not {args.max_error!r}") from None
        kwargs["max_error"] = numbers[0] if len(numbers) == 1 else numbers
    base = args.base if args.base is not None else args.quality
    if isinstance(base, str) and base.lower() != "none" and not base.lower().startswith("avif"):
        try:
            base = float(base)
        except ValueError:
            raise InputError(f"--base takes a quality, avif<level> or none, not "
                             f"{args.base!r}") from None
    kwargs["quality"] = base
    return kwargs


def cmd_compress(args) -> int:
    import georsic
    from georsic.archive import check_output
    from georsic.tiling import TileGrid

    bound = _bound_kwargs(args)
    if bound:
        _check_cluster_args(args)
        check_output(Path(args.output), args.overwrite, args.input)
        with _cluster(args) as client:
            summary = georsic.compress(args.input, args.output, **bound,
                                       tile_size=args.tile_size, model=args.model,
                                       refine=args.refine, overwrite=args.overwrite,
                                       client=client, tiles_per_task=args.tiles_per_task,
                                       progress=ProgressBar("compress", args.quiet))
        if not args.quiet:
            base = summary.base_name
            print(f"{summary.path}: {summary.bytes:,} bytes, {summary.bpp:.4f} bpp, "
                  f"{summary.tiles} tiles, max error {','.join(map(str, summary.max_error))}, "
                  f"base {base}, {summary.seconds:.1f} s")
        return 0
    _check_cluster_args(args)
    _check_quality_args(args)
    TileGrid.check(args.tile_size, args.overlap)
    check_output(Path(args.output), args.overwrite, args.input)
    with _cluster(args) as client:
        summary = georsic.compress(
            args.input, args.output, **_quality_kwargs(args), tile_size=args.tile_size,
            overlap=args.overlap, device=args.device, model=args.model, refine=args.refine,
            overwrite=args.overwrite, client=client, tiles_per_task=args.tiles_per_task,
            progress=ProgressBar("compress", args.quiet), pyramid_levels=args.pyramid,
            exact=args.exact)
    _report_fit(summary, args.quiet)
    if not args.quiet:
        print(f"{summary.path}: {summary.bytes:,} bytes, {summary.bpp:.4f} bpp, "
              f"{summary.tiles} tiles, quality {summary.quality:.2f}, {summary.seconds:.1f} s")
        if summary.pyramid_factors:
            print(f"pyramid: factors {', '.join(map(str, summary.pyramid_factors))}, "
                  f"{summary.pyramid_bytes:,} bytes ({100 * summary.pyramid_share:.2f} % of "
                  "the archive)")
    return 0


def _decompress_kwargs(args) -> dict:
    from rasterio.windows import Window

    kwargs = {"device": args.device, "prior": args.prior, "fidelity": args.fidelity,
              "ignore_errors": args.ignore_errors, "overviews": overviews.parse(args.overviews),
              "cog": args.cog, "overwrite": args.overwrite}
    if args.window:
        values = _numbers(args.window, 4, "--window")
        if not all(v == int(v) for v in values):
            raise InputError(f"--window takes whole pixel numbers COL,ROW,WIDTH,HEIGHT, not "
                             f"{args.window}")
        col, row, width, height = (int(v) for v in values)
        if width <= 0 or height <= 0:
            raise InputError(f"--window {args.window}: WIDTH and HEIGHT must be positive")
        kwargs["window"] = Window(col, row, width, height)
    if args.bounds:
        kwargs["bounds"] = _numbers(args.bounds, 4, "--bounds")
        kwargs["bounds_crs"] = args.bounds_crs
    return kwargs


def _check_prior_args(args) -> None:
    """--prior and --fidelity: a fidelity without the prior, or an empty model name, is a
    mistake to say, not to ignore."""
    from georsic.prior.restore import check_fidelity

    if args.prior == "":
        raise InputError("--prior= names no model; give --prior alone for the default prior, "
                         "or --prior MODEL (georsic models lists them)")
    if getattr(args, "fidelity_given", False) and args.prior is False:
        raise InputError(f"--fidelity {args.fidelity:g} weighs the codebook prior, which is "
                         "off; add --prior, or leave --fidelity out")
    check_fidelity(args.fidelity)


def cmd_decompress(args) -> int:
    import georsic
    from georsic.archive import check_output

    _check_cluster_args(args)
    _check_prior_args(args)
    kwargs = _decompress_kwargs(args)
    check_output(Path(args.output), args.overwrite, args.input)
    lost: list[str] = []
    with _cluster(args) as client:
        path = georsic.decompress(args.input, args.output, progress=ProgressBar(
            "decompress", args.quiet), errors=lost, client=client,
            tiles_per_task=args.tiles_per_task, **kwargs)
    for line in lost_tiles_report(lost):
        print(f"georsic: warning: {line}", file=sys.stderr)
    if not args.quiet:
        print(f"{path}")
    return 0


def _verify_inputs(inputs: list[str], recursive: bool) -> list[tuple[str, str]]:
    """(what to open, its name) of each archive to verify: URLs as given, local files and
    the archives in local folders."""
    from georsic.remote import is_url, url_name

    found: list[tuple[str, str]] = []
    for item in inputs:
        if is_url(item):
            found.append((item, url_name(item)))
        else:
            found.extend((str(path), path.name)
                         for path, _ in _batch_inputs([item], (".grsc",), recursive))
    return found


def _verify_against(args) -> int:
    import georsic
    from georsic.bounded import verify_against

    if len(args.inputs) != 1:
        raise InputError("--against takes one archive")
    with georsic.open(args.inputs[0]) as archive:
        check = verify_against(archive, args.against,
                               progress=ProgressBar("verify", args.quiet))
    good = check.ok and check.same_source
    for line in check.lines():
        if not args.quiet or not good:
            print(f"{args.inputs[0]}: {line}", file=sys.stdout if good else sys.stderr)
    return 0 if good else AGAINST_FAILED


def cmd_verify(args) -> int:
    import georsic

    if args.against:
        return _verify_against(args)
    archives = _verify_inputs(args.inputs, args.recursive)
    if not archives:
        raise InputError("no archives found")
    codes: set[int] = set()
    for path, name in archives:
        try:
            with georsic.open(path) as archive:
                problems = archive.verify(decode=args.decode, device=args.device,
                                          progress=ProgressBar(f"verify {name}",
                                                               args.quiet or not args.decode))
                checked = (f"{archive.tile_count} tile(s) {'decoded' if args.decode else 'intact'}"
                           f", weights of {archive.model_id} installed")
                records = archive._reader.tile_count
                if args.decode and archive.exact:
                    matched = records - sum(isinstance(p, DigestError) for p in problems)
                    checked += f"; pixel digests: {matched} of {records} tile(s) matched"
                elif args.decode and archive.bounded is None:
                    checked += (f"; the archive holds no pixel digests (format version "
                                f"{archive._reader.version}; compress with --exact for them)")
        except GeorsicError as exc:  # missing, not an archive, header or index damaged
            problems = [exc]
        if not problems:
            if not args.quiet:
                print(f"{path}: ok ({checked})")
            continue
        codes.update(problem.exit_code for problem in problems)
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    # damaged archives first, then pixels other than the encoder's, missing weights, files
    return next((code for code in (4, DIGEST_FAILED, 5, 2, 1) if code in codes), 0)


def cmd_info(args) -> int:
    import georsic

    with georsic.open(args.input) as archive:
        if args.json:
            print(json.dumps({**archive.header, "bytes": archive._reader.size,
                              "bpp": archive.bpp}, indent=2))
        else:
            print(archive.describe())
    return 0


def cmd_vrt(args) -> int:
    from georsic.vrt import export_lines, write_vrt

    path = write_vrt(args.input, args.output, prior=args.prior,
                     fidelity=args.fidelity if args.prior else None, overwrite=args.overwrite)
    print(f"# {path}: open it in GDAL, rasterio or QGIS with this environment")
    print("\n".join(export_lines()))
    return 0


def cmd_stac(args) -> int:
    import georsic
    from georsic.stac import check_datetime, stac_item

    when = check_datetime(args.datetime) if args.datetime else None  # before any request
    with georsic.open(args.input) as archive:
        item = stac_item(archive, href=args.href, item_id=args.id, datetime=when)
    print(json.dumps(item, indent=2))
    return 0


def cmd_models(args) -> int:
    from georsic.errors import WeightsError
    from georsic.weights import SEARCHED, default_model_id, installed_models, verify_entry

    models = installed_models()
    if not models:
        raise WeightsError(f"no models are installed (looked in {SEARCHED})")
    default = default_model_id()
    try:
        default_prior = default_model_id("prior")
    except WeightsError:
        default_prior = None
    try:
        default_correction = default_model_id("correction")
    except WeightsError:
        default_correction = None
    problems = []
    for entry in models:
        training = entry.info.get("training", {})
        steps = training.get("total_steps", training.get("steps", "?"))
        trained = f"{steps} steps" if entry.kind != "correction" else \
            f"{training.get('tables', '?')} tables"
        size = f"{entry.path.stat().st_size / 1e6:.1f} MB" if entry.path.is_file() else "missing"
        mark = {default: "*", default_prior: "+", default_correction: "~"}.get(entry.id, " ")
        dtype = entry.info.get("dtype", "uint16" if entry.kind == "correction" else "?")
        line = (f"{mark} {entry.id:<17} {entry.sha256[:12]}  "
                f"{dtype:<8} {size:>8}  {trained}  {entry.path}")
        if args.verify:
            problem = verify_entry(entry)
            line += f"  {problem or 'ok'}"
            if problem:
                problems.append(f"{entry.id}: {problem}")
        print(line)
    print("* default codec" + ("; + default prior" if default_prior else "")
          + ("; ~ default correction model" if default_correction else ""))
    if problems:
        raise WeightsError("; ".join(problems))
    return 0


def cmd_estimate(args) -> int:
    import georsic

    _check_quality_args(args)  # a wrong quality is the command's mistake, not each file's
    from georsic import pyramid

    pyramid.resolve(args.pyramid, 2**31, 2**31)  # so is a misspelt --pyramid
    inputs = [path for path, _ in _batch_inputs(args.inputs, RASTER_SUFFIXES, args.recursive)]
    if not inputs:
        raise GeorsicError("no input files found")
    total_bytes = total_pixels = failed = 0
    for path in inputs:
        try:
            guess = georsic.estimate(path, **_quality_kwargs(args), device=args.device,
                                     model=args.model, pyramid_levels=args.pyramid)
        except GeorsicError as exc:
            failed += 1
            print(f"{path}: error: {exc}", file=sys.stderr)
            continue
        total_bytes += guess.bytes
        total_pixels += guess.pixels
        coarse = f"; pyramid about {guess.pyramid_bytes:,} bytes" if guess.pyramid_bytes else ""
        print(f"{path}: quality {guess.quality:.2f}, about {guess.bytes:,} bytes "
              f"({guess.bpp:.4f} bpp), PSNR {guess.psnr:.2f} dB{coarse}")
    if len(inputs) > 1 and total_pixels:
        print(f"{len(inputs) - failed} raster(s): about {total_bytes:,} bytes in all "
              f"({8 * total_bytes / total_pixels:.4f} bpp)")
    return BATCH_FAILED if failed else 0


def cmd_compare(args) -> int:
    from georsic.metrics import compare_rasters

    result = compare_rasters(args.reference, args.test)
    lines = [f"PSNR {result['psnr']:.2f} dB over {result['valid_pixels']:,} valid pixels "
             f"(peak {result['peak']:g})"]
    lines += [f"  band {i}: PSNR {v:.2f} dB" for i, v in enumerate(result["band_psnr"], 1)]
    if args.archive:
        import georsic

        with georsic.open(args.archive) as archive:
            lines.insert(0, f"archive {archive.path}: {archive._reader.size:,} bytes, "
                            f"{archive.bpp:.4f} bpp")
    print("\n".join(lines))
    return 0


def cmd_batch(args) -> int:
    from georsic import batch
    from georsic.tiling import TileGrid

    _check_cluster_args(args)
    overview_spec = overviews.parse(args.overviews)
    if args.action == "compress":
        _check_quality_args(args)
        TileGrid.check(args.tile_size, args.overlap)
        run, options = batch.batch_compress, {
            **_quality_kwargs(args), "tile_size": args.tile_size, "overlap": args.overlap,
            "device": args.device, "model": args.model, "refine": args.refine,
            **({"exact": True} if args.exact else {}),
            **_bound_kwargs(args)}
    else:
        run, options = batch.batch_decompress, {"device": args.device,
                                                "overviews": overview_spec, "cog": args.cog}
    counts = {"done": 0, "skipped": 0, "failed": 0}
    bar = ProgressBar(f"batch {args.action}", args.quiet, unit="files")

    def report(result) -> None:
        counts[result.status] += 1
        label = f"[{sum(counts.values())}] {result.source}"
        if result.status == "failed":
            print(f"{label}: error: {result.message}", file=sys.stderr)
        elif result.status == "skipped":
            if not args.quiet:
                print(f"{label}: skipped, {result.message}", file=sys.stderr)
        elif result.summary is not None:
            _report_fit(result.summary, args.quiet, f"{label}: ")
            if not args.quiet:
                print(f"{label} -> {result.target}: {result.summary.bpp:.4f} bpp, quality "
                      f"{result.summary.quality:.2f}")
        elif not args.quiet:
            print(f"{label} -> {result.target}: ok")

    try:
        with _cluster(args) as client:
            results = run(args.inputs, args.out_dir, recursive=args.recursive,
                          overwrite=args.overwrite, client=client, progress=bar,
                          on_result=report, **options)
    except KeyboardInterrupt as exc:
        # counted on disk once the cluster is closed: a worker may have finished a file whose
        # result never reached this process
        on_disk = batch.complete_outputs(args.inputs, args.out_dir, args.action,
                                         recursive=args.recursive)
        print(f"georsic: batch stopped: {counts['done']} done, {counts['skipped']} skipped, "
              f"{counts['failed']} failed before the interruption, the rest not processed",
              file=sys.stderr)
        exc.on_disk = (f"{len(on_disk)} complete output(s) in {args.out_dir} (a rerun skips "
                       "them), no partial output left")
        raise
    if not args.quiet:
        print(f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed")
    return BATCH_FAILED if any(r.status == "failed" for r in results) else 0


def cmd_train_codec(args) -> int:
    from georsic.train.codec import CodecTrainConfig, train_codec
    from georsic.train.export import export_codec, measure_rd
    from georsic.weights import WeightBits

    try:
        bits = WeightBits.parse(args.weight_bits)
    except ValueError as exc:
        raise InputError(f"--weight-bits: {exc}") from None
    if bits != WeightBits() and args.weights_dtype != "int8":
        raise InputError("--weight-bits needs --weights-dtype int8")
    cfg = CodecTrainConfig(
        data=args.data, out=args.out, exclude=args.exclude, steps=args.steps, batch=args.batch,
        patch=args.patch, lr=args.lr, N=args.N, M=args.M, lambdas=args.lambdas, init=args.init,
        device=args.device, threads=args.threads, time_limit=args.time_limit,
        gray_fraction=args.gray_fraction)
    checkpoint = train_codec(cfg)
    if args.export:
        import torch

        training = {"hardware": args.hardware} if args.hardware else None
        entry = export_codec(checkpoint, args.export, args.model_id, training=training,
                             dtype=getattr(torch, args.weights_dtype),
                             bits=bits)
        print(f"exported {entry['id']} ({entry['sha256'][:12]}) to {args.export}")
        if args.rd_images:
            for row in measure_rd(args.export, args.model_id, args.rd_images):
                print(f"{row['image']} quality {row['quality']}: {row['bpp']:.4f} bpp, "
                      f"{row['psnr']:.2f} dB")
    return 0


def cmd_train_distill(args) -> int:
    from georsic.train.distill import DistillConfig, export_distilled, train_distill

    cfg = DistillConfig(
        data=args.data, out=args.out, teacher=args.teacher, part=args.part, width=args.width,
        exclude=args.exclude, steps=args.steps, batch=args.batch, patch=args.patch, lr=args.lr,
        threads=args.threads, time_limit=args.time_limit, device=args.device,
        init=args.init or "prune", start=args.start)
    others = [Path(run) / "checkpoint.pt" for run in args.with_runs]
    missing = [str(c) for c in others if not c.is_file()]
    if missing:  # said before training, not after
        raise InputError(f"--with: no checkpoint {missing[0]}")
    if others and not args.export:
        raise InputError("--with needs --export")
    try:
        checkpoint = train_distill(cfg)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if args.export:
        try:
            entry = export_distilled([checkpoint, *others], args.model_id, args.export,
                                     hardware=args.hardware)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        parts = ", ".join(f"{r['part']} of width {r['width']} ({r['steps']} steps)"
                          for r in entry["training"]["parts"])
        print(f"wrote {entry['file']} ({entry['bytes']:,} bytes, sha256 "
              f"{entry['sha256'][:12]}): {entry['id']}, {parts} distilled from {args.teacher}")
    return 0


def cmd_train_exact(args) -> int:
    from georsic.train.exact import export_exact

    entry = export_exact(args.init, args.data, args.model_id, args.exclude, args.out,
                         make_default=not args.no_default)
    print(f"wrote {entry['file']} ({entry['bytes']:,} bytes, sha256 {entry['sha256'][:12]}): "
          f"{entry['id']}, exact entropy path calibrated on "
          f"{len(entry['exact_calibration']['images'])} images in "
          f"{entry['exact_calibration']['seconds']} s")
    return 0


def cmd_train_exact_synthesis(args) -> int:
    from georsic.train.synthesis_calibration import export_synthesis_calibration

    record = export_synthesis_calibration(args.data, args.model, args.exclude)
    print(f"{args.model or 'default model'}: {record['synthesis']} calibrated on "
          f"{len(record['images'])} images in {record['seconds']} s (manifest updated)")
    return 0


def cmd_train_correction(args) -> int:
    from georsic.train.correction import train_correction

    try:
        entry = train_correction(args.data, args.exclude, args.model_id, args.out,
                                 make_default=not args.no_default)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    print(f"wrote {entry['file']} ({entry['bytes']:,} bytes, sha256 {entry['sha256'][:12]}): "
          f"{entry['id']}, {entry['training']['values']:,} residuals of "
          f"{len(entry['training']['images'])} images in {entry['training']['seconds']} s")
    return 0


def cmd_train_pack(args) -> int:
    from georsic.train.pack import write_pack

    if args.patch < 64 or args.max_mib <= 0:
        raise InputError("--patch must be at least 64 and --max-mib positive")
    try:
        summary = write_pack(args.data, args.out, tuple(args.exclude), args.patch,
                             int(args.max_mib * 2**20), args.seed, args.format)
    except (FileExistsError, ValueError) as exc:
        raise InputError(str(exc)) from None
    print(f"{summary.crops} crops of {args.patch} px from {summary.sources} images, "
          f"{summary.bytes / 2**20:.1f} MiB, in {summary.folder}")
    return 0


class _Given(argparse.Action):
    """Store the value and note that it was given (``NAME_given``), for options that only
    mean something beside another."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def _prior_model(text: str) -> str:
    """An argparse ``type`` for ``--prior MODEL``: refuses a file name, which is what
    ``decompress --prior IN.grsc OUT.tif`` gives it (``--prior`` takes the next word)."""
    if text.lower().endswith((".grsc", ".tif", ".tiff")) or os.sep in text or \
            os.path.exists(text):
        raise InputError(f"--prior took {text!r} as a prior model name, which looks like a "
                         f"file; put --prior after the input and output (decompress IN.grsc "
                         f"OUT.tif --prior) or name the model (--prior=MODEL)")
    return text


def build_parser(benchmarks: bool = True) -> argparse.ArgumentParser:
    """The command line's parser.  ``benchmarks=False`` leaves out the subcommands of
    ``georsic bench``, whose modules import scipy and rasterio: ``main`` builds them only for
    ``georsic bench``, so that ``--help`` and ``info`` start faster."""
    from georsic import __version__

    parser = argparse.ArgumentParser(
        prog="georsic", description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"georsic {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks (as GEORSIC_DEBUG=1 does), for bug reports")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compress", help="compress a raster into a .grsc archive")
    p.add_argument("input")
    p.add_argument("output")
    _add_codec_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    _add_bound_options(p)
    _add_common(p)
    _add_cluster(p)
    _add_tiles_per_task(p)
    _add_pyramid(p)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help="decode an archive to a GeoTIFF")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--window", help="COL,ROW,WIDTH,HEIGHT in pixels")
    p.add_argument("--bounds", help="LEFT,BOTTOM,RIGHT,TOP (archive CRS unless --bounds-crs)")
    p.add_argument("--bounds-crs", help="CRS of --bounds, e.g. EPSG:4326")
    p.add_argument("--prior", nargs="?", const=True, default=False, metavar="MODEL",
                   type=_prior_model,
                   help="decode with the codebook prior (the default prior, or the prior "
                        "model MODEL, e.g. code-rsic-s; georsic models lists them); it helps "
                        "natural aerial textures at low qualities, not saturated map colours "
                        "(docs/prior.md)")
    p.add_argument("--fidelity", type=float, default=DEFAULT_FIDELITY, action=_Given,
                   help="with --prior: fidelity weight w, 0 (sharpest) to 1 (closest to the "
                        f"decoded image); default {DEFAULT_FIDELITY:g}")
    p.add_argument("--ignore-errors", action="store_true",
                   help="write corrupt or missing tiles as no-data and go on, naming each "
                        "(an archive cut short keeps the tiles that arrived)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    _add_output_options(p)
    _add_common(p)
    _add_cluster(p)
    _add_tiles_per_task(p)
    p.set_defaults(func=cmd_decompress)

    p = sub.add_parser("info", help="describe an archive")
    p.add_argument("input", help="archive: a file or a URL (https://, s3://, gs://, az://)")
    p.add_argument("--json", action="store_true", help="the whole header as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("vrt", help="write a VRT that opens an archive in place in GDAL, "
                       "rasterio or QGIS (no decompressed copy), and print the environment "
                       "it needs")
    p.add_argument("input", help="the .grsc archive")
    p.add_argument("output", nargs="?", help="the VRT (default: the archive's name, .vrt)")
    p.add_argument("--prior", nargs="?", const=True, default=False, metavar="MODEL",
                   help="decode through the codebook prior (the default prior, or MODEL)")
    p.add_argument("--fidelity", type=float, default=0.75,
                   help="prior fidelity weight w in [0, 1] (with --prior; default 0.75)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(func=cmd_vrt)

    p = sub.add_parser("stac", help="a STAC Item for an archive (JSON on stdout): footprint, "
                                    "projection, model, quality and bpp")
    p.add_argument("input", help="archive: a file or a URL")
    p.add_argument("--href", help="the asset's href (default: the URL, or the absolute path)")
    p.add_argument("--id", help="the item id (default: the file name without suffix)")
    p.add_argument("--datetime", help="RFC 3339 acquisition time (default: the source's "
                   "TIFFTAG_DATETIME, else the archive's modification time)")
    p.set_defaults(func=cmd_stac)

    p = sub.add_parser("verify", help="check archives: every tile's checksum and the weights "
                                      "they need (--decode: decode every tile too)")
    p.add_argument("inputs", nargs="+", help="archives or folders of them")
    p.add_argument("--decode", action="store_true",
                   help="also decode every tile (as slow as decompressing) and, in an exact "
                        "archive (--exact), compare each tile's pixels with the digest stored "
                        "at compression: a tile that differs is named and the exit status is "
                        "8; other archives hold no digests (said so)")
    p.add_argument("--recursive", "-r", action="store_true",
                   help="take the archives in folders' subfolders too")
    p.add_argument("--against", metavar="SOURCE",
                   help="a bounded archive: decode it and prove every valid pixel of every "
                        "band within its bound of SOURCE (naming the worst), and say whether "
                        "SOURCE is the raster it was made from (exit 7 if not)")
    _add_common(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("models", help="list the installed models (id, weights hash, size)")
    p.add_argument("--verify", action="store_true",
                   help="check every weights file against its manifest sha256")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("estimate", help="the archive size and PSNR to expect, writing nothing")
    p.add_argument("inputs", nargs="+", help="raster files or folders")
    _add_quality_options(p)
    p.add_argument("--model", default=None, help="model id (default: the shipped codec)")
    p.add_argument("--recursive", "-r", action="store_true", help="whole folder trees")
    _add_pyramid(p)
    _add_common(p)
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("compare", help="PSNR of a decoded raster against its source")
    p.add_argument("reference")
    p.add_argument("test")
    p.add_argument("--archive", help="also print this archive's size and bpp")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("batch", help="compress or decompress many files")
    p.add_argument("action", choices=["compress", "decompress"])
    p.add_argument("inputs", nargs="+", help="files or folders")
    p.add_argument("--out-dir", "-o", required=True)
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs that exist (else they are skipped)")
    p.add_argument("--recursive", "-r", action="store_true",
                   help="take the files in folders' subfolders too, and keep the tree below the "
                        "output folder")
    _add_codec_options(p)
    _add_bound_options(p)
    _add_output_options(p)
    _add_common(p)
    _add_cluster(p)
    p.set_defaults(func=cmd_batch)

    train = sub.add_parser("train", help="train models").add_subparsers(dest="what",
                                                                         required=True)
    p = train.add_parser("codec", help="train (or fine-tune) the ELIC codec")
    p.add_argument("data", nargs="+", help="image files or folders; one listed k times is "
                                           "sampled k times as often")
    p.add_argument("--out", required=True, help="run folder (resumes if it has a checkpoint)")
    p.add_argument("--exclude", nargs="*", default=[], help="skip files whose name has these")
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--M", type=int, default=128)
    p.add_argument("--lambdas", type=float, nargs="+",
                   help="rate-distortion trade-off of each quality level, lowest first "
                        "(default: ELIC's 8 levels 0.0004 ... 0.0483)")
    p.add_argument("--init", help="start from these weights (.safetensors), to fine-tune")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--gray-fraction", type=float, default=0.0,
                   help="share of training crops turned to one luminance band repeated three "
                        "times, as the codec sees panchromatic bands (0 to 1)")
    p.add_argument("--time-limit", type=float, default=0.0, help="stop after this many seconds")
    p.add_argument("--export", help="write weights + manifest entry to this folder at the end")
    p.add_argument("--model-id", default="elic-vr-custom",
                   help="id (and file name) of the exported model; a new id keeps the shipped "
                        "models, which older archives need, untouched")
    p.add_argument("--hardware", help="what it was trained on, recorded in the manifest "
                                      "(e.g. '2-core CPU, 2 h')")
    p.add_argument("--weights-dtype", choices=["int8", "float16", "float32"],
                   default="float16",
                   help="precision the exported parameters are stored in (int8: layer weights "
                        "as int8 with per-channel scales, the rest float16)")
    p.add_argument("--weight-bits", default="8", metavar="BITS[,NAME=BITS...]",
                   help="with --weights-dtype int8: bits (2 to 8) of the stored integers, and "
                        "of layers whose name contains NAME (e.g. '7,channel_context=5'); "
                        "fewer bits store smaller in git, at some cost in rate-distortion")
    p.add_argument("--rd-images", nargs="*", default=[],
                   help="after --export, measure rate-distortion on these (held-out) images and "
                        "record it in the manifest")
    p.set_defaults(func=cmd_train_codec)

    p = train.add_parser("distill", help="distil a narrower transform (decoder or encoder) "
                         "from shipped weights, their entropy model kept: faster coding")
    p.add_argument("data", nargs="+", help="image files or folders (as for train codec)")
    p.add_argument("--out", required=True, help="run folder (resumes if it has a checkpoint)")
    p.add_argument("--teacher", default="elic-vr-s-v5", help="model id whose decoder is distilled")
    p.add_argument("--part", choices=["synthesis", "analysis", "joint"], default="synthesis",
                   help="the transform to distil: g_s (decoder) or g_a (encoder); joint: both "
                        "students of --start fine-tuned together on the rate-distortion loss")
    p.add_argument("--start", metavar="MODEL_ID",
                   help="with --part joint: the exported model holding both students")
    p.add_argument("--width", type=int, default=32, help="channels of the new transform (32)")
    p.add_argument("--device", default="auto", help="cuda where there is one (auto), or cpu")
    p.add_argument("--init", choices=["prune", "random"],
                   help="how a new student starts: cut from the teacher (prune, the default) "
                        "or at random")
    p.add_argument("--exclude", nargs="*", default=[], help="skip files whose name has these")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--time-limit", type=float, default=0.0, help="stop after this many seconds")
    p.add_argument("--export", help="write weights + manifest entry to this folder at the end")
    p.add_argument("--model-id", default="elic-vr-s-custom", help="id of the exported model")
    p.add_argument("--with", dest="with_runs", nargs="*", default=[], metavar="RUN",
                   help="with --export: also put in the students of these run folders (the "
                        "other part, distilled from the same teacher)")
    p.add_argument("--hardware", help="what it was trained on, recorded in the manifest")
    p.set_defaults(func=cmd_train_distill)

    p = train.add_parser("exact", help="calibrate the exact integer entropy path of shipped "
                         "weights and add them as a new model")
    p.add_argument("data", nargs="+", help="calibration image files or folders")
    p.add_argument("--init", required=True, help="the weights file (listed in a manifest)")
    p.add_argument("--model-id", required=True, help="id of the new model")
    p.add_argument("--exclude", nargs="*", default=[], help="leave out names containing these")
    p.add_argument("--out", help="weights folder (default: the one of --init)")
    p.add_argument("--no-default", action="store_true", help="do not make it the default")
    p.set_defaults(func=cmd_train_exact)

    p = train.add_parser("exact-synthesis", help="calibrate the exact synthesis of shipped "
                         "weights once for every archive (written into their manifest entry)")
    p.add_argument("data", nargs="+", help="calibration image files or folders")
    p.add_argument("--model", help="model id (default: the default model)")
    p.add_argument("--exclude", nargs="*", default=[], help="leave out names containing these")
    p.set_defaults(func=cmd_train_exact_synthesis)

    p = train.add_parser("correction", help="train the context model of bounded archives' "
                         "correction layer (a table of CDFs, written with its manifest entry)")
    p.add_argument("data", nargs="+", help="training image files or folders")
    p.add_argument("--exclude", nargs="*", default=[], help="leave out names containing these")
    p.add_argument("--model-id", default="correction-ctx-v1", help="id of the new model")
    p.add_argument("--out", help="weights folder (default: the first one searched)")
    p.add_argument("--no-default", action="store_true", help="do not make it the default")
    p.set_defaults(func=cmd_train_correction)

    p = train.add_parser("pack", help="write random crops of training data within a size "
                                      "budget, to carry to a GPU machine")
    p.add_argument("data", nargs="+", help="image files or folders (as for train codec)")
    p.add_argument("--out", required=True, help="new or empty folder for the pack")
    p.add_argument("--exclude", nargs="*", default=[], help="skip files whose name has these")
    p.add_argument("--patch", type=int, default=384, help="crop edge, pixels (384)")
    p.add_argument("--max-mib", type=float, default=40.0,
                   help="size budget, MiB (40: what fits beside the checkout and the wheels in "
                        "a 64 MiB upload once the older weights are moved out)")
    p.add_argument("--seed", type=int, default=0,
                   help="another seed, other crops (a second pack for a second call)")
    p.add_argument("--format", choices=["webp", "png"], default="webp",
                   help="lossless format of the crops (webp: about 30 %% smaller than png)")
    p.set_defaults(func=cmd_train_pack)

    from georsic.train.prior_cli import add_parsers as add_prior_parsers

    add_prior_parsers(train)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="what", required=True)
    if not benchmarks:
        _plain_help(parser)
        return parser
    from georsic.bench import memory, seams

    memory.add_parser(bench)
    from georsic.bench import scale

    scale.add_parser(bench)
    seams.add_parser(bench)
    from georsic.bench import speed

    speed.add_parser(bench)
    from georsic.bench import view

    view.add_parser(bench)
    try:
        from georsic.bench import fuzz
    except ImportError:  # as rd below: the fuzzer needs rasterio
        pass
    else:
        fuzz.add_parser(bench)
    try:
        from georsic.bench import prior as prior_bench
        from georsic.bench import rd
    except ImportError:  # a machine without rasterio (training only) has no RD benchmark
        pass
    else:
        rd.add_parser(bench)
        prior_bench.add_parser(bench)
        from georsic.bench import bounded as bounded_bench

        bounded_bench.add_parser(bench)
    _plain_help(parser)
    return parser


_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc):`~?([^`]+)`")


def _plain(text: str | None) -> str | None:
    """Help text without reST markup (``code``, :func:`name`)."""
    if not text:
        return text
    return _ROLE.sub(r"\1", text).replace("``", "")


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Strip reST markup from the help of ``parser`` and of all its subcommands (their
    descriptions often come from module docstrings)."""
    parser.description = _plain(parser.description)
    parser.epilog = _plain(parser.epilog)
    for action in parser._actions:
        action.help = _plain(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = _plain(choice.help)
            for sub in action.choices.values():
                _plain_help(sub)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so that every ``finally`` removes its
    temporary files."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate(signum: int, frame) -> None:
    raise Terminated(signum)


class _DaskCancelRace(logging.Filter):
    """distributed's ``sync()`` (2026.8) cancels on Ctrl-C through a callback that reads its
    ``future`` before it may be set; tornado then logs a ``NameError`` with its traceback
    beside the one-line interrupt message.  Those records are dropped (``--debug`` keeps
    them); every other callback error still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, NameError) and "'future'" in str(error))


def _quiet_libraries(debug: bool) -> None:
    """GDAL's log lines and rasterio's warnings stay out of the one-line error."""
    if debug:
        return
    tornado = logging.getLogger("tornado.application")
    if not any(isinstance(f, _DaskCancelRace) for f in tornado.filters):
        tornado.addFilter(_DaskCancelRace())
    logging.getLogger("rasterio").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module="rasterio")
    try:
        from rasterio.errors import NotGeoreferencedWarning
    except ImportError:  # a training-only machine without rasterio
        return
    warnings.simplefilter("ignore", NotGeoreferencedWarning)


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Each GeorsicWarning (something of the source not kept) as one ``georsic: warning:``
    line on stderr, every time; other warnings as Python shows them."""
    with warnings.catch_warnings():
        show = warnings.showwarning

        def one_line(message, category, filename, lineno, file=None, line=None) -> None:
            if issubclass(category, GeorsicWarning):
                print(f"georsic: warning: {message}", file=sys.stderr)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = one_line
        warnings.simplefilter("always", GeorsicWarning)
        yield


def _leave(code: int) -> int:
    """After an interrupt (temporaries already removed), exit without waiting for tile worker
    threads: one may wait forever on a future whose lock the interrupt left held."""
    import threading

    if any(t is not threading.main_thread() and not t.daemon and t.is_alive()
           for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _gdal_env():
    """rasterio's GDAL environment, whose error handler sends GDAL's and PROJ's messages to
    logging (silenced above) instead of printing them beside the one-line error.  GDAL's
    block cache is sized by each run to its raster (:mod:`georsic.blockcache`) unless
    ``GDAL_CACHEMAX`` is set."""
    try:
        import rasterio
    except ImportError:  # a training-only machine
        return contextlib.nullcontext()
    return rasterio.Env()


def _command(argv: list[str]) -> str | None:
    """The subcommand's name in ``argv`` (the top-level options take no values)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


#: glibc's mmap threshold (bytes) for the command line's runs, unless the user sets
#: ``MALLOC_MMAP_THRESHOLD_``: arrays of a tile's size get pages of their own.
MMAP_THRESHOLD = 8 * 2**20


def _fixed_mmap_threshold() -> None:
    """Give allocations of :data:`MMAP_THRESHOLD` and more their own pages, returned when
    freed.  glibc's threshold otherwise rises to the largest block freed, tile-sized arrays
    then come from the heaps of the tile threads, whose free space fragments and grows over a
    run: a 67 MP decode on the AVX2 class peaked at 2,094 MiB, 1,910 MiB with this (georsic
    bench memory, docs/speed.md).  Dask workers started from here inherit the variable."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or not sys.platform.startswith("linux"):
        return
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, MMAP_THRESHOLD)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


#: The commands that run the codec, for which :func:`_huge_pages` starts the process again.
CODEC_COMMANDS = frozenset({"compress", "decompress", "estimate", "batch", "train", "bench"})
#: glibc's tunable that has malloc ask for transparent huge pages (glibc 2.35 and later).
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def _transparent_huge_pages() -> str:
    """The kernel's transparent-huge-page mode (``always``, ``madvise``, ``never``; ``""``
    where it cannot be read)."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return ""
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else ""


def _huge_pages() -> None:
    """Start this process again with malloc asking for transparent huge pages, where the
    kernel gives them only on request (``madvise``) and ``GLIBC_TUNABLES`` does not already
    say: a tile's transforms allocate each layer's output anew, tile-sized arrays get pages of
    their own (:func:`_fixed_mmap_threshold`), and in 4 KiB pages the kernel's first-touch
    faults took about as long as the arithmetic (a 1024-px tile's exact ``g_s`` under the
    AVX2 cap: 1.76 s and 2.9 M page faults; 1.02 s and 0.35 M in 2 MiB pages).  Called by
    :func:`run` (the ``georsic`` command) for commands that run the codec, on glibc Linux; the
    variable reaches Dask workers started from here.  Set ``GLIBC_TUNABLES`` (any value) to
    keep a process as started."""
    if "GLIBC_TUNABLES" in os.environ or not sys.platform.startswith("linux") \
            or _transparent_huge_pages() != "madvise" or not hasattr(sys, "orig_argv"):
        return
    try:
        import ctypes

        if not hasattr(ctypes.CDLL("libc.so.6"), "gnu_get_libc_version"):
            return
    except OSError:  # no libc.so.6: not glibc
        return
    os.environ["GLIBC_TUNABLES"] = HUGE_PAGES_TUNABLE
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)


def run() -> int:
    """The ``georsic`` command: :func:`main`, in a process started again with huge pages where
    the command runs the codec (:func:`_huge_pages`).  Only this entry point restarts its
    process; :func:`main` never does (a program or a test calling it keeps running)."""
    argv = sys.argv[1:]
    command = _command(argv)
    if command in CODEC_COMMANDS or (command == "verify" and "--decode" in argv):
        _huge_pages()
    return main()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = build_parser(benchmarks=_command(sys.argv[1:] if argv is None else argv) == "bench")
    try:
        args = parser.parse_args(argv)
    except InputError as exc:  # a --overviews or another value argparse could not take
        print(f"georsic: error: {exc}", file=sys.stderr)
        return exc.exit_code
    debug = args.debug or os.environ.get("GEORSIC_DEBUG", "") not in ("", "0")
    args.debug = debug
    _quiet_libraries(debug)
    _fixed_mmap_threshold()
    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            previous[name] = signal.signal(getattr(signal, name), _terminate)
    try:
        with _gdal_env(), _one_line_warnings():
            return _run(args, debug)
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def _run(args, debug: bool) -> int:
    """Run the subcommand behind the error boundary: every failure is one line and an exit
    code."""
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return status
    except GeorsicError as exc:
        if debug:
            raise
        print(f"georsic: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated as exc:
        left = getattr(exc, "on_disk", "no partial output was left")
        print(f"georsic: stopped by {exc}; {left}", file=sys.stderr)
        return _leave(128 + exc.signum)
    except KeyboardInterrupt as exc:
        left = getattr(exc, "on_disk", "no output was written")
        print(f"georsic: interrupted; {left}", file=sys.stderr)
        return _leave(130)
    except argparse.ArgumentTypeError as exc:
        print(f"georsic: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `georsic info ... | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail again
        return 141
    except MemoryError:
        if debug:
            raise
        print("georsic: error: out of memory (try a smaller --tile-size or a region)",
              file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the error boundary: a bug, said in one line
        if debug:
            raise
        text = " ".join(str(exc).split())[:300]
        print(f"georsic: error: unexpected {type(exc).__name__}: {text} (this is a bug in "
              "GeoRSIC; GEORSIC_DEBUG=1 shows the traceback for a report)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
