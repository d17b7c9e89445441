"""BD-rate and BD-PSNR on curves with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from codec.bdrate import bd_psnr, bd_rate

RATE = np.array([0.1, 0.25, 0.5, 1.0, 2.0])
PSNR = np.array([26.0, 29.0, 32.0, 35.5, 39.0])


def test_curve_against_itself_is_zero():
    assert bd_rate(RATE, PSNR, RATE, PSNR) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(RATE, PSNR, RATE, PSNR) == pytest.approx(0.0, abs=1e-9)


def test_rates_times_09_give_minus_10_percent():
    assert bd_rate(RATE, PSNR, RATE * 0.9, PSNR) == pytest.approx(-10.0, abs=1e-6)
    assert bd_rate(RATE, PSNR, RATE * 1.25, PSNR) == pytest.approx(25.0, abs=1e-6)


def test_psnr_shift_gives_bd_psnr_and_order_does_not_matter():
    assert bd_psnr(RATE, PSNR, RATE, PSNR + 1.0) == pytest.approx(1.0, abs=1e-9)
    perm = [3, 0, 4, 1, 2]
    assert bd_rate(RATE[perm], PSNR[perm], RATE * 0.8, PSNR) == pytest.approx(-20.0, abs=1e-6)


def test_needs_points_and_overlap():
    with pytest.raises(ValueError):
        bd_rate(RATE[:3], PSNR[:3], RATE, PSNR)
    with pytest.raises(ValueError):
        bd_rate(RATE, PSNR, RATE, PSNR + 50)
