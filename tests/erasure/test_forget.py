"""Erasure on a local run's stores: nothing of the shopper left anywhere (every bucket, version, table and
workdir file, found by a scan), others kept, a crash mid-way finished by a rerun, an audit without the id."""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from lambdas.erasure import core
from lambdas.erasure import handler as erasure_lambda
from recsys.local.endpoint import unpack_model_archive
from recsys.local.erasure import forget_locally, report_lines
from settings.erasure import ENV_BUCKET, ENV_STORES, erasure_stores
from tests.erasure.conftest import OTHERS, Shop, model_archive


def _everything(shop: Shop) -> list[core.Store]:
    s3, ddb = shop.aws.client("s3"), shop.aws.client("dynamodb")
    return core.every_store(s3, ddb, [shop.workdir])


def _all_bytes(shop: Shop) -> list[tuple[str, bytes]]:
    """Every object version of every bucket and every workdir file: what an auditor could read."""
    s3 = shop.aws.client("s3")
    out = []
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []):
                body = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
                out.append((f"s3://{bucket}/{v['Key']}", body))
    out += [(str(p), p.read_bytes()) for p in shop.workdir.rglob("*") if p.is_file()]
    return out


def _texts(name: str, body: bytes) -> list[str]:
    """Every text an auditor could get out of a file, independent of the erasure's own parsers: gzip and tar
    opened, parquet as CSV, numpy arrays' strings (stored UTF-32), base64 runs decoded."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
        if tarfile.is_tarfile(io.BytesIO(body)):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                return [t for m in tar.getmembers() if m.isfile()
                        for t in _texts(m.name, tar.extractfile(m).read())]  # fmt: skip
    if name.endswith(".parquet") or body[:4] == b"PAR1":  # an UNLOAD file has no extension
        return [pq.read_table(io.BytesIO(body)).to_pandas().to_csv(index=False)]
    if name.endswith(".npz"):
        with np.load(io.BytesIO(body), allow_pickle=False) as npz:
            return ["\n".join(map(str, npz[k].ravel())) for k in npz.files if npz[k].dtype.kind in "US"]
    text = body.decode("utf-8", errors="replace")
    decoded = []
    for run in re.findall(r"[A-Za-z0-9+/]{8,}={0,2}", text):
        with contextlib.suppress(ValueError):
            decoded.append(base64.b64decode(run + "=" * (-len(run) % 4)).decode("utf-8"))
    return [text, *decoded]


def _holding(shop: Shop, user: str) -> list[str]:
    token = re.compile(rf"(?<![\w-]){re.escape(user)}(?![\w-])")  # any field position: first, middle, last
    return [name for name, body in _all_bytes(shop) if any(token.search(t) for t in _texts(name, body))]


def test_the_byte_check_sees_the_id_in_every_position_and_encoding(tmp_path: Path) -> None:
    cases = {
        "a.csv": b"product_id,user_id\np1,u17\n",  # the last field of a line
        "a.csv.gz": gzip.compress(b"user_id,p\nu17,p1\n"),
        "c.jsonl": json.dumps({"data": base64.b64encode(b'{"user_id": "u17"}').decode()}).encode(),
    }
    buf = io.BytesIO()
    np.savez(buf, user_ids=np.array(["u1", "u17"]))
    cases["arrays.npz"] = buf.getvalue()
    for name, body in cases.items():
        assert any(re.search(r"(?<![\w-])u17(?![\w-])", t) for t in _texts(name, body)), name
        assert any(re.search(r"(?<![\w-])u17(?![\w-])", t) for t in _texts(name, body)) == core.holds_id(
            gzip.decompress(body) if name.endswith(".gz") else body, "u17") or name.endswith(".npz"), name
    assert b"u17" not in cases["arrays.npz"]  # numpy's UTF-32: why a plain byte search missed it


def test_the_fixture_puts_the_shopper_in_every_store(shop: Shop) -> None:
    found = core.find_everywhere(shop.user, _everything(shop))
    assert len(found) == 5  # source, destination, results buckets, the table, the workdir
    assert any(k.startswith("dynamodb:") for k in found)
    in_workdir = " ".join(found[str(shop.workdir)])
    assert all(f"/{d}/" in in_workdir for d in ("raw", "lake", "pipeline", "capture"))


def test_forget_leaves_no_trace_in_any_bucket_version_table_or_file_and_keeps_the_others(shop: Shop) -> None:
    done = forget_locally(shop.cfg, shop.user, shop.workdir, shop.aws)

    assert done.gone, done.findings
    assert core.find_everywhere(shop.user, _everything(shop)) == {}
    for other in OTHERS:  # nobody else lost a row: every store still holds the others
        assert len(core.find_everywhere(other, _everything(shop))) == 5
    removed = done.result.summary()
    assert removed["raw"] == 3 + 3 + 1 + 1 + 4  # two interaction versions, old + current users, stream + broken
    assert removed["recent items"] == 1 and removed["captured requests"] == 1
    assert removed["curated"] == 3 + 1 and removed["athena results"] == 3
    assert removed["training sets"] == 3  # the workflow's UNLOAD file, named without an extension
    assert done.result.removed["raw"].versions_deleted >= 4
    assert removed["stream errors"] == 1
    # byte level, independent of the erasure's own parser: the id appears as a value nowhere
    assert _holding(shop, shop.user) == []
    assert _holding(shop, "u7")  # the check can see: the others are still there


def test_a_rerun_after_a_crash_finishes_the_job_under_the_same_request(shop: Shop) -> None:
    class Crash(RuntimeError):
        pass

    def crash_at_the_table(_request: dict) -> dict:
        raise Crash("recent items")  # the function dies at its last store, after every bucket

    with pytest.raises(Crash):
        forget_locally(shop.cfg, shop.user, shop.workdir, shop.aws,
                       stubs={"dynamodb.DescribeTable": crash_at_the_table})  # fmt: skip
    left = core.find_everywhere(shop.user, _everything(shop))
    curated = f"s3://{shop.res.destination_bucket}/curated/"
    assert left and not any(p.startswith(curated) for places in left.values() for p in places)  # half done
    records = core.S3Records(shop.aws.client("s3"), shop.res.destination_bucket)
    suppression = records.get(core.SUPPRESSION_KEY)
    assert suppression and len(suppression["user_keys"]) == 1  # suppressed before the first store

    done = forget_locally(shop.cfg, shop.user, shop.workdir, shop.aws)

    assert done.gone and done.result.resumed
    assert done.result.removed["raw"].total == 12  # the first attempt's counts kept in the record
    again = forget_locally(shop.cfg, shop.user, shop.workdir, shop.aws)
    assert again.gone and not again.result.resumed and sum(again.result.summary().values()) == 0


def test_the_audit_record_names_the_request_and_counts_but_not_the_shopper(shop: Shop) -> None:
    done = forget_locally(shop.cfg, shop.user, shop.workdir, shop.aws)
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
    with pytest.raises(core.CannotRewrite):  # a binary this code cannot edit: deleted, never kept
        core.filter_object(b"\x00binary u17\x00", "model.pkl", "u17")
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
    assert "user gone from every store scanned: yes" in out and "recent items 1" in out
    assert core.find_everywhere(shop.user, _everything(shop)) == {}
    assert main(["forget", "--user-id", shop.user, "--workdir", str(shop.workdir / "nope")]) == 2


def _answers(model_dir: Path, users: list[str]) -> dict[str, dict]:
    import inference

    model = inference.model_fn(str(model_dir))
    out = {}
    for u in users:
        answer = inference.predict_fn({"user_id": u, "k": 5}, model)
        out[u] = {k: answer[k] for k in ("strategy", "recommendations")}
    return out


def test_every_model_version_drops_the_shopper_and_still_serves_the_others_the_same(shop: Shop, tmp_path) -> None:
    others = ["u1", "u7", "u30"]
    before = _answers(shop.model_dir, [shop.user, *others])
    assert before[shop.user]["strategy"].startswith("personalized")

    done = forget_locally(shop.cfg, shop.user, shop.workdir, shop.aws)

    assert done.gone, done.findings
    dest = shop.res.destination_bucket
    archives = [f"s3://{dest}/pipeline/exec-0/TrainModel/output/model.tar.gz",
                f"s3://{dest}/pipeline/exec-1/PackageModel/packaged/model.tar.gz"]  # fmt: skip
    assert set(archives) <= set(done.models)
    assert str(shop.model_dir / "arrays.npz") in done.models
    after = _answers(shop.model_dir, [shop.user, *others])
    assert {u: after[u] for u in others} == {u: before[u] for u in others}  # item_knn: the others' answers hold
    assert after[shop.user]["strategy"] in ("popular", "trending")
    # the S3 archive re-written (not deleted) loads and serves too
    body = shop.aws.client("s3").get_object(Bucket=dest, Key=archives[1].split("/", 3)[3])["Body"].read()
    unpacked, archive = tmp_path / "unpacked", tmp_path / "model.tar.gz"
    archive.write_bytes(body)
    unpack_model_archive(archive, unpacked)
    assert _answers(unpacked, others) == {u: before[u] for u in others}
    audit = done.audit
    assert set(archives) <= set(audit["model_versions_touched"])
    assert set(audit["stores"]) >= {"raw", "stream errors", "captured requests", "pipeline splits", "recent items"}
    assert audit["last_copy_expires"] > audit["completed_at"][:10] and audit["not_erased_at_once"]
    assert "yes" in next(line for line in report_lines(done) if "scan of" in line)


def test_a_model_of_an_unknown_family_holding_the_shopper_is_deleted_not_kept(shop: Shop, tmp_path) -> None:
    odd = tmp_path / "odd"
    shutil.copytree(shop.model_dir, odd)
    doc = json.loads((odd / "model.json").read_text())
    doc["components"][0]["family"] = "someone_elses_model"
    (odd / "model.json").write_text(json.dumps(doc))
    s3 = shop.aws.client("s3")
    key = "pipeline/exec-2/TrainModel/output/model.tar.gz"
    s3.put_object(Bucket=shop.res.destination_bucket, Key=key, Body=model_archive(odd))

    done = forget_locally(shop.cfg, shop.user, shop.workdir, shop.aws)

    assert done.gone, done.findings
    assert f"s3://{shop.res.destination_bucket}/{key}" in done.models
    assert not s3.list_object_versions(Bucket=shop.res.destination_bucket, Prefix=key).get("Versions")


def test_the_report_says_gone_only_when_the_scan_found_nothing(shop: Shop) -> None:
    done = forget_locally(shop.cfg, shop.user, shop.workdir, shop.aws)
    done.findings = {"s3://x": ["s3://x/y (1 rows)"]}
    text = "\n".join(report_lines(done))
    assert "gone" not in text and "STILL" in text


def test_the_local_erasure_follows_the_functions_environment_in_cdk_out(shop: Shop, tmp_path, monkeypatch) -> None:
    """The store list is the synthesized template's: a copy of cdk.out whose captured-requests store points
    elsewhere makes the local run leave the capture files alone, and its scan says so instead of "gone"."""
    from recsys.local.curation import cdk_out
    from recsys.local.functions import find_function
    from settings.erasure import function_name

    function = find_function(shop.cfg, function_name(shop.cfg))
    copy = tmp_path / "cdk.out"
    copy.mkdir()
    for template in cdk_out().glob("*.template.json"):
        shutil.copy(template, copy / template.name)
    shutil.copytree(function.code_dir, copy / function.code_dir.name)
    path = copy / f"{function.stack}.template.json"
    doc = json.loads(path.read_text())
    env = doc["Resources"][function.logical_id]["Properties"]["Environment"]["Variables"]
    joined = env[ENV_STORES]["Fn::Join"][1]
    joined[:] = [p.replace('"prefix": "capture/"', '"prefix": "elsewhere/"') if isinstance(p, str) else p
                 for p in joined]  # fmt: skip
    path.write_text(json.dumps(doc))
    monkeypatch.setenv("CDK_OUTDIR", str(copy))

    done = forget_locally(shop.cfg, shop.user, shop.workdir, shop.aws)

    assert done.result.removed["captured requests"].total == 0
    assert any("/capture/" in p for places in done.findings.values() for p in places), done.findings
    assert not done.gone and "gone" not in "\n".join(report_lines(done))
