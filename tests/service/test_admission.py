"""Admission control: the weighted memory budget, the bound on requests, releases."""

from __future__ import annotations

import pytest

from service.admission import Admission
from service.errors import Overloaded
from service.settings import Settings


def _admission(**kw: int) -> Admission:
    return Admission(Settings(**kw))


def test_the_budget_counts_weighted_bytes_and_a_lone_request_always_passes() -> None:
    a = _admission(max_inflight_bytes=1000)
    lone = a.enter(5000, weight=4)  # over the budget alone: admitted (MAX_BODY_BYTES bounds it)
    assert a.bytes == 20_000
    with pytest.raises(Overloaded) as info:
        a.enter(10, weight=2)
    assert info.value.status_code == 503 and info.value.headers == {"Retry-After": "1"}
    assert a.shed == {"bytes": 1, "requests": 0} and a.requests == 1  # the refused one is not kept
    lone.release()
    lone.release()  # twice: no effect
    assert a.bytes == 0 and a.requests == 0
    t1, t2 = a.enter(200, weight=2), a.enter(300, weight=1)
    assert a.bytes == 700
    with pytest.raises(Overloaded, match="MAX_INFLIGHT_BYTES"):
        t2.grow(301)  # a chunked body that keeps coming: shed, and its reservation released
    assert a.bytes == 400 and a.requests == 1
    t1.release()


def test_requests_past_concurrency_plus_queue_are_shed() -> None:
    a = _admission(max_concurrency=2, max_queue=1)
    tickets = [a.enter(None, weight=1) for _ in range(3)]
    with pytest.raises(Overloaded, match=r"MAX_CONCURRENCY \+ MAX_QUEUE"):
        a.enter(None, weight=1)
    assert a.shed["requests"] == 1
    tickets[0].release()
    a.enter(None, weight=1)


def test_a_predicted_answer_is_reserved_too() -> None:
    a = _admission(max_inflight_bytes=1000)
    first, second = a.enter(100, weight=2), a.enter(100, weight=2)
    first.reserve(500)  # its answer: 700 held in all, under the budget
    with pytest.raises(Overloaded, match="request bodies and answers"):
        second.reserve(400)
    assert a.bytes == 700 and a.requests == 1
    first.release()
    assert a.bytes == 0


def test_a_body_read_past_what_is_held_grows_its_reservation() -> None:
    """`cover`: the one rule the body readers (the shortcut, Try-it's upload, the ASGI reader) use
    for a body without Content-Length: nothing while within what is held, then the difference."""
    a = _admission(max_inflight_bytes=1000)
    other = a.enter(100, weight=2)
    t = a.enter(None, weight=3)
    t.cover(0)
    assert t.held == 0
    t.cover(10)
    assert t.held == 30 and a.bytes == 230
    t.cover(10)  # the same size again: nothing more
    assert t.held == 30
    with pytest.raises(Overloaded, match="MAX_INFLIGHT_BYTES"):
        t.cover(400)  # 1,200 weighted bytes would pass the budget: shed, released
    assert a.bytes == 200 and a.requests == 1
    other.release()
