"""S3 errors injected on moto: transient ones are retried, persistent ones are reported and publish nothing.

The faults are botocore ``before-send`` responses (``recsys.local.faults``), so the real retry
policy of the local run's clients (``recsys.local.moto_server.MAX_ATTEMPTS``, standard mode) is
what is exercised; only the backoff sleep is set to zero to keep the tests fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError
from botocore.retries.standard import ExponentialBackoff

from recsys.cli import main
from recsys.local.faults import S3Fault, inject_s3_faults
from recsys.local.moto_server import MAX_ATTEMPTS, LocalAws
from recsys.local.pipeline import download, upload
from recsys.local.provision import LocalResources, upload_raw
from recsys.local.s3io import list_data_keys, read_parquet, write_parquet
from settings.config import LOCAL_ACCOUNT, load_project_config
from stacks.buckets import CURATED, SOURCE

CFG = load_project_config("dev")
FRAME = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "product_id": ["p1", "p2", "p1"]})
SMALL = ["--users", "150", "--products", "60", "--interactions", "3000", "--days", "30"]


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries still happen (and are counted); only the jittered wait between them is skipped."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


@pytest.fixture
def bucket(aws_env: LocalAws) -> tuple[LocalAws, LocalResources]:
    """The source and destination buckets only (provisioning everything takes a second or more)."""
    names = {kind: CFG.bucket_name(kind, LOCAL_ACCOUNT, aws_env.region) for kind in (SOURCE, CURATED)}
    for name in names.values():
        aws_env.client("s3").create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": aws_env.region}
        )
    res = LocalResources(names[SOURCE], names[CURATED], "", "", "", CFG.glue_database, CFG.athena_workgroup)
    return aws_env, res


def _uri(res: LocalResources, path: str) -> str:
    return f"s3://{res.destination_bucket}/{path}"


# ---- transient errors: retried, the call succeeds -------------------------------------------------


def _put(aws: LocalAws, res: LocalResources, tmp: Path) -> None:
    write_parquet(aws, FRAME, _uri(res, "curated/users/"))


def _get(aws: LocalAws, res: LocalResources, tmp: Path) -> None:
    assert read_parquet(aws, _uri(res, "curated/users/")).equals(FRAME)


def _list(aws: LocalAws, res: LocalResources, tmp: Path) -> None:
    assert list_data_keys(aws, res.destination_bucket, "curated/users/") == ["curated/users/part-00000.parquet"]


def _upload_raw(aws: LocalAws, res: LocalResources, tmp: Path) -> None:
    (tmp / "interactions.csv").write_text("user_id,product_id,event_type,rating,timestamp\n")
    upload_raw(aws, res, {"interactions": tmp / "interactions.csv"})


def _pipeline_upload(aws: LocalAws, res: LocalResources, tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "evaluation.json").write_text("{}")
    assert upload(aws, tmp / "out", _uri(res, "pipeline/e1/EvaluateModel/evaluation")) == 1


def _pipeline_download(aws: LocalAws, res: LocalResources, tmp: Path) -> None:
    assert download(aws, _uri(res, "curated/users/"), tmp / "in") == 1
    assert (tmp / "in" / "part-00000.parquet").is_file()


CALL_SITES: dict[str, tuple[Callable[[LocalAws, LocalResources, Path], None], str]] = {
    "s3io.write_parquet": (_put, "PutObject"),
    "s3io.read_parquet": (_get, "GetObject"),
    "s3io.list_data_keys": (_list, "ListObjectsV2"),
    "provision.upload_raw": (_upload_raw, "PutObject"),
    "pipeline.upload": (_pipeline_upload, "PutObject"),
    "pipeline.download": (_pipeline_download, "GetObject"),
}


@pytest.mark.parametrize("kind", ["SlowDown", "InternalError"])
@pytest.mark.parametrize("site", sorted(CALL_SITES))
def test_transient_s3_errors_are_retried_until_the_call_succeeds(bucket, tmp_path, site: str, kind: str) -> None:
    aws, res = bucket
    write_parquet(aws, FRAME, _uri(res, "curated/users/"))  # something to read
    call, operation = CALL_SITES[site]
    fault = S3Fault(operation, kind, times=MAX_ATTEMPTS - 1)  # the worst the retry budget absorbs
    with inject_s3_faults(fault):
        call(aws, res, tmp_path)
    assert fault.injected == MAX_ATTEMPTS - 1
    assert fault.seen == MAX_ATTEMPTS  # every failure was retried; the last attempt went through


# ---- persistent errors: a clear error naming the object, the previous output kept ----------------


@pytest.mark.parametrize(("kind", "attempts"), [("SlowDown", MAX_ATTEMPTS), ("AccessDenied", 1)])
def test_persistent_s3_error_names_operation_and_object_and_keeps_the_previous_output(bucket, kind, attempts) -> None:
    aws, res = bucket
    write_parquet(aws, FRAME, _uri(res, "curated/users/"))
    fault = S3Fault("PutObject", kind, times=None)
    with inject_s3_faults(fault), pytest.raises(ClientError) as raised:
        write_parquet(aws, FRAME.head(1), _uri(res, "curated/users/"))

    assert fault.seen == attempts  # throttling is retried to the budget; AccessDenied is not retried
    message = str(raised.value)
    assert f"({kind})" in message and "PutObject" in message
    assert f"s3://{res.destination_bucket}/curated/users/part-00000.parquet" in message
    # Nothing half-written: the prefix still holds exactly the previous, complete output.
    assert list_data_keys(aws, res.destination_bucket, "curated/users/") == ["curated/users/part-00000.parquet"]
    assert read_parquet(aws, _uri(res, "curated/users/")).equals(FRAME)


def test_failed_upload_file_names_the_object(bucket, tmp_path) -> None:
    """upload_file (raw upload, pipeline outputs) reports through boto3's S3UploadFailedError."""
    aws, res = bucket
    with inject_s3_faults(S3Fault("PutObject", "AccessDenied", times=None)), pytest.raises(S3UploadFailedError) as err:
        _pipeline_upload(aws, res, tmp_path)
    assert f"{res.destination_bucket}/pipeline/e1/EvaluateModel/evaluation/evaluation.json" in str(err.value)
    assert "AccessDenied" in str(err.value)


# ---- the main job: one line on stderr, exit 1, nothing published downstream ---------------------


@pytest.mark.parametrize(("kind", "operation", "where"), [("AccessDenied", "PutObject", "curated/interactions/")])
def test_main_job_reports_a_persistent_s3_error_in_one_line_and_publishes_nothing_downstream(
    aws_env, tmp_path, capsys, kind: str, operation: str, where: str
) -> None:
    fault = S3Fault(operation, kind, times=None, key_contains=where)
    with inject_s3_faults(fault):
        code = main(["run", "--workdir", str(tmp_path), *SMALL])

    err = capsys.readouterr().err
    assert code == 1 and fault.injected >= 1
    assert err.startswith("error: AWS request failed: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    bucket = CFG.bucket_name(CURATED, LOCAL_ACCOUNT, aws_env.region)
    assert f"({kind})" in err and operation in err and f"s3://{bucket}/{where}part-00000.parquet" in err
    # The failed stage published nothing further: no catalogue tables, no model, no curated interactions.
    glue = aws_env.client("glue")
    assert glue.get_tables(DatabaseName=CFG.glue_database)["TableList"] == []
    assert aws_env.client("sagemaker").list_model_packages()["ModelPackageSummaryList"] == []
    assert list_data_keys(aws_env, bucket, where) == []
