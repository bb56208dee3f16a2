"""Erasure on a local run's stores: nothing of the shopper left anywhere (every bucket, version, table and
workdir file, found by a scan), others kept, a crash mid-way finished by a rerun, an audit without the id."""

from __future__ import annotations

import base64
import gzip
import io
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from lambdas.erasure import core
from lambdas.erasure import handler as erasure_lambda
from recsys.local.erasure import forget_locally
from settings.erasure import ENV_BUCKET, ENV_STORES, erasure_stores
from tests.erasure.conftest import OTHERS, Shop


def _everything(shop: Shop) -> list[core.Store]:
    s3, ddb = shop.aws.client("s3"), shop.aws.client("dynamodb")
    return core.every_store(s3, ddb, [shop.workdir])


def _all_bytes(shop: Shop) -> list[tuple[str, bytes]]:
    """Every object version of every bucket and every workdir file, decompressed: what an auditor could read."""
    s3 = shop.aws.client("s3")
    out = []
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []):
                body = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
                out.append((f"s3://{bucket}/{v['Key']}", gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body))
    out += [(str(p), p.read_bytes()) for p in shop.workdir.rglob("*") if p.is_file()]
    return out


def _readable_text(name: str, body: bytes) -> str:
    if name.endswith(".parquet"):
        return pq.read_table(io.BytesIO(body)).to_pandas().to_csv(index=False)
    return body.decode("utf-8", errors="replace")


def test_the_fixture_puts_the_shopper_in_every_store(shop: Shop) -> None:
    found = core.find_everywhere(shop.user, _everything(shop))
    assert len(found) == 5  # source, destination, results buckets, the table, the workdir
    assert any(k.startswith("dynamodb:") for k in found)
    in_workdir = " ".join(found[str(shop.workdir)])
    assert all(f"/{d}/" in in_workdir for d in ("raw", "lake", "pipeline", "capture"))


def test_forget_leaves_no_trace_in_any_bucket_version_table_or_file_and_keeps_the_others(shop: Shop) -> None:
    done = forget_locally(shop.cfg, shop.user, shop.workdir, shop.aws, shop.res.buckets)

    assert done.gone, done.findings
    assert core.find_everywhere(shop.user, _everything(shop)) == {}
    for other in OTHERS:  # nobody else lost a row: every store still holds the others
        assert len(core.find_everywhere(other, _everything(shop))) == 5
    removed = done.result.summary()
    assert removed["raw"] == 3 + 3 + 1 + 1 + 4  # two interaction versions, old + current users, stream + broken
    assert removed["recent items"] == 1 and removed["captured requests"] == 1
    assert removed["curated"] == 3 + 1 and removed["athena results"] == 3
    assert done.result.removed["raw"].versions_deleted >= 4
    # byte level, independent of the erasure's own parser: the id appears as a value nowhere
    for name, body in _all_bytes(shop):
        text = _readable_text(name, body)
        assert '"u17"' not in text and "\nu17," not in text and ",u17," not in text, name


def test_a_rerun_after_a_crash_finishes_the_job_under_the_same_request(shop: Shop) -> None:
    class Crash(RuntimeError):
        pass

    def crash_after_curated(store: str, _removed: core.Removed) -> None:
        if store == "curated":
            raise Crash(store)

    with pytest.raises(Crash):
        forget_locally(shop.cfg, shop.user, shop.workdir, shop.aws, shop.res.buckets, after_store=crash_after_curated)
    left = core.find_everywhere(shop.user, _everything(shop))
    curated = f"s3://{shop.res.destination_bucket}/curated/"
    assert left and not any(p.startswith(curated) for places in left.values() for p in places)  # half done
    records = core.S3Records(shop.aws.client("s3"), shop.res.destination_bucket)
    suppression = records.get(core.SUPPRESSION_KEY)
    assert suppression and len(suppression["user_keys"]) == 1  # suppressed before the first store

    done = forget_locally(shop.cfg, shop.user, shop.workdir, shop.aws, shop.res.buckets)

    assert done.gone and done.result.resumed
    assert done.result.removed["raw"].total == 12  # the first attempt's counts kept in the record
    again = forget_locally(shop.cfg, shop.user, shop.workdir, shop.aws, shop.res.buckets)
    assert again.gone and not again.result.resumed and sum(again.result.summary().values()) == 0


def test_the_audit_record_names_the_request_and_counts_but_not_the_shopper(shop: Shop) -> None:
    done = forget_locally(shop.cfg, shop.user, shop.workdir, shop.aws, shop.res.buckets)
    s3 = shop.aws.client("s3")
    body = s3.get_object(Bucket=shop.res.destination_bucket, Key=done.result.audit_key)["Body"].read().decode()
    audit = json.loads(body)
    assert shop.user not in body
    assert audit["request_id"] == done.result.request_id and audit["stores"]["raw"]["rows"] == 12
    key = bytes.fromhex(json.loads(s3.get_object(Bucket=shop.res.destination_bucket, Key=core.SUPPRESSION_KEY)
                                   ["Body"].read())["key"])  # fmt: skip
    assert audit["subject_hash"] == core.user_key(shop.user, key)  # reversible only with the key
    assert (shop.workdir / "lake" / done.result.audit_key).is_file()


