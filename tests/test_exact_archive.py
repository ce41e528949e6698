"""Exact lossy archives (format version 8, issue 29, georsic.exactarchive): the same decoded
pixels on every thread count, vector unit and runtime; a pixel digest per tile that
``verify --decode`` checks, naming a tile that differs; region reads equal the full read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window
from testdata import aerial_crop, damaged_copy, psnr, with_header

import georsic
from georsic.archive import (
    EXACT_VERSION,
    ArchiveReader,
    ArchiveWriter,
    pack_sections,
    unpack_sections,
)
from georsic.errors import ArchiveError, DigestError, TileError
from georsic.exactarchive import DIGEST_BYTES, pixel_digest

#: 300 x 260 in tiles of 128 with an overlap of 16: 3 x 3 tiles (edge tiles clipped), and a
#: pyramid level of factor 2 (2 x 2 tiles more), so digests of both kinds of tile are checked.
TILING = {"tile_size": 128, "overlap": 16, "pyramid_levels": (2,), "quality": 3}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exact")


@pytest.fixture(scope="module")
def source(folder) -> Path:
    return aerial_crop(folder / "src.tif", 300, 260)


@pytest.fixture(scope="module")
def exact_archive(folder, source) -> Path:
    summary = georsic.compress(source, folder / "exact.grsc", exact=True, threads=1, **TILING)
    return summary.path


@pytest.fixture(scope="module")
def normal_archive(folder, source) -> Path:
    return georsic.compress(source, folder / "normal.grsc", threads=1, **TILING).path


@pytest.fixture(scope="module")
def decoded(exact_archive) -> np.ndarray:
    with georsic.open(exact_archive) as archive:
        return archive.read(threads=1, device="cpu")


def test_round_trip_close_to_the_normal_decode(exact_archive, normal_archive, source, decoded):
    """The same streams as a normal archive (the exact entropy path), synthesised exactly:
    within a few levels of today's decode, the same PSNR to a tenth of a dB."""
    with ArchiveReader(exact_archive) as reader:
        assert reader.version == EXACT_VERSION == 8
        assert reader.header["exact"]["synthesis"] == "exact-v2"
        assert reader.header["exact"]["calibration"]
    with georsic.open(normal_archive) as archive:
        normal = archive.read(threads=1, device="cpu")
        assert not archive.exact
    with georsic.open(exact_archive) as archive:
        assert archive.exact and archive.overviews() == [2]
        assert "exact:" in archive.describe()
        assert archive.verify(decode=True, device="cpu") == []
    with rasterio.open(source) as src:
        original = src.read()
    assert decoded.dtype == np.uint8 and decoded.shape == original.shape
    # today's decode is bfloat16 or float32 by CPU (1-2 levels apart); exact-v2's 2**11 input
    # levels per layer add a few more at the worst pixel (benchmarks/exact_synthesis.py: 4)
    assert np.abs(decoded.astype(int) - normal.astype(int)).max() <= 5
    assert abs(psnr(original, decoded) - psnr(original, normal)) < 0.1
    assert psnr(original, decoded) > 17  # a detailed aerial crop at quality 3


def test_each_tile_ends_with_the_digest_of_its_pixels(exact_archive):
    """The stored digest is :func:`pixel_digest` of the tile's decoded block, recomputed
    here from a decode of that tile alone."""
    from georsic.parallel import thread_codec

    with georsic.open(exact_archive) as archive:
        codec = thread_codec(archive.model_id, archive.codec_info["weights_sha256"], "cpu")
        tile = archive.grid.tile(4)
        stored: list[bytes] = []
        values, _ = archive._decode_tile(tile, codec, None, None, stored)
        assert len(stored[0]) == DIGEST_BYTES
        assert pixel_digest(values, archive.mapping) == stored[0]
        assert values.shape == (3, 128, 128)


def _tampered(archive: Path, target: Path, records: list[int]) -> Path:
    """``archive`` with the digest of these tile records altered (checksums recomputed: only
    the pixel check can notice)."""
    with ArchiveReader(archive) as reader:
        header, version = reader.header, reader.version
        payloads = [reader.read_tile(i) for i in range(reader.tile_count)]
    for number in records:
        sections = unpack_sections(payloads[number])
        sections[-1] = bytes(b ^ 0x5A for b in sections[-1])
        payloads[number] = pack_sections(sections)
    with ArchiveWriter(target, header, version=version) as writer:
        for payload in payloads:
            writer.add_tile(payload)
    return target


