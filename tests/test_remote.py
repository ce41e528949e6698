"""Issue 32, part 3: archives read over HTTP (a real server on the loopback address, started
here, with range requests, counting what it answers) and from an S3-compatible server (moto,
where it is installed): the header and index in two range requests, one request per run of
adjacent tiles, the same pixels as the local archive, and damage named as in a local one."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rangeserver import range_server
from rasterio.windows import Window
from testdata import aerial_crop, damaged_copy

import georsic
from georsic import archive as archive_module
from georsic import reader
from georsic.archive import ArchiveReader
from georsic.cli import main
from georsic.errors import ArchiveError, GeorsicError, InputError
from georsic.remote import MAX_TAIL_BYTES, TAIL_BYTES, is_url, merge_runs, tail_bytes, url_name

pytest.importorskip("aiohttp")  # fsspec's HTTP file system


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder with a 160x80 crop of the NEON aerial image and its archive of 3x2 tiles."""
    folder = tmp_path_factory.mktemp("remote")
    aerial_crop(folder / "s.tif", 160, 80)
    georsic.compress(folder / "s.tif", folder / "a.grsc", quality=2, tile_size=64, overlap=16,
                     device="cpu")
    return folder


@pytest.fixture()
def server(site):
    with range_server(site) as running:
        yield running


def _errors(fn) -> str:
    """The message of the GeorsicError ``fn()`` raises, with its type."""
    with pytest.raises(GeorsicError) as caught:
        fn()
    return f"{type(caught.value).__name__}: {caught.value}"


def _tiles_apart(monkeypatch, local: Path) -> tuple[int, int]:
    """Make opening fetch exactly the header and exactly the index (as it does for an archive
    over 128 KiB, whose tiles lie outside both), so that the tile requests can be counted on
    a small archive; the two sizes."""
    with ArchiveReader(local) as opened:
        head, tail = opened.data_start, 24 + 16 * opened.tile_count
    monkeypatch.setattr(archive_module, "HEAD_BYTES", head)
    monkeypatch.setattr(archive_module, "TAIL_BYTES", tail)
    return head, tail


def test_urls_and_runs():
    assert is_url("https://example.org/a.grsc") and is_url("s3://bucket/a.grsc")
    assert is_url("simplecache::s3://bucket/a.grsc")
    assert not is_url("a.grsc") and not is_url("C:\\data\\a.grsc") and not is_url(Path("a"))
    assert url_name("https://example.org/x/scene.grsc?X-Amz-Signature=abc") == "scene.grsc"
    assert merge_runs([(30, 40), (0, 10), (10, 20), (41, 50)]) == [(0, 20), (30, 40), (41, 50)]
    assert tail_bytes(100_000) == TAIL_BYTES and tail_bytes(2**30) == MAX_TAIL_BYTES
    assert tail_bytes(64 * 2**20) == 2**19  # an index of 32,766 tiles fits


def test_region_of_a_remote_archive_in_few_requests(site, server, monkeypatch):
    head, tail = _tiles_apart(monkeypatch, site / "a.grsc")
    url = f"{server.url}/a.grsc"
    with georsic.open(site / "a.grsc") as local, georsic.open(url) as remote:
        opening = server.requests("a.grsc")
        assert [r.method for r in opening].count("HEAD") == 1
        gets = [r for r in opening if r.method == "GET"]
        size = local._reader.size
        tail = tail_bytes(size, tail)
        assert sorted(r.range for r in gets) == sorted(
            [f"bytes=0-{head - 1}", f"bytes={size - tail}-{size - 1}"])
        assert remote.header == local.header and remote.tile_count == 6
        assert remote.describe().replace(url, "X") == local.describe().replace(
            str(local.path), "X")

        window = Window(0, 0, 80, 70)
        needed = [t.index for t in remote.grid.tiles_in(window)]
        assert needed == [0, 1, 3, 4]  # two runs of adjacent tiles: 0-1 and 3-4
        server.reset()
        pixels = remote.read(window, device="cpu", threads=2)
        runs = merge_runs([(local._reader._index[n][0],
                            local._reader._index[n][0] + 16 + local._reader._index[n][1])
                           for n in needed])
        assert len(runs) == 2
        assert sorted(r.range for r in server.requests("a.grsc")) == sorted(
            f"bytes={start}-{end - 1}" for start, end in runs)
        assert np.array_equal(pixels, local.read(window, device="cpu", threads=2))

        server.reset()  # the same region inline (one thread): the same two requests
        assert np.array_equal(remote.read(window, device="cpu", threads=1), pixels)
        assert len(server.requests("a.grsc")) == 2