def test_the_lambda_handler_runs_the_same_erasure_with_its_store_list(shop: Shop, monkeypatch) -> None:
    specs = erasure_stores(source=shop.res.source_bucket, destination=shop.res.destination_bucket,
                           results=shop.res.athena_results_bucket, recent_items_table=None)  # fmt: skip
    specs.append({"name": "recent items", "table": f"{shop.cfg.prefix}-recent-items"})
    tables = shop.aws.client("dynamodb").list_tables()["TableNames"]
    specs[-1]["table"] = tables[0]
    monkeypatch.setenv(ENV_STORES, json.dumps(specs))
    monkeypatch.setenv(ENV_BUCKET, shop.res.destination_bucket)

    answer = erasure_lambda.handler({"user_id": shop.user}, None, s3=shop.aws.client("s3"),
                                    dynamodb=shop.aws.client("dynamodb"))  # fmt: skip

    assert shop.user not in json.dumps(answer) and answer["removed"]["raw"] == 12
    aws_only = core.every_store(shop.aws.client("s3"), shop.aws.client("dynamodb"))
    assert core.find_everywhere(shop.user, aws_only) == {}
    with pytest.raises(ValueError):
        erasure_lambda.handler({"user_id": " "}, None, s3=shop.aws.client("s3"), dynamodb=shop.aws.client("dynamodb"))


def test_filter_rows_matches_whole_values_in_every_format() -> None:
    csv = b"user_id,product_id\nu17,p1\nu170,p2\nu1,u17x\n"
    out, n = core.filter_rows(csv, "a.csv", "u17")
    assert n == 1 and out == b"user_id,product_id\nu170,p2\nu1,u17x\n"
    lines = b'{"user_id": "u17"}\n{"nested": {"data": "{\\"user_id\\": \\"u17\\"}"}}\n{"user_id": "u170"}\n'
    out, n = core.filter_rows(gzip.compress(lines), "a.jsonl.gz", "u17")
    assert n == 2 and gzip.decompress(out) == b'{"user_id": "u170"}\n'
    buf = io.BytesIO()
    pd.DataFrame({"user_id": ["u17", "u1"], "x": [1, 2]}).to_parquet(buf, index=False)
    out, n = core.filter_rows(buf.getvalue(), "a.parquet", "u17")
    assert n == 1 and pq.read_table(io.BytesIO(out)).to_pandas()["user_id"].tolist() == ["u1"]
    assert core.filter_rows(b"binary u17", "model.tar.gz", "u17") == (None, 0)
    encoded = base64.b64encode(b'{"user_id": "u17"}').decode()  # data capture of a content type not listed as text
    capture = json.dumps({"captureData": {"endpointInput": {"data": encoded, "encoding": "BASE64"}}}).encode()
    assert core.filter_rows(capture + b"\n", "c.jsonl", "u17")[1] == 1


def test_the_suppression_list_keeps_the_shopper_out_of_the_next_training_set(tmp_path: Path) -> None:
    from sagemaker_src import prepare_data

    frame = pd.DataFrame({"user_id": ["u17", "u1", "u17", "u2"], "product_id": ["p1", "p2", "p3", "p4"],
                          "event_type": ["view"] * 4, "timestamp": [1, 2, 3, 4]})  # fmt: skip
    records = core.DirRecords(tmp_path / "lake")
    core.forget("u17", [], [records])
    inp = tmp_path / "input"
    inp.mkdir()
    frame.to_parquet(inp / "interactions.parquet", index=False)
    (inp / prepare_data.SUPPRESSION_FILE).write_text((tmp_path / "lake" / core.SUPPRESSION_KEY).read_text())

    prepare_data.main(["--input-dir", str(inp), "--train-dir", str(tmp_path / "tr"), "--test-dir",
                       str(tmp_path / "te"), "--test-fraction", "0.5"])  # fmt: skip

    seen = pd.concat([pd.read_parquet(tmp_path / d / "interactions.parquet") for d in ("tr", "te")])
    assert sorted(seen["user_id"]) == ["u1", "u2"]


def test_the_cli_forgets_from_a_live_local_aws_and_the_workdir_and_exits_0_when_gone(shop: Shop, capsys) -> None:
    from recsys.cli import main

    assert main(["forget", "--user-id", shop.user, "--workdir", str(shop.workdir), "--endpoint-url", shop.aws.url]) == 0
    out = capsys.readouterr().out
    assert "user gone everywhere: yes" in out and "recent items 1" in out
    assert core.find_everywhere(shop.user, _everything(shop)) == {}
    assert main(["forget", "--user-id", shop.user, "--workdir", str(shop.workdir / "nope")]) == 2
