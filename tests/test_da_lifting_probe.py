"""benchmarks/da_lifting_probe.py: its directional lifting is the codec's 9/7 where every map is
zero, inverts exactly whatever the maps, and the decoder gets its own synthesis back afterwards."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import load_benchmark

from codec import wavelet


@pytest.fixture(scope="module")
def da():
    return load_benchmark("da_lifting_probe")


@pytest.mark.parametrize("shape", [(37, 50), (64, 64), (33, 17)])
def test_zero_maps_are_the_codec_transform_and_any_maps_invert(da, shape):
    rng = np.random.default_rng(0)
    h, w = shape
    x = rng.standard_normal(shape)
    levels = wavelet.levels_for(w, h)
    ll, bands = da.analyse(x, levels, [(None, None)] * levels, 8)
    ll0, bands0 = wavelet.analyse(x, levels)
    assert np.array_equal(ll, ll0)
    assert all(np.array_equal(a, b) for lv, lv0 in zip(bands, bands0) for a, b in zip(lv, lv0))
    maps = da.choose_maps(x, levels, 2, 8, 0.0)  # every block free to choose
    assert any(m is not None and m.any() for pair in maps for m in pair)  # some block is directional
    ll, bands = da.analyse(x, levels, maps, 8)
    assert not np.allclose(bands[0][0], bands0[0][0])
    with da.directional(maps, 8):
        y = wavelet.synthesise(ll, bands, h, w)
    assert np.abs(y - x).max() < 1e-5  # float32 out


def test_the_plain_synthesis_comes_back_after_an_error(da):
    original = wavelet.synthesise
    with pytest.raises(RuntimeError), da.directional([(None, None)], 8):
        assert wavelet.synthesise is da.synthesise
        raise RuntimeError
    assert wavelet.synthesise is original
