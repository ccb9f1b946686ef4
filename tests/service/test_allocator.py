"""The glibc allocator thresholds: mallopt must accept both (wrong parameter numbers return 0)."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from service.allocator import tune_allocator


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)
def test_glibc_accepts_the_thresholds() -> None:
    assert tune_allocator() is True
    # large buffers still allocate, fill and free normally afterwards
    for size in (200_000, 3_000_000, 40_000_000):
        a = np.ones(size, np.uint8)
        assert int(a.sum()) == size
        del a


def test_other_platforms_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert tune_allocator() is False
