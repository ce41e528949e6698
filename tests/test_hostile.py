"""Issue 21, a hostile new user: nothing lost, nothing silent. Each case of the issue, with the
exit code it must give (see the module docstring of georsic.cli)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from testdata import DATA, aerial_crop, damaged_copy, with_header

import georsic
from georsic.archive import ArchiveReader
from georsic.cli import main
from georsic.errors import ArchiveError, InputError, OutputError

MISSING_SOURCE_VRT = """<VRTDataset rasterXSize="64" rasterYSize="64">
  <SRS>EPSG:32633</SRS><GeoTransform>0,1,0,64,0,-1</GeoTransform>
  <VRTRasterBand dataType="Byte" band="1"><SimpleSource>
    <SourceFilename relativeToVRT="1">gone.tif</SourceFilename><SourceBand>1</SourceBand>
    <SrcRect xOff="0" yOff="0" xSize="64" ySize="64"/>
    <DstRect xOff="0" yOff="0" xSize="64" ySize="64"/>
  </SimpleSource></VRTRasterBand></VRTDataset>"""


def cli(capsys, *args) -> tuple[int, str]:
    """``georsic ARGS`` in this process: (exit code, stderr)."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def cli_all(capsys, *args) -> tuple[int, str, str]:
    """``georsic ARGS`` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(*args, **kwargs) -> subprocess.CompletedProcess:
    """``georsic ARGS`` in a process of its own: for what only a real process shows (signals,
    exit status, stderr before any Python code of ours runs, concurrent writers)."""
    return subprocess.run([sys.executable, "-m", "georsic.cli", *map(str, args)],
                          capture_output=True, text=True, **kwargs)


def one_line(code: int, err: str, expected: int, words: str) -> None:
    assert code == expected, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("georsic: error")]
    assert len(errors) == 1, err
    assert words in errors[0], err


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a 96x80 crop of the NEON aerial image and its 4-tile archive."""
    folder = tmp_path_factory.mktemp("hostile")
    aerial_crop(folder / "s.tif", 96, 80)
    georsic.compress(folder / "s.tif", folder / "a.grsc", quality=2, tile_size=64, overlap=16,
                     device="cpu")
    georsic.decompress(folder / "a.grsc", folder / "intact.tif", device="cpu")
    (folder / "missing.vrt").write_text(MISSING_SOURCE_VRT)
    (folder / "notraster.txt").write_text("not pixels")
    (folder / "notraster.tif").write_text("not pixels")
    return folder


