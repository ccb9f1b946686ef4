"""The heap of start-up leaves the garbage collector's passes while an app serves, and returns after."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from fastapi.testclient import TestClient

from service.gcfreeze import freeze_heap, thaw_heap


def _tracked(obj: object) -> bool:
    """`obj` is in a generation the collector walks (the permanent generation is not listed)."""
    return any(o is obj for o in gc.get_objects())


def _wait_frozen() -> None:
    deadline = time.monotonic() + 10
    while gc.get_freeze_count() == 0:  # the freeze follows the registry load, as readiness turns
        assert time.monotonic() < deadline, "the heap was never frozen"
        time.sleep(0.01)


def test_freeze_moves_what_exists_out_of_the_passes_and_thaw_brings_it_back() -> None:
    thaw_heap()
    before: list[object] = [object()]
    frozen = freeze_heap()
    try:
        # frozen objects may be freed since (by any thread, e.g. the Spark session's): never more
        assert 0 < gc.get_freeze_count() <= frozen
        assert not _tracked(before)
        after: list[object] = [object()]  # allocated since: walked as usual
        assert _tracked(after)
    finally:
        thaw_heap()
    assert gc.get_freeze_count() == 0 and _tracked(before)


def test_an_app_freezes_the_heap_once_loaded_and_thaws_it_at_shutdown(
    make_client: Callable[..., AbstractContextManager[TestClient]],
) -> None:
    thaw_heap()
    before: list[Any] = [object()]
    with make_client() as client:
        _wait_frozen()
        assert not _tracked(before)
        assert client.get("/health/live").status_code == 200
    assert gc.get_freeze_count() == 0 and _tracked(before)


def test_freeze_heap_false_leaves_the_collector_alone(
    make_client: Callable[..., AbstractContextManager[TestClient]],
) -> None:
    thaw_heap()
    with make_client(freeze_heap=False) as client:
        assert client.get("/health/ready").status_code == 200
        time.sleep(0.2)
        assert gc.get_freeze_count() == 0
