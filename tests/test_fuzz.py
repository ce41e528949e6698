"""Fuzzing the archive reader, verify and decompress (hypothesis, derandomized: the same few
hundred cases every run). A damaged archive must fail with an ArchiveError or decode to
exactly the intact pixels; read with recovery, every tile not reported lost must be exact.
The mutations and checks are those of ``georsic bench fuzz`` (georsic.bench.fuzz), which
runs the long version."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testdata import DATA

from georsic.bench import fuzz

#: Derandomized: every run tries the same cases (hypothesis derives them from the test).
FUZZ = {"derandomize": True, "database": None, "deadline": None, "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow]}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    return fuzz.make_sample(DATA / "osbs_aerial_rgb.tif", folder), folder


positions = st.integers(min_value=0, max_value=10**6)


@settings(max_examples=90, **FUZZ)
@given(pos=positions, bit=st.integers(0, 7))
def test_bit_flips(sample, pos, bit):
    sample, folder = sample
    assert fuzz.check(fuzz.flip(sample.data, pos, bit), sample, folder) in ("rejected", "intact")


@settings(max_examples=50, **FUZZ)
@given(pos=positions, run=st.one_of(st.binary(min_size=1, max_size=64),
                                    st.builds(lambda b, n: bytes([b]) * n, st.integers(0, 255),
                                              st.integers(1, 64))))
def test_byte_runs(sample, pos, run):
    sample, folder = sample
    assert fuzz.check(fuzz.overwrite(sample.data, pos, run), sample, folder) in (
        "rejected", "intact")


@settings(max_examples=40, **FUZZ)
@given(pos=positions, blob=st.binary(min_size=1, max_size=40))
def test_insertions(sample, pos, blob):
    sample, folder = sample
    damaged = fuzz.insert(sample.data, pos, blob)
    assert fuzz.check(damaged, sample, folder) in ("rejected", "intact")
    assert fuzz.check_recovery(damaged, sample, folder) in ("rejected", "intact", "recovered")


@settings(max_examples=40, **FUZZ)
@given(a=positions, b=positions, size=st.integers(1, 300))
def test_swapped_chunks(sample, a, b, size):
    sample, folder = sample
    damaged = fuzz.swap(sample.data, a, b, size)
    assert fuzz.check(damaged, sample, folder) in ("rejected", "intact")
    assert fuzz.check_recovery(damaged, sample, folder) in ("rejected", "intact", "recovered")


@settings(max_examples=40, **FUZZ)
@given(keep=positions)
def test_truncation_keeps_what_arrived(sample, keep):
    sample, folder = sample
    damaged = fuzz.truncate(sample.data, keep)
    assert fuzz.check(damaged, sample, folder) == "rejected"
    assert fuzz.check_recovery(damaged, sample, folder) in ("rejected", "intact", "recovered")


@settings(max_examples=60, **FUZZ)
@given(path=st.integers(0, 10_000), value=st.sampled_from(fuzz.CRAFTED_VALUES + ("<delete>",)))
def test_crafted_header_fields(sample, path, value):
    sample, folder = sample
    damaged = fuzz.craft(sample, path, value, folder)
    assert fuzz.check(damaged, sample, folder, crafted=True) in ("rejected", "intact")


@settings(max_examples=15, **FUZZ)
@given(pos=positions, bit=st.integers(0, 7))
def test_decompress_of_flipped_archives(sample, pos, bit):
    sample, folder = sample
    damaged = fuzz.flip(sample.data, pos, bit)
    assert fuzz.check(damaged, sample, folder, decompress=True) in ("rejected", "intact")


def test_the_checks_see_wrong_pixels(sample):
    """The oracle itself: an archive of other pixels (a crafted quality) is caught as wrong."""
    sample, folder = sample
    path = next(i for i, p in enumerate(fuzz.header_paths(sample.header))
                if p == ("codec", "quality"))
    other = fuzz.craft(sample, path, 6, folder)
    with pytest.raises(fuzz.FuzzFailure, match="other pixels"):
        fuzz.check(other, sample, folder)
    assert fuzz.check(sample.data, sample, folder) == "intact"