def test_tampered_digest_names_the_tile(exact_archive, folder):
    """A digest that differs from the decoded pixels: the tile named (index, row and column;
    a pyramid tile's level too), every other tile matching; the checksums alone pass."""
    tampered = _tampered(exact_archive, folder / "tampered.grsc", [4, 10])
    with georsic.open(tampered) as archive:
        assert archive.verify() == []  # the records' checksums are intact
        problems = archive.verify(decode=True, device="cpu")
    assert [type(p) for p in problems] == [DigestError, DigestError], problems
    assert isinstance(problems[0], TileError) and problems[0].exit_code == 8
    assert problems[0].tile == 4 and "tile 4 (row 1, col 1)" in str(problems[0])
    assert "differ from the digest" in str(problems[0])
    assert problems[1].tile == 10 and "of pyramid level 2" in str(problems[1])


def test_damaged_stream_is_still_a_checksum_error(exact_archive, folder):
    damaged = damaged_copy(exact_archive, folder / "damaged.grsc", tile=2)
    with georsic.open(damaged) as archive:
        for decode in (False, True):
            problems = archive.verify(decode=decode, device="cpu")
            assert [type(p) for p in problems] == [TileError], problems
            assert problems[0].tile == 2 and "checksum" in str(problems[0])


def test_cli_verify_decode(exact_archive, normal_archive, folder, capsys):
    """``georsic verify --decode``: how many digests matched; a tampered tile named on its own
    line, exit 8; an archive without digests decoded, and said to hold none."""
    from georsic.cli import main

    assert main(["verify", "--decode", "--device", "cpu", str(exact_archive),
                 str(normal_archive)]) == 0
    out = capsys.readouterr().out
    assert "pixel digests: 13 of 13 tile(s) matched" in out
    assert "holds no pixel digests (format version 5" in out

    tampered = _tampered(exact_archive, folder / "cli-tampered.grsc", [7])
    assert main(["verify", "--decode", "--device", "cpu", str(tampered)]) == 8
    captured = capsys.readouterr()
    assert "pixel digests" not in captured.out and "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if "differ from the digest" in line]
    assert len(lines) == 1 and "tile 7 (row 2, col 1)" in lines[0], captured.err
    assert main(["verify", str(tampered)]) == 0  # without --decode: the checksums pass


def test_same_bits_on_one_and_two_threads(exact_archive, decoded):
    """Two tiles at once, one tile on two torch threads (a region of one tile: the exact
    synthesis is thread-invariant, so the tile gets the idle thread), and a tile decoded with
    torch on 1 and on 2 threads: the same bits."""
    from georsic.parallel import thread_codec

    with georsic.open(exact_archive) as archive:
        assert archive._thread_invariant("cpu", False)
        assert np.array_equal(archive.read(threads=2, device="cpu"), decoded)
        window = Window(130, 130, 60, 70)  # inside tile 4 alone
        assert [t.index for t in archive.grid.tiles_in(window)] == [4]
        part = archive.read(window, threads=2, device="cpu")
        codec = thread_codec(archive.model_id, archive.codec_info["weights_sha256"], "cpu")
        tiles = []
        before = torch.get_num_threads()
        try:
            for count in (1, 2):
                torch.set_num_threads(count)
                tiles.append(archive._decode_tile(archive.grid.tile(5), codec)[0])
        finally:
            torch.set_num_threads(before)
    assert np.array_equal(part, decoded[:, 130:200, 130:190])
    assert np.array_equal(tiles[0], tiles[1])


def test_region_equals_the_full_decode(exact_archive, decoded, folder):
    """``--window`` of an exact archive: the same pixels as that region of the full decode
    (across tile overlaps, where tiles are blended)."""
    from georsic.cli import main

    out = folder / "window.tif"
    assert main(["decompress", str(exact_archive), str(out), "--window", "37,50,201,177",
                 "--device", "cpu", "--quiet"]) == 0
    with rasterio.open(out) as dec:
        assert np.array_equal(dec.read(), decoded[:, 50:227, 37:238])
    with georsic.open(exact_archive) as archive:
        assert np.array_equal(archive.read(Window(111, 0, 100, 260), threads=1, device="cpu"),
                              decoded[:, :, 111:211])
        lazy = archive.to_xarray(device="cpu").isel(x=slice(90, 250), y=slice(100, 140))
        assert np.array_equal(lazy.values, decoded[:, 100:140, 90:250])


