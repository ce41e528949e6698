"""Batch over folder trees: outputs keep the tree, clashing outputs are refused up front."""

from __future__ import annotations

import shutil

from test_errors import assert_clean_failure, run_cli


def small_tree(root, data_dir):
    """in/x/a.tif, in/y/a.tif (same name, other folder) and in/b.tif, 200x200 RGB each."""
    source = data_dir / "solaris_rgb_unmasked.tif"
    for relative in ("x/a.tif", "y/a.tif", "b.tif"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / relative)
    return root


def files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_recursive_batch_keeps_the_tree(tmp_path, data_dir):
    tree = small_tree(tmp_path / "in", data_dir)
    result = run_cli("batch", "compress", tree, "-o", tmp_path / "out", "--recursive", "-q", "1")
    assert result.returncode == 0, result.stderr
    assert files(tmp_path / "out") == ["b.grsc", "x/a.grsc", "y/a.grsc"]
    result = run_cli("batch", "decompress", tmp_path / "out", "-o", tmp_path / "back", "-r")
    assert result.returncode == 0, result.stderr
    assert files(tmp_path / "back") == ["b.tif", "x/a.tif", "y/a.tif"]
    result = run_cli("verify", tmp_path / "out", "-r")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok (") == 3
    # without --recursive a folder gives only its own files
    result = run_cli("batch", "compress", tree, "-o", tmp_path / "flat", "-q", "1")
    assert result.returncode == 0, result.stderr
    assert files(tmp_path / "flat") == ["b.grsc"]


def test_two_inputs_for_one_output_are_refused_before_any_work(tmp_path, data_dir):
    tree = small_tree(tmp_path / "in", data_dir)
    result = run_cli("batch", "compress", tree / "x" / "a.tif", tree / "y" / "a.tif",
                     "-o", tmp_path / "out")
    assert_clean_failure(result, 2, "would both be written to")
    assert not (tmp_path / "out").exists()


def test_batch_fits_each_file_to_the_target(tmp_path, data_dir):
    (tmp_path / "in").mkdir()
    shutil.copy(data_dir / "solaris_rgb_unmasked.tif", tmp_path / "in" / "a.tif")
    shutil.copy(data_dir / "osbs_aerial_rgb.tif", tmp_path / "in" / "b.tif")
    result = run_cli("batch", "compress", tmp_path / "in", "-o", tmp_path / "out",
                     "--target-bpp", "0.3")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("meets 0.3 bpp") == 2  # one fit per file, each said
    qualities = [float(line.rsplit("quality ", 1)[1]) for line in result.stdout.splitlines()
                 if " -> " in line]
    assert len(qualities) == 2 and qualities[0] != qualities[1]  # fitted per file