def test_small_archive_comes_whole_in_one_request(site, server, tmp_path, capsys):
    url = f"{server.url}/a.grsc"
    georsic.decompress(url, tmp_path / "remote.tif", device="cpu")
    assert [r.method for r in server.requests()] == ["HEAD", "GET"]  # 2 x 64 KiB covers it
    georsic.decompress(site / "a.grsc", tmp_path / "local.tif", device="cpu")
    with rasterio.open(tmp_path / "remote.tif") as a, rasterio.open(tmp_path / "local.tif") as b:
        assert np.array_equal(a.read(), b.read()) and a.profile == b.profile

    # the command line: info, verify, decompress of a region by bounds, stac
    assert main(["info", url]) == 0
    assert f"archive:   {url}" in capsys.readouterr().out
    assert main(["verify", url, str(site / "a.grsc")]) == 0
    out = capsys.readouterr().out
    assert f"{url}: ok (6 tile(s) intact" in out and "a.grsc: ok" in out
    with georsic.open(site / "a.grsc") as local:
        left, bottom, right, top = local.bounds
    bounds = f"{left},{bottom + 3},{left + 5},{top}"
    assert main(["decompress", url, str(tmp_path / "r.tif"), "--bounds", bounds, "--device",
                 "cpu", "--quiet"]) == 0
    assert main(["decompress", str(site / "a.grsc"), str(tmp_path / "l.tif"), "--bounds",
                 bounds, "--device", "cpu", "--quiet"]) == 0
    with rasterio.open(tmp_path / "r.tif") as a, rasterio.open(tmp_path / "l.tif") as b:
        assert a.shape == b.shape == (50, 50) and np.array_equal(a.read(), b.read())


def _cut(data: bytes, site: Path) -> bytes:
    with ArchiveReader(site / "a.grsc") as opened:
        return data[:opened._index[3][0] + 30]  # tiles 0-2 whole, 3-5 lost


