"""Clickstream events may echo the recommendation_id of the answer they came from (issue 14): optional."""

from __future__ import annotations

import json

import pytest

from lambdas.stream_consumer import handler as consumer


def _event(**extra: object) -> bytes:
    return json.dumps(
        {"user_id": "u1", "product_id": "p1", "event_type": "view", "timestamp": 1_700_000_000, **extra}
    ).encode()


def test_an_event_with_a_recommendation_id_is_accepted_and_keeps_it() -> None:
    assert consumer.parse_event(_event(recommendation_id=" 9f0c1e ")).get("recommendation_id") == "9f0c1e"


@pytest.mark.parametrize("value", [None, "", "   ", ["r1"], {"id": 1}, True])
def test_an_absent_blank_or_odd_recommendation_id_reads_as_none_and_never_refuses_the_event(value: object) -> None:
    parsed = consumer.parse_event(_event(recommendation_id=value))
    assert parsed["recommendation_id"] is None and parsed["product_id"] == "p1"


def test_events_without_the_field_are_valid_as_before() -> None:
    parsed = consumer.parse_event(_event())
    assert parsed["recommendation_id"] is None and parsed["event_type"] == "view"