def test_avx2_onnxruntime_process_decodes_the_same_bits(exact_archive, decoded, folder):
    """A process whose oneDNN and ATen are capped to AVX2 (no VNNI: the synthesis sums bytes
    in float32 instead of int8) and whose runtime is ONNX Runtime decodes the same pixels,
    and its verify --decode finds every digest."""
    script = (
        "import json, sys, numpy as np, georsic\n"
        "from georsic.models.exact_synthesis import int8_sums_exact\n"
        "with georsic.open(sys.argv[1]) as a:\n"
        "    np.save(sys.argv[2], a.read(threads=2, device='cpu'))\n"
        "    problems = a.verify(decode=True, device='cpu')\n"
        "print(json.dumps({'problems': [str(p) for p in problems],\n"
        "                  'int8': int8_sums_exact()}))\n")
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2",
               GEORSIC_RUNTIME="onnxruntime")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]
                                                          / "backend"),
                                                      env.get("PYTHONPATH")]))
    out = folder / "avx2.npy"
    done = subprocess.run([sys.executable, "-c", script, str(exact_archive), str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["problems"] == []
    assert report["int8"] is False  # the float32 route really ran there
    assert np.array_equal(np.load(out), decoded)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine: the "
                    "exact synthesis on CUDA (float32 byte sums, cuDNN and TF32 off) is checked "
                    "where one is")
def test_cuda_decodes_the_same_bits_as_the_cpu(exact_archive, decoded):
    with georsic.open(exact_archive) as archive:
        assert np.array_equal(archive.read(device="cuda"), decoded)
        assert archive.verify(decode=True, device="cuda") == []


def test_headers_that_do_not_match_their_version_are_refused(exact_archive, normal_archive,
                                                               folder):
    """An unknown exact synthesis (a newer GeoRSIC), and a version-5 archive claiming an exact
    synthesis, fail to open with one line."""
    def newer(header):
        header["exact"]["synthesis"] = "exact-v9"

    with ArchiveReader(exact_archive) as reader:
        header = reader.header
        payloads = [reader.read_tile(i) for i in range(reader.tile_count)]
    newer(header)
    with ArchiveWriter(folder / "newer.grsc", header, version=EXACT_VERSION) as writer:
        for payload in payloads:
            writer.add_tile(payload)
    with pytest.raises(ArchiveError, match="newer GeoRSIC"):
        georsic.open(folder / "newer.grsc")

    def claim(header):
        with ArchiveReader(exact_archive) as reader:
            header["exact"] = reader.header["exact"]

    with pytest.raises(ArchiveError, match="version-5 archive with an exact synthesis"):
        georsic.open(with_header(normal_archive, folder / "claim.grsc", claim))


def test_cli_compress_exact_and_batch(folder):
    """``georsic compress --exact`` and ``georsic batch compress --exact`` make version-8
    archives whose digests match."""
    from georsic.cli import main

    source = aerial_crop(folder / "small.tif", 100, 80)
    single = folder / "single.grsc"
    assert main(["compress", str(source), str(single), "--exact", "-q", "2", "--tile-size",
                 "128", "--quiet"]) == 0
    assert main(["batch", "compress", str(source), "-o", str(folder / "batch"), "--exact",
                 "-q", "2", "--tile-size", "128", "--quiet"]) == 0
    for path in (single, folder / "batch" / "small.grsc"):
        with ArchiveReader(path) as reader:
            assert reader.version == EXACT_VERSION
        with georsic.open(path) as archive:
            assert archive.verify(decode=True, device="cpu") == []


def test_remote_verify_decode_names_the_same_tile(exact_archive, folder):
    """``verify --decode`` of an exact archive read by URL (range requests): the same digest
    checks and the same tile named as the local file."""
    pytest.importorskip("aiohttp")  # fsspec's HTTP file system
    from rangeserver import range_server

    site = folder / "site"
    site.mkdir()
    (site / "exact.grsc").write_bytes(exact_archive.read_bytes())
    _tampered(exact_archive, site / "tampered.grsc", [3])
    with range_server(site) as server:
        with georsic.open(f"{server.url}/exact.grsc") as remote:
            assert remote.exact and remote.verify(decode=True, device="cpu") == []
        with georsic.open(f"{server.url}/tampered.grsc") as remote:
            problems = remote.verify(decode=True, device="cpu")
    assert [type(p) for p in problems] == [DigestError]
    assert "tile 3 (row 1, col 0)" in str(problems[0])


@pytest.mark.parametrize("name, synthesis", [
    ("legacy_exact_synthesis_v1_osbs_crop", "exact-v1"),
    ("exact_synthesis_v2_osbs_crop", "exact-v2"),
])
def test_exact_archives_decode_to_their_committed_pixels(capsys, name, synthesis):
    """Archives of each exact synthesis (``exact-v1``: two bytes per input, float64 epilogue,
    written before ``exact-v2`` became the default; ``exact-v2``, pinned against later changes
    of its routes), from ``georsic.compress(crop, dst, exact=True, tile_size=64, quality=3)``
    on the 128 x 96 top-left crop of osbs_aerial_rgb.tif (tests/data): the same pixels as
    when they were written, and their digests match."""
    import hashlib

    from georsic.cli import main

    path = Path(__file__).parent / "data" / f"{name}.grsc"
    expected = json.loads(path.with_suffix(".json").read_text())
    with georsic.open(path) as archive:
        assert archive.exact_spec.synthesis == synthesis == expected["synthesis"]
        assert f"exact synthesis {synthesis}" in archive.describe()
        decoded = archive.read(threads=1, device="cpu")
    assert list(decoded.shape) == expected["shape"]
    assert hashlib.sha256(np.ascontiguousarray(decoded).tobytes()).hexdigest() == \
        expected["decoded_sha256"]
    assert main(["verify", "--decode", str(path)]) == 0
    assert "6 of 6 tile(s) matched" in capsys.readouterr().out


def test_new_archives_use_the_shipped_calibration(exact_archive, folder, source, monkeypatch):
    """The default weights' manifest holds the exact synthesis's calibration (``georsic train
    exact-synthesis``): a new archive names it (and derives its gain from the weights) instead
    of calibrating on its raster and listing both; weights without one are calibrated on
    sample tiles, listed, and that archive verifies as well."""
    from georsic import exactarchive
    from georsic.weights import find_model

    shipped = exactarchive.shipped_calibration(find_model(None))
    assert shipped is not None and len(shipped) == 69
    with ArchiveReader(exact_archive) as reader:
        exact = reader.header["exact"]
    assert exact["calibration"] == exactarchive.calibration_id(shipped)
    assert exact["gain"] == exactarchive.DERIVED_GAIN and "amax" not in exact
    monkeypatch.setattr(exactarchive, "shipped_calibration", lambda entry, *_: None)
    own = folder / "own_calibration.grsc"
    georsic.compress(source, own, exact=True, tile_size=128, quality=2.5, overwrite=True,
                     pyramid_levels="none")
    with ArchiveReader(own) as reader:
        amax = reader.header["exact"]["amax"]
        assert len(reader.header["exact"]["gain"]) == 128
    assert amax.keys() == shipped.keys() and amax != shipped
    with georsic.open(own) as archive:
        assert archive.verify(decode=True) == []


def test_a_calibration_that_is_not_installed_is_named(exact_archive, folder, capsys):
    """An archive naming a shipped calibration these weights do not hold (another GeoRSIC's
    recalibration, or an edited header): one line naming it, exit 5 (weights), no output."""
    from georsic.cli import main

    with ArchiveReader(exact_archive) as reader:
        header = reader.header
        payloads = [reader.read_tile(i) for i in range(reader.tile_count)]
    header["exact"]["calibration"] = "0123456789abcdef"
    crafted = folder / "other_calibration.grsc"
    with ArchiveWriter(crafted, header, version=EXACT_VERSION) as writer:
        for payload in payloads:
            writer.add_tile(payload)
    out = folder / "other_calibration.tif"
    assert main(["decompress", str(crafted), str(out)]) == 5
    err = capsys.readouterr().err
    assert "calibration 0123456789abcdef is not installed" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("quality", [0.0, 2.5, 3.0, 7.0])
def test_derived_gain_is_the_models_gain_correctly_rounded(quality):
    """An exact archive's inverse gain, derived from the weights' table in decimal arithmetic
    (the same on every machine), is the model's float32 gain to within an ulp or two."""
    from georsic.codec import get_codec
    from georsic.exactarchive import derived_gain
    from georsic.weights import find_model

    model = get_codec(find_model(None), "cpu").model
    table = model.log_inverse_gain.detach().float().numpy()
    ours = np.asarray(derived_gain(table, quality), dtype=np.float32)
    with torch.no_grad():
        theirs = model._gain(model.log_inverse_gain.float(), quality).flatten().numpy()
    assert ours.shape == theirs.shape == (128,)
    assert np.all(np.abs(ours - theirs) <= 2 * np.spacing(theirs))
    assert derived_gain(table, quality) == derived_gain(table.copy(), quality)