def pixels(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(masked=True).filled(0)


# ---- data loss

def test_output_that_is_the_input_is_refused(capsys, work, tmp_path):
    before = (work / "s.tif").read_bytes()
    one_line(*cli(capsys, "compress", work / "s.tif", work / "s.tif"), 3, "is the input")
    (tmp_path / "link.tif").symlink_to(work / "s.tif")
    one_line(*cli(capsys, "compress", tmp_path / "link.tif", work / "." / "s.tif", "--overwrite"),
             3, "is the input")
    assert (work / "s.tif").read_bytes() == before
    archive = (work / "a.grsc").read_bytes()
    one_line(*cli(capsys, "decompress", work / "a.grsc", work / "a.grsc", "--overwrite"), 3,
             "is the input")
    assert (work / "a.grsc").read_bytes() == archive
    with pytest.raises(OutputError, match="is the input"):
        georsic.decompress(work / "a.grsc", work / ".." / work.name / "a.grsc", overwrite=True)


def test_existing_output_needs_overwrite(capsys, work, tmp_path):
    target = tmp_path / "old.grsc"
    target.write_bytes(b"earlier result")
    one_line(*cli(capsys, "compress", work / "s.tif", target), 3, "--overwrite")
    assert target.read_bytes() == b"earlier result"
    one_line(*cli(capsys, "decompress", work / "a.grsc", target), 3, "exists")
    assert target.read_bytes() == b"earlier result"
    with pytest.raises(OutputError, match="exists"):
        georsic.compress(work / "s.tif", target)
    assert cli(capsys, "compress", work / "s.tif", target, "--overwrite", "--tile-size", "64",
               "--quiet")[0] == 0
    assert georsic.open(target).tile_count == 4


def test_devices_and_pipes_are_not_outputs(capsys, work, tmp_path):
    one_line(*cli(capsys, "decompress", work / "a.grsc", "/dev/full", "--overwrite"), 3,
             "not a regular file")
    assert Path("/dev/full").is_char_device()
    os.mkfifo(tmp_path / "pipe.grsc")
    one_line(*cli(capsys, "compress", work / "s.tif", tmp_path / "pipe.grsc", "--overwrite"), 3,
             "not a regular file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.grsc"]


def test_batch_skips_existing_outputs_and_counts_them_apart(capsys, work, tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy(work / "s.tif", tmp_path / "in" / "a.tif")
    shutil.copy(work / "s.tif", tmp_path / "in" / "b.tif")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.grsc").write_bytes(b"earlier result")
    code, out, err = cli_all(capsys, "batch", "compress", tmp_path / "in", "-o",
                             tmp_path / "out", "--tile-size", "64")
    assert code == 0, err
    assert "a.tif: skipped" in err and "--overwrite" in err
    assert "1 done, 1 skipped, 0 failed" in out
    assert (tmp_path / "out" / "a.grsc").read_bytes() == b"earlier result"
    assert georsic.open(tmp_path / "out" / "b.grsc").tile_count == 4


# ---- silently wrong results

def test_palette_band_comes_back_exactly_with_its_colour_table(capsys, tmp_path):
    classes = np.random.default_rng(21).integers(0, 4, (1, 70, 90), dtype=np.uint8)
    table = {0: (0, 0, 0, 255), 1: (0, 128, 0, 255), 2: (0, 0, 255, 255), 3: (200, 200, 0, 255)}
    profile = {"driver": "GTiff", "width": 90, "height": 70, "count": 1, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": from_origin(500000, 4000070, 10, 10),
               "photometric": "palette"}
    with rasterio.open(tmp_path / "classes.tif", "w", **profile) as dst:
        dst.write(classes)
        dst.write_colormap(1, table)
    assert cli(capsys, "compress", tmp_path / "classes.tif", tmp_path / "c.grsc", "-q", "0",
               "--quiet")[0] == 0
    assert georsic.open(tmp_path / "c.grsc").mapping.lossless == (0,)
    assert cli(capsys, "decompress", tmp_path / "c.grsc", tmp_path / "c.tif", "--quiet")[0] == 0
    with rasterio.open(tmp_path / "c.tif") as out:
        assert np.array_equal(out.read(), classes)
        assert out.colorinterp[0].name == "palette"
        assert {k: out.colormap(1)[k] for k in table} == table


def test_infinities_are_refused_not_turned_to_nan(capsys, tmp_path):
    data = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(1, 32, 32)
    data[0, 3, 4], data[0, 20, 7] = np.inf, -np.inf
    profile = {"driver": "GTiff", "width": 32, "height": 32, "count": 1, "dtype": "float32",
               "crs": "EPSG:32633", "transform": from_origin(0, 32, 1, 1)}
    with rasterio.open(tmp_path / "inf.tif", "w", **profile) as dst:
        dst.write(data)
    one_line(*cli(capsys, "compress", tmp_path / "inf.tif", tmp_path / "i.grsc"), 2,
             "band 1 holds infinite values")
    assert not (tmp_path / "i.grsc").exists()
    with rasterio.open(tmp_path / "nodata_inf.tif", "w", **profile, nodata=-np.inf) as dst:
        dst.write(np.where(data == np.inf, -np.inf, data))  # -inf is no-data here: allowed
    georsic.compress(tmp_path / "nodata_inf.tif", tmp_path / "n.grsc", quality=3)
    back = georsic.open(tmp_path / "n.grsc").read()
    assert np.array_equal(np.isneginf(back), np.isinf(data))


def test_ignore_errors_names_every_lost_tile_and_tags_the_output(capsys, work, tmp_path):
    damaged = damaged_copy(work / "a.grsc", tmp_path / "d.grsc", tile=1)
    one_line(*cli(capsys, "decompress", damaged, tmp_path / "o.tif"), 4, "tile 1")
    code, err = cli(capsys, "decompress", damaged, tmp_path / "o.tif", "--ignore-errors",
                    "--quiet")
    assert code == 0
    assert "tile 1 (row 0, col 1)" in err and "1 tile(s) lost" in err
    with rasterio.open(tmp_path / "o.tif") as out:
        assert out.tags()["GEORSIC_LOST_TILES"] == "1"
    errors: list[str] = []
    georsic.decompress(damaged, tmp_path / "p.tif", ignore_errors=True, errors=errors)
    assert len(errors) == 1 and "tile 1" in errors[0]


def test_a_cut_archive_keeps_the_tiles_that_arrived(capsys, work, tmp_path):
    data = (work / "a.grsc").read_bytes()
    with ArchiveReader(work / "a.grsc") as reader:
        third = reader._index[2][0]  # tiles 0 and 1 arrived whole, 2 and 3 did not
    cut = tmp_path / "cut.grsc"
    cut.write_bytes(data[:third + 30])
    one_line(*cli(capsys, "decompress", cut, tmp_path / "o.tif"), 4, "--ignore-errors")
    code, err = cli(capsys, "decompress", cut, tmp_path / "o.tif", "--ignore-errors")
    assert code == 0 and "tile 2" in err and "tile 3" in err and "2 tile(s) lost" in err
    with rasterio.open(tmp_path / "o.tif") as out:
        assert out.tags()["GEORSIC_LOST_TILES"] == "2,3"
    intact, recovered = pixels(work / "intact.tif"), pixels(tmp_path / "o.tif")
    grid = georsic.open(work / "a.grsc").grid
    for tile in (grid.tile(0), grid.tile(1)):  # their cells blend only tiles 0 and 1
        cell = grid.cell(tile)
        rows = slice(int(cell.row_off), int(cell.row_off + cell.height))
        cols = slice(int(cell.col_off), int(cell.col_off + cell.width))
        assert np.array_equal(recovered[:, rows, cols], intact[:, rows, cols])


def test_junk_appended_is_an_error_and_recoverable(capsys, work, tmp_path):
    junk = tmp_path / "junk.grsc"
    junk.write_bytes((work / "a.grsc").read_bytes() + b"\x00GRTL" + os.urandom(300))
    one_line(*cli(capsys, "decompress", junk, tmp_path / "o.tif"), 4, "appended")
    code, err = cli(capsys, "decompress", junk, tmp_path / "o.tif", "--ignore-errors")
    assert code == 0 and "lost" not in err, err
    assert np.array_equal(pixels(tmp_path / "o.tif"), pixels(work / "intact.tif"))


# ---- tracebacks that must be one-line errors

def test_read_error_mid_raster_names_the_file(capsys, work, tmp_path):
    one_line(*cli(capsys, "compress", work / "missing.vrt", tmp_path / "o.grsc"), 2, "gone.tif")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="missing.vrt"):
        georsic.compress(work / "missing.vrt", tmp_path / "o.grsc")


def test_batch_reports_a_bad_file_and_goes_on(capsys, work, tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy(work / "missing.vrt", tmp_path / "in" / "a.vrt")
    shutil.copy(work / "s.tif", tmp_path / "in" / "b.tif")
    code, out, err = cli_all(capsys, "batch", "compress", tmp_path / "in", "-o",
                             tmp_path / "out", "--tile-size", "64")
    assert code == 6 and "Traceback" not in err
    assert "a.vrt: error: cannot read" in err and "gone.tif" in err
    assert "1 done, 0 skipped, 1 failed" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.grsc"]


@pytest.mark.parametrize("edit, words", [
    (lambda h: h["band_mapping"].update(groups=[[0, 1]]), "3 channels"),
    (lambda h: h["band_mapping"].update(groups=[[0, 1, 5]]), "does not have"),
    (lambda h: h["band_mapping"].update(groups=[]), "cover each band"),
    (lambda h: h["band_mapping"].update(lossless=[0]), "cover each band"),
    (lambda h: h["raster"].update(count=7), "entries for 7"),
    (lambda h: h["raster"].update(dtype="complex64"), "data type"),
    (lambda h: h["tiling"].update(size=100), "tile size"),
    (lambda h: h["codec"].update(quality="high"), "quality"),
    (lambda h: h["mask"].update(planes=9), "mask planes"),
    (lambda h: h["raster"].update(crs_wkt="PROJCS[nonsense"), "damaged"),
    (lambda h: h.pop("tiling"), "incomplete"),
    (lambda h: h["raster"].update(categories=[["water"]]), "categories has 1 entries for 3"),
    (lambda h: h["raster"].update(tables=[{"columns": [["Value", 0, 5]], "rows": [["x"]]}] * 3),
     "damaged"),
])
def test_crafted_header_is_an_archive_error(capsys, work, tmp_path, edit, words):
    crafted = with_header(work / "a.grsc", tmp_path / "groups_bad.grsc", edit)
    one_line(*cli(capsys, "decompress", crafted, tmp_path / "o.tif"), 4, words)
    with pytest.raises(ArchiveError):
        georsic.open(crafted)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["groups_bad.grsc"]


@pytest.mark.parametrize("option, words", [
    (["--bounds", "404300,3285140,404210,3285150"], "reversed"),
    (["--bounds", "nan,3285130,404215,3285140"], "finite numbers"),
    (["--bounds", "404212,3285130,404215,3285140", "--bounds-crs", "EPSG:999999"], "not a CRS"),
    (["--window=10,10,-5,-5"], "must be positive"),
    (["--window=1000,1000,5,5"], "does not overlap"),
    (["--window=1.5,2,10,10"], "whole pixel numbers"),
])
def test_bad_regions_exit_2(capsys, work, tmp_path, option, words):
    one_line(*cli(capsys, "decompress", work / "a.grsc", tmp_path / "o.tif", *option), 2, words)
    assert list(tmp_path.iterdir()) == []


def test_compare_and_estimate_of_files_that_are_not_rasters(capsys, work):
    one_line(*cli(capsys, "compare", work / "s.tif", work / "notraster.txt"), 2, "not a raster")
    code, err = cli(capsys, "estimate", work / "notraster.tif", work / "missing.vrt")
    assert code == 6 and "Traceback" not in err
    assert "notraster.tif: error: " in err and "gone.tif" in err


# ---- exit codes and messages

@pytest.mark.parametrize("option", [["--tile-size", "0"], ["--tile-size", "7"],
                                    ["--tile-size", "-128"], ["--tile-size", "100000"],
                                    ["--tile-size", "64", "--overlap", "20"],
                                    ["--overlap", "-1"]])
def test_bad_tiling_exits_2(capsys, work, tmp_path, option):
    one_line(*cli(capsys, "compress", work / "s.tif", tmp_path / "o.grsc", *option), 2,
             "overlap" if "--overlap" in option else "tile size")
    assert list(tmp_path.iterdir()) == []


def test_missing_inputs_exit_2_and_random_bytes_after_the_magic_are_damage(capsys, tmp_path):
    one_line(*cli(capsys, "compress", tmp_path / "none.tif", tmp_path / "o.grsc"), 2,
             "does not exist")
    one_line(*cli(capsys, "decompress", tmp_path / "none.grsc", tmp_path / "o.tif"), 2,
             "does not exist")
    (tmp_path / "r.grsc").write_bytes(b"GRSC\r\n\x1a\n" + np.random.default_rng(7).bytes(300))
    code, err = cli(capsys, "info", tmp_path / "r.grsc")
    one_line(code, err, 4, "corrupt")
    assert "upgrade" not in err


def test_no_gdal_log_lines_or_warnings_beside_the_error(capfd, tmp_path):
    with rasterio.open(tmp_path / "plain.tif", "w", driver="GTiff", width=8, height=8,
                       count=1, dtype="uint8") as dst:  # no georeferencing
        dst.write(np.zeros((1, 8, 8), np.uint8))
    # a process of its own: Python shows warnings there as a user sees them (pytest records
    # them instead)
    result = run_cli("compress", tmp_path / "plain.tif", tmp_path / "out.grsc", "--quiet")
    assert result.returncode == 0 and result.stderr == ""  # no NotGeoreferencedWarning
    capfd.readouterr()
    # GDAL and PROJ write to file descriptor 2 itself, which capfd sees in this process too
    code = main(["decompress", str(tmp_path / "none.grsc"), str(tmp_path / "o.tif"),
                 "--bounds-crs", "EPSG:999999", "--bounds", "0,0,1,1"])
    err = capfd.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err


def test_debug_shows_the_traceback(capsys, tmp_path, monkeypatch):
    """With GEORSIC_DEBUG the error is not caught: it leaves main(), and Python prints its
    traceback."""
    monkeypatch.setenv("GEORSIC_DEBUG", "1")
    with pytest.raises(InputError, match="does not exist"):
        main(["info", str(tmp_path / "none.grsc")])
    assert "georsic: error" not in capsys.readouterr().err


def test_help_is_plain_text(capsys):
    for args in (["--help"], ["bench", "rd", "--help"], ["compress", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        text = capsys.readouterr().out
        assert exit_.value.code == 0
        assert "usage: georsic" in text and "``" not in text and ":func:" not in text
        if args == ["--help"]:
            assert "143" in text


# ---- signals

@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_leave_no_temporaries(tmp_path, signum, code):
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "georsic.cli", "compress", str(DATA / "osbs_aerial_rgb.tif"),
         str(out / "a.grsc"), "--tile-size", "64", "--overlap", "0", "--device", "cpu"],
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(out.iterdir()) and time.monotonic() < deadline:  # the temporary appears
        time.sleep(0.05)
    assert any(out.iterdir()), "compression never started"
    process.send_signal(signum)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr and "no partial output" in stderr
    assert list(out.iterdir()) == []


def test_sigterm_stops_a_batch_after_reporting_what_finished(work, tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy(work / "s.tif", tmp_path / "in" / "a.tif")
    shutil.copy(DATA / "osbs_aerial_rgb.tif", tmp_path / "in" / "b.tif")
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "georsic.cli", "batch", "compress", str(tmp_path / "in"), "-o",
         str(out), "--tile-size", "64", "--overlap", "0", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(p.name.startswith(".b.grsc")
                                                  for p in out.glob(".*")):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "a.tif -> " in stdout
    assert "batch stopped: 1 done, 0 skipped, 0 failed" in stderr and "not processed" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.grsc"]


# ---- concurrency

def test_two_writers_of_one_output_leave_one_valid_file(work, tmp_path):
    target = tmp_path / "same.grsc"
    command = [sys.executable, "-m", "georsic.cli", "compress", str(work / "s.tif"), str(target),
               "--tile-size", "64", "--overwrite", "--quiet", "--device", "cpu"]
    processes = [subprocess.Popen(command + ["-q", quality], stderr=subprocess.PIPE)
                 for quality in ("1", "6")]
    codes = [p.wait(timeout=300) for p in processes]
    assert codes == [0, 0], [p.stderr.read() for p in processes]
    assert [p.name for p in tmp_path.iterdir()] == ["same.grsc"]
    with georsic.open(target) as archive:
        assert archive.verify() == []
        assert archive.quality in (1.0, 6.0)
        assert archive.read().shape == (3, 80, 96)


# ---- first contact: COG output

def test_cog_of_a_raster_without_overviews_gets_them(tmp_path):
    from rio_cogeo.cogeo import cog_validate

    data = np.random.default_rng(3).integers(90, 160, (1, 600, 530), dtype=np.uint8)
    profile = {"driver": "GTiff", "width": 530, "height": 600, "count": 1, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": from_origin(500000, 4000600, 1, 1)}
    with rasterio.open(tmp_path / "big.tif", "w", **profile) as dst:
        dst.write(data)
    georsic.compress(tmp_path / "big.tif", tmp_path / "big.grsc", quality=0, device="cpu")
    georsic.decompress(tmp_path / "big.grsc", tmp_path / "cog.tif", cog=True, device="cpu")
    valid, errors, warnings = cog_validate(str(tmp_path / "cog.tif"))
    assert valid and errors == [] and warnings == [], (errors, warnings)
    with rasterio.open(tmp_path / "cog.tif") as cog:
        assert cog.overviews(1) == [2]
    georsic.decompress(tmp_path / "big.grsc", tmp_path / "none.tif", cog=True, overviews="none")
    with rasterio.open(tmp_path / "none.tif") as cog:
        assert cog.overviews(1) == []