DAMAGE = {
    "cut short": lambda data, site: _cut(data, site),
    "junk appended": lambda data, site: data + b"\x00GRTL" + bytes(range(200)),
    "header byte flipped": lambda data, site: data[:20] + bytes([data[20] ^ 0xFF]) + data[21:],
    "index byte flipped": lambda data, site: data[:-30] + bytes([data[-30] ^ 1]) + data[-29:],
    "footer lost": lambda data, site: data[:-24],
    "not an archive": lambda data, site: b"II*\x00" + data[4:],
    "empty": lambda data, site: b"",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_remote_archive_fails_as_the_local_one(site, server, damage):
    folder = site / "damaged"
    folder.mkdir(exist_ok=True)
    path = folder / f"{damage.replace(' ', '_')}.grsc"
    path.write_bytes(DAMAGE[damage]((site / "a.grsc").read_bytes(), site))
    url = f"{server.url}/damaged/{path.name}"
    local_error = _errors(lambda: georsic.open(path))
    assert local_error.startswith("ArchiveError: ")
    assert _errors(lambda: georsic.open(url)) == local_error
    if damage in ("cut short", "junk appended"):  # recovered alike: same tiles, same pixels
        with georsic.open(path, recover=True) as a, georsic.open(url, recover=True) as b:
            assert b._reader.missing == a._reader.missing
            assert [str(e) for e in b.verify()] == [str(e) for e in a.verify()]
            window = Window(0, 0, 40, 40)
            assert np.array_equal(b.read(window, device="cpu"), a.read(window, device="cpu"))


def test_damaged_remote_tile_is_named_as_the_local_one(site, server, tmp_path):
    damaged = damaged_copy(site / "a.grsc", site / "tile4.grsc", tile=4)
    url = f"{server.url}/tile4.grsc"
    with georsic.open(damaged) as local, georsic.open(url) as remote:
        expected = [str(e) for e in local.verify()]
        assert len(expected) == 1 and "tile 4 (row 1, col 1)" in expected[0]
        assert [str(e) for e in remote.verify()] == expected
        assert _errors(lambda: remote.read(device="cpu")) == \
            _errors(lambda: local.read(device="cpu"))
    errors: list[str] = []
    georsic.decompress(url, tmp_path / "o.tif", device="cpu", ignore_errors=True,
                       errors=errors)
    assert len(errors) == 1 and "tile 4" in errors[0]


def test_missing_or_unreachable_urls_are_one_line_errors(server, capsys, tmp_path):
    for args in (["info", f"{server.url}/nothing.grsc"],
                 ["decompress", f"{server.url}/nothing.grsc", str(tmp_path / "o.tif")]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"georsic: error: archive {server.url}/nothing.grsc does not exist"]
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="nothing.grsc does not exist"):
        georsic.open(f"{server.url}/nothing.grsc")
    with pytest.raises(InputError, match="cannot read nosuchprotocol://x/a.grsc"):
        georsic.open("nosuchprotocol://x/a.grsc")
    with range_server(tmp_path) as gone:
        url = f"{gone.url}/a.grsc"
    with pytest.raises(InputError, match=f"cannot read {url}: ") as caught:
        georsic.open(url)  # nothing listens there any more
    assert "does not exist" not in str(caught.value)


def test_a_server_without_ranges_still_gives_the_right_pixels(site, monkeypatch):
    _tiles_apart(monkeypatch, site / "a.grsc")
    with range_server(site, ranges=False) as plain, georsic.open(site / "a.grsc") as local, \
            georsic.open(f"{plain.url}/a.grsc") as remote:
        window = Window(50, 10, 60, 60)
        assert np.array_equal(remote.read(window, device="cpu"),
                              local.read(window, device="cpu"))


def test_to_xarray_of_a_remote_archive_reads_only_its_tiles(site, server, monkeypatch):
    import dask

    _tiles_apart(monkeypatch, site / "a.grsc")
    url = f"{server.url}/a.grsc"
    with georsic.open(url) as remote, georsic.open(site / "a.grsc") as local, \
            dask.config.set(scheduler="threads"):
        array = remote.to_xarray()
        assert array.name == "a" and array.rio.crs == local.info.crs
        server.reset()
        before = reader.decoded_tiles(url)
        corner = array.isel(y=slice(0, 20), x=slice(0, 20)).values
        assert reader.decoded_tiles(url) - before == 1
        # this process opened the URL once more for its tasks (HEAD and two ranges), then
        # fetched the one tile
        assert [r.method for r in server.requests()].count("HEAD") <= 1
        assert len([r for r in server.requests() if r.method == "GET"]) <= 3
        assert np.array_equal(corner, local.read(Window(0, 0, 20, 20), device="cpu",
                                                 threads=1))


def test_dask_workers_fetch_their_own_tiles(site, server):
    distributed = pytest.importorskip("distributed")
    from georsic.cluster import local_cluster

    url = f"{server.url}/a.grsc"
    window = Window(40, 0, 120, 80)
    with local_cluster(1, None, host="127.0.0.1") as cluster, \
            distributed.Client(cluster) as client, georsic.open(url) as remote, \
            georsic.open(site / "a.grsc") as local:
        server.reset()
        before = reader.decoded_tiles(url)
        pixels = remote.read(window, device="cpu", client=client)
        assert reader.decoded_tiles(url) == before  # nothing decoded (or fetched) here
        opened = client.run(lambda: [key for key, _ in reader._REMOTE])
        assert len(next(iter(opened.values()))) == 1  # the worker opened the URL itself
        assert [r.method for r in server.requests()].count("HEAD") == 1  # the worker's
        expected = local.read(window, device="cpu", threads=1)
        diff = np.abs(pixels.astype(int) - expected.astype(int))
        assert diff.max() <= 1 and np.count_nonzero(diff) <= diff.size / 1000


