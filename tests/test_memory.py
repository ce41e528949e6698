"""Peak memory flat in the raster's size: what the command line sets up for it.

The peak itself is measured by ``georsic bench memory`` (benchmarks/results/memory_v3.md), not
by a timed test; these check the settings that keep it flat.
"""

from __future__ import annotations

import io
import os
import sys

import pytest
import rasterio
import torch

from georsic import cli
from georsic.blockcache import MIN_MB
from georsic.defaults import GDAL_CACHE_MB


def test_command_line_leaves_the_block_cache_to_each_run(monkeypatch):
    """Each compress or decompress sizes GDAL's block cache to its raster, up to
    GDAL_CACHE_MB (georsic.blockcache, tests/test_blockcache.py): the command line's
    environment fixes none that would override it."""
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    with cli._gdal_env():
        assert "GDAL_CACHEMAX" not in rasterio.env.getenv()
    assert GDAL_CACHE_MB >= MIN_MB  # the cap is above the floor a run sets


def test_a_users_gdal_cachemax_is_kept(monkeypatch):
    monkeypatch.setenv("GDAL_CACHEMAX", "512")
    with cli._gdal_env():
        assert "GDAL_CACHEMAX" not in rasterio.env.getenv()


def test_onnxruntime_sessions_keep_no_arena():
    """ONNX Runtime's arena kept every block it allocated and grew with each tile shape."""
    from georsic.models.runtime import OrtTransform, onnxruntime_available

    if not onnxruntime_available():
        pytest.skip("onnxruntime not installed")
    net = torch.nn.Conv2d(3, 4, 3, padding=1).eval()
    buffer = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(1, 3, 8, 8),), buffer, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {2: "h", 3: "w"}},
                      dynamo=False, opset_version=17)
    transform = OrtTransform(buffer.getvalue())
    assert transform._session.get_session_options().enable_cpu_mem_arena is False
    x = torch.rand(1, 3, 13, 9)
    assert torch.allclose(transform(x), net(x), atol=1e-5)


def test_command_line_fixes_glibcs_mmap_threshold(monkeypatch):
    """Tile-sized arrays get pages of their own in the command line's runs (and in the Dask
    workers it starts, through the variable); a user's own setting is kept."""
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    cli._fixed_mmap_threshold()
    if sys.platform.startswith("linux"):
        assert int(os.environ["MALLOC_MMAP_THRESHOLD_"]) == cli.MMAP_THRESHOLD
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    cli._fixed_mmap_threshold()
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == "1048576"


def _first_lines_of(code: str, env: dict[str, str]) -> list[str]:
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    return done.stdout.splitlines()


_CLI = ("import os, sys; print('tunables', os.environ.get('GLIBC_TUNABLES')); "
        "sys.argv = ['georsic', {args}]; from georsic.cli import run; sys.exit(run())")


@pytest.mark.skipif(cli._transparent_huge_pages() != "madvise",
                    reason="the kernel's transparent huge pages are not on request (madvise)")
def test_codec_commands_start_again_with_huge_pages(tmp_path):
    """A codec command from the command line (``run``, the ``georsic`` entry point) runs in a
    process whose malloc asks for huge pages (the first one starts it again with
    GLIBC_TUNABLES); a light one, a user's own GLIBC_TUNABLES and main(), with arguments or
    with sys.argv (as a program or a test may call it), run as started."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    missing = str(tmp_path / "missing.tif")
    lines = _first_lines_of(_CLI.format(args=f"'estimate', {missing!r}"), env)
    assert lines == ["tunables None", f"tunables {cli.HUGE_PAGES_TUNABLE}"]
    assert _first_lines_of(_CLI.format(args=f"'info', {missing!r}"), env) == ["tunables None"]
    mine = dict(env, GLIBC_TUNABLES="glibc.malloc.arena_max=2")
    lines = _first_lines_of(_CLI.format(args=f"'estimate', {missing!r}"), mine)
    assert lines == ["tunables glibc.malloc.arena_max=2"]
    called = ("import os; print('tunables', os.environ.get('GLIBC_TUNABLES')); "
              f"from georsic.cli import main; main(['estimate', {missing!r}])")
    assert _first_lines_of(called, env) == ["tunables None"]
    from_argv = ("import os, sys; print('tunables', os.environ.get('GLIBC_TUNABLES')); "
                 f"sys.argv = ['georsic', 'estimate', {missing!r}]; "
                 "from georsic.cli import main; main()")
    assert _first_lines_of(from_argv, env) == ["tunables None"]


@pytest.mark.skipif(cli._transparent_huge_pages() != "madvise",
                    reason="the kernel's transparent huge pages are not on request (madvise)")
def test_importing_georsic_asks_torch_for_huge_pages():
    """The Python API (and QGIS) get torch's huge pages too: importing georsic before torch sets
    THP_MEM_ALLOC_ENABLE, unless the user set it."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    code = "import os, georsic; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
    assert _first_lines_of(code, env) == ["1"]
    assert _first_lines_of(code, dict(env, THP_MEM_ALLOC_ENABLE="0")) == ["0"]
