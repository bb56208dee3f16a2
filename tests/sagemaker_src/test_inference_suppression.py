"""The endpoint honours the erasure suppression list: the next answer for a forgotten shopper is a new shopper's,
the list written by the erasure's own code, re-read cheaply (a file by mtime, S3 by ETag on a timer)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lambdas.erasure import core
from settings import erasure as erasure_settings
from tests.tiny_model import train_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import inference

    return inference.model_fn(str(train_tiny_model(tmp_path_factory.mktemp("suppression"))))


def _ask(model, user_id: str) -> dict:
    import inference

    answer = inference.predict_fn({"user_id": user_id, "k": 5}, model)
    return {k: v for k, v in answer.items() if k != "recommendation_id"}


def _known_shopper(model) -> str:
    return str(model.users.ids[len(model.users.ids) // 2])


def test_a_forgotten_shopper_gets_a_new_shoppers_answer_at_once_and_the_others_keep_theirs(
    model, tmp_path: Path, monkeypatch
) -> None:
    user, other = _known_shopper(model), str(model.users.ids[0])
    records = core.DirRecords(tmp_path)
    monkeypatch.setenv(erasure_settings.SUPPRESSION_ENV, str(tmp_path / core.SUPPRESSION_KEY))
    before, other_before = _ask(model, user), _ask(model, other)
    new_shopper = _ask(model, "never-seen-shopper")
    assert before["strategy"].startswith("personalized") and new_shopper["strategy"] in ("popular", "trending")

    core.forget(user, [], [records])  # the erasure's first step: the list, before any store

    after = _ask(model, user)
    assert after["user_id"] == user and after["strategy"] == new_shopper["strategy"]
    assert after["recommendations"] == new_shopper["recommendations"]
    assert _ask(model, other) == other_before
    import inference

    batch = inference.predict_fn({"instances": [{"user_id": user, "k": 5}, {"user_id": other, "k": 5}]}, model)
    assert [p["strategy"] for p in batch["predictions"]] == [new_shopper["strategy"], other_before["strategy"]]


def test_the_list_travels_with_the_registered_container_and_names_the_erasure_key() -> None:
    from recsys_core import suppression

    from pipeline_steps.definition import serving_environment

    assert (suppression.SUPPRESSION_ENV, core.SUPPRESSION_KEY) == (erasure_settings.SUPPRESSION_ENV,
                                                                   erasure_settings.SUPPRESSION_KEY)  # fmt: skip
    env = serving_environment("ap-south-1", "my-bucket")
    assert env[suppression.SUPPRESSION_ENV] == f"s3://my-bucket/{core.SUPPRESSION_KEY}"


def test_an_s3_list_is_read_once_then_only_when_its_etag_changes(aws_env, tmp_path: Path) -> None:
    from recsys_core.suppression import Suppression

    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket="dest", CreateBucketConfiguration={"LocationConstraint": aws_env.region})
    records = core.S3Records(s3, "dest")
    core.forget("u1", [], [records])
    calls: list[str] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda **_: calls.append("get"))
    listed = Suppression(f"s3://dest/{core.SUPPRESSION_KEY}", refresh_seconds=3600, s3=s3)

    assert all(listed.forgotten("u1") for _ in range(200)) and not listed.forgotten("u2")
    assert len(calls) == 1  # the first check reads it; requests never call S3
    assert listed.refresh_s3() is False and listed.loads == 1  # unchanged: a 304, nothing parsed
    core.forget("u2", [], [records])
    assert listed.refresh_s3() is True and listed.forgotten("u2") and listed.forgotten("u1")


def test_an_unreadable_list_keeps_the_last_one_read(tmp_path: Path) -> None:
    from recsys_core.suppression import Suppression

    records = core.DirRecords(tmp_path)
    core.forget("u1", [], [records])
    path = tmp_path / core.SUPPRESSION_KEY
    listed = Suppression(str(path))
    assert listed.forgotten("u1")
    path.write_text("{not json")
    os.utime(path, ns=(1, 1))
    assert listed.forgotten("u1")  # a broken write never un-suppresses anyone
    path.write_text(json.dumps(core.new_suppression()))
    assert not listed.forgotten("u1")
