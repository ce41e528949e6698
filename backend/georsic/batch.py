"""Batches: many rasters to archives, or archives to GeoTIFFs, in-process or on a Dask cluster.

Each file is one task (on a cluster: one worker codes it whole, with one thread).  A file that
fails is reported by name and the others go on.  Outputs are written through a temporary file
renamed when complete, so a worker killed mid-file leaves no partial output: the scheduler runs
the file again elsewhere, and the temporaries the killed worker left are removed when the batch
ends.  An output that already exists and verifies is skipped (``overwrite`` redoes it), so a
batch run again resumes where it stopped; a damaged archive is redone; any other file there is
someone else's, skipped and never replaced without ``overwrite``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from georsic.control import Progress
from georsic.errors import GeorsicError, InputError, OutputError

#: Files that batch commands take from a folder (given by name, any raster GDAL reads).
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".png", ".img", ".vrt")
ARCHIVE_SUFFIXES = (".grsc",)


@dataclass(frozen=True)
class FileResult:
    """What became of one file of a batch: ``status`` is ``done``, ``skipped`` or ``failed``
    (``message`` says why); ``summary`` is what :func:`georsic.compress` returned, for a
    compressed file."""

    source: Path
    target: Path
    status: str
    message: str = ""
    summary: Any = None


def find_inputs(paths: Iterable[str | Path], suffixes: tuple[str, ...],
                recursive: bool = False) -> list[tuple[Path, Path]]:
    """Each input file with where its output goes, relative to the output folder and without
    suffix: a file given by name goes to its stem, a folder's files (its whole tree with
    ``recursive``) keep their place below the folder."""
    found: list[tuple[Path, Path]] = []
    for item in map(Path, paths):
        if item.is_dir():
            files = sorted(item.rglob("*") if recursive else item.iterdir())
            found.extend((p, p.relative_to(item).with_suffix("")) for p in files
                         if p.suffix.lower() in suffixes and p.is_file())
        else:
            found.append((item, Path(item.stem)))
    return found


def targets(inputs: list[tuple[Path, Path]], out_dir: Path,
            suffix: str) -> list[tuple[Path, Path]]:
    """(input, output path) pairs, refusing a batch in which two inputs would write one file."""
    sources: dict[Path, Path] = {}  # output path -> input
    for path, relative in inputs:
        target = Path(out_dir) / relative.with_name(relative.name + suffix)
        if target in sources:
            raise InputError(f"{sources[target]} and {path} would both be written to {target}; "
                             "rename one, or give their folder with --recursive")
        sources[target] = path
    return [(path, target) for target, path in sources.items()]


def batch_compress(inputs: Iterable[str | Path], out_dir: str | Path, *,
                   recursive: bool = False, overwrite: bool = False, client=None,
                   progress: Progress | None = None,
                   on_result: Callable[[FileResult], None] | None = None,
                   **options) -> list[FileResult]:
    """Compress rasters (files, or the rasters of folders) into ``out_dir``, one archive each.

    ``options`` go to :func:`georsic.compress` (quality or target, tile size, model, ...).
    With ``client`` (a ``distributed.Client``) each file is a task on its workers.  Returns
    one :class:`FileResult` per input, in input order; ``on_result`` is called with each as
    it is known, ``progress(done, total)`` after each file.
    """
    jobs = _jobs(inputs, RASTER_SUFFIXES, recursive, out_dir, ".grsc")
    return _run(jobs, _compress_file, _archive_complete, overwrite, client, progress,
                on_result, options)


def batch_decompress(inputs: Iterable[str | Path], out_dir: str | Path, *,
                     recursive: bool = False, overwrite: bool = False, client=None,
                     progress: Progress | None = None,
                     on_result: Callable[[FileResult], None] | None = None,
                     **options) -> list[FileResult]:
    """Decompress archives (files, or the archives of folders) into ``out_dir`` as GeoTIFFs;
    ``options`` go to :func:`georsic.decompress`, the rest as :func:`batch_compress`."""
    jobs = _jobs(inputs, ARCHIVE_SUFFIXES, recursive, out_dir, ".tif")
    return _run(jobs, _decompress_file, _geotiff_complete, overwrite, client, progress,
                on_result, options)


def complete_outputs(inputs: Iterable[str | Path], out_dir: str | Path, action: str, *,
                     recursive: bool = False) -> list[Path]:
    """The outputs of a batch (``action`` ``"compress"`` or ``"decompress"``) that are in
    ``out_dir`` and complete, whoever wrote them: what an interrupted batch leaves, counted
    on disk (a worker may finish a file whose result never reaches the client)."""
    if action == "compress":
        suffixes, suffix, complete = RASTER_SUFFIXES, ".grsc", _archive_complete
    else:
        suffixes, suffix, complete = ARCHIVE_SUFFIXES, ".tif", _geotiff_complete
    try:
        jobs = targets(find_inputs(inputs, suffixes, recursive), Path(out_dir), suffix)
    except (GeorsicError, OSError):
        return []
    return [target for source, target in jobs if target.is_file() and complete(source, target)]


def _jobs(inputs, suffixes, recursive, out_dir, suffix) -> list[tuple[Path, Path]]:
    found = find_inputs(inputs, suffixes, recursive)
    if not found:
        raise InputError("no input files found")
    jobs = targets(found, Path(out_dir), suffix)
    for _, target in jobs:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the folder {target.parent}: {exc.strerror}") \
                from None
    return jobs


def _compress_file(source: str, target: str, options: dict):
    """A file task: compress one raster whole, in this process, one tile at a time."""
    import georsic

    return georsic.compress(source, target, overwrite=True, threads=1, **options)


def _decompress_file(source: str, target: str, options: dict):
    import georsic

    georsic.decompress(source, target, overwrite=True, threads=1, **options)
    return None


def _archive_complete(source: Path, target: Path) -> bool:
    """An archive left by an earlier run is complete when it opens and every tile checks."""
    import georsic

    try:
        with georsic.open(target) as archive:
            return not archive.verify()
    except GeorsicError:
        return False


def _damaged_archive(target: Path) -> bool:
    """A file that starts as a GeoRSIC archive does (its damage is GeoRSIC's to repair)."""
    from georsic.archive import MAGIC

    try:
        with open(target, "rb") as file:
            return file.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _geotiff_complete(source: Path, target: Path) -> bool:
    """A GeoTIFF left by an earlier run is complete when it opens with the archive's size and
    bands (it was renamed into place only once fully written)."""
    import rasterio

    import georsic

    try:
        with georsic.open(source) as archive, rasterio.open(target) as tif:
            return (tif.width, tif.height, tif.count) == (archive.width, archive.height,
                                                          archive.count)
    except (GeorsicError, rasterio.errors.RasterioError, OSError):
        return False


def _run(jobs, task, complete, overwrite, client, progress, on_result,
         options) -> list[FileResult]:
    results: dict[int, FileResult] = {}
    todo: list[int] = []
    for number, (source, target) in enumerate(jobs):
        if not overwrite and target.exists() and complete(source, target):
            results[number] = FileResult(source, target, "skipped",
                                         f"{target} exists and is complete (--overwrite "
                                         "redoes it)")
            _report(results[number], len(results), len(jobs), progress, on_result)
        elif not overwrite and target.exists() and not _damaged_archive(target):
            # not an output of GeoRSIC (a damaged archive is, and is redone): the user's file
            results[number] = FileResult(source, target, "skipped",
                                         f"{target} exists and is not an output of "
                                         f"{source.name}; left as it is (--overwrite replaces "
                                         "it)")
            _report(results[number], len(results), len(jobs), progress, on_result)
        else:
            todo.append(number)
    try:
        for number, result in _outcomes(jobs, todo, task, client, options):
            results[number] = result
            _report(result, len(results), len(jobs), progress, on_result)
    finally:
        for _, target in jobs:
            remove_temporaries(target)
    return [results[number] for number in range(len(jobs)) if number in results]


def _report(result, done, total, progress, on_result) -> None:
    if on_result:
        on_result(result)
    if progress:
        progress(done, total)


def _outcomes(jobs, todo, task, client, options):
    """(number, FileResult) of each file to do, as each finishes."""
    if client is None:
        for number in todo:
            source, target = jobs[number]
            try:
                yield number, _done(source, target, task(str(source), str(target), options))
            except GeorsicError as exc:
                yield number, FileResult(source, target, "failed", str(exc))
        return
    from distributed import as_completed

    futures = {}
    for number in todo:
        source, target = jobs[number]
        future = client.submit(task, str(Path(source).resolve()), str(Path(target).resolve()),
                               options, pure=False, key=f"georsic-file-{number}-{target.name}")
        futures[future] = number
    try:
        for future in as_completed(futures):
            number = futures[future]
            source, target = jobs[number]
            try:
                yield number, _done(source, target, future.result())
            except GeorsicError as exc:
                yield number, FileResult(source, target, "failed", str(exc))
            except Exception as exc:  # noqa: BLE001 - a worker lost too often, a bug: say so
                yield number, FileResult(source, target, "failed",
                                         f"{type(exc).__name__}: {exc}")
    finally:
        for future in futures:
            future.cancel()


def _done(source: Path, target: Path, summary) -> FileResult:
    return FileResult(source, target, "done", summary=summary)


def remove_temporaries(target: Path) -> list[Path]:
    """Remove what an interrupted writer of ``target`` left beside it: the temporary files of
    :class:`~georsic.archive.ArchiveWriter` (``.NAME.*.tmp``) and of the GeoTIFF writer
    (``.STEM.*.tmp.tif`` and its sidecars).  Only call it when no writer of ``target`` runs."""
    directory = target.parent if str(target.parent) else Path(".")
    patterns = (f".{target.name}.*.tmp", f".{target.stem}.*.tmp.tif", f".{target.stem}.*.tmp.tif.*")
    removed = []
    for pattern in patterns:
        for leftover in directory.glob(pattern):
            if leftover.is_file():
                leftover.unlink(missing_ok=True)
                removed.append(leftover)
    return removed