# ---- an S3-compatible server (moto's, on the loopback address)

@pytest.fixture()
def s3(site):
    """A moto S3 server on 127.0.0.1 with bucket ``tiles`` holding ``a.grsc`` and a damaged
    copy; its storage options for fsspec; and the GET requests it answered."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    served = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    served.start()
    requests: list[str] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            requests.append(record.getMessage())

    handler = Count()
    logging.getLogger("werkzeug").addHandler(handler)
    try:
        host, port = served.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket="tiles")
        client.put_object(Bucket="tiles", Key="a.grsc", Body=(site / "a.grsc").read_bytes())
        damaged = damaged_copy(site / "a.grsc", site / "s3-damaged.grsc", tile=2)
        client.put_object(Bucket="tiles", Key="damaged.grsc", Body=damaged.read_bytes())
        options = {"key": "testing", "secret": "testing", "endpoint_url": endpoint}
        yield options, requests
    finally:
        logging.getLogger("werkzeug").removeHandler(handler)
        served.stop()


def test_s3_archive_reads_as_the_local_one(site, s3, monkeypatch):
    options, requests = s3
    _tiles_apart(monkeypatch, site / "a.grsc")
    with georsic.open("s3://tiles/a.grsc", storage_options=options) as remote, \
            georsic.open(site / "a.grsc") as local:
        assert remote.name == "a.grsc" and remote.header == local.header
        opening = [r for r in requests if "/tiles/a.grsc " in r]
        assert ["HEAD" in r for r in opening].count(True) == 1  # size and ETag
        assert ["GET" in r for r in opening].count(True) == 2  # header, index
        del requests[:]
        window = Window(0, 0, 80, 70)  # tiles 0, 1, 3, 4: two runs
        assert np.array_equal(remote.read(window, device="cpu"),
                              local.read(window, device="cpu"))
        assert len([r for r in requests if "GET /tiles/a.grsc" in r]) == 2, requests
    with georsic.open("s3://tiles/damaged.grsc", storage_options=options) as remote, \
            georsic.open(site / "s3-damaged.grsc") as local:
        assert [str(e).replace("s3-damaged", "damaged") for e in local.verify()] == \
            [str(e) for e in remote.verify()]
    with pytest.raises(InputError, match="s3://tiles/none.grsc does not exist"):
        georsic.open("s3://tiles/none.grsc", storage_options=options)


def test_s3_credentials_from_the_environment(site, s3, monkeypatch, capsys):
    options, _ = s3  # the command line: botocore's environment variables, no options
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", options["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", options["secret"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", options["endpoint_url"])
    assert main(["verify", "s3://tiles/a.grsc", "s3://tiles/damaged.grsc"]) == 4
    out, err = capsys.readouterr()
    assert "s3://tiles/a.grsc: ok (6 tile(s) intact" in out
    assert "s3://tiles/damaged.grsc: 1 problem(s)" in err and \
        "damaged.grsc: tile 2 (row 0, col 2) is corrupt (checksum mismatch)" in err


def test_remote_output_check_keeps_refusing_the_input(site, server, tmp_path):
    # the output-is-input check of a local archive still holds, and a URL input never
    # blocks a local output
    copy = tmp_path / "a.grsc"
    shutil.copy(site / "a.grsc", copy)
    with pytest.raises(GeorsicError, match="is the input"):
        georsic.decompress(copy, copy, overwrite=True)
    out = georsic.decompress(f"{server.url}/a.grsc", tmp_path / "a.tif", device="cpu")
    assert out.exists() and os.path.getsize(out) > 0
    assert _errors(lambda: georsic.open(tmp_path)) == f"InputError: archive {tmp_path} is not " \
        "a file"


def test_a_remote_geotiff_is_not_an_archive(site, server):
    with pytest.raises(ArchiveError, match="s.tif: not a GeoRSIC archive"):
        georsic.open(f"{server.url}/s.tif")
