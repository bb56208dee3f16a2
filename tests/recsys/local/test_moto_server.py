"""The local AWS: a moto server on 127.0.0.1 that boto3 and subprocesses reach without a real account."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from recsys.local.moto_server import LocalAws, local_aws
from tests import CHILD_BOUND_S


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_server_starts_on_a_free_port_answers_and_stops_on_exit() -> None:
    with local_aws(region="ap-south-1") as aws:
        assert aws.url == f"http://127.0.0.1:{aws.port}" and aws.port > 0
        # moto keeps state per process, so this server may see the session server's buckets.
        assert aws.client("s3").list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert _port_open(aws.port)
    assert not _port_open(aws.port)


def test_server_stops_even_when_the_body_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), local_aws(region="ap-south-1") as aws:
        raise RuntimeError("boom")
    assert not _port_open(aws.port)


def test_busy_port_fails_fast_with_the_port_in_the_message(moto_endpoint: LocalAws) -> None:
    with pytest.raises(OSError, match=str(moto_endpoint.port)), local_aws("ap-south-1", port=moto_endpoint.port):
        pass


def test_env_points_sdks_at_the_server_with_fake_credentials(moto_endpoint: LocalAws) -> None:
    env = moto_endpoint.env()
    assert env["AWS_ENDPOINT_URL"] == moto_endpoint.url
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == moto_endpoint.region
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]


def test_subprocess_env_drops_a_real_profile() -> None:
    aws = LocalAws(url="http://127.0.0.1:1", port=1, region="ap-south-1")
    env = aws.subprocess_env({"AWS_PROFILE": "prod-admin", "AWS_SESSION_TOKEN": "real", "PATH": "/bin"})
    assert "AWS_PROFILE" not in env and "AWS_SESSION_TOKEN" not in env
    assert env["PATH"] == "/bin" and env["AWS_ENDPOINT_URL"] == aws.url


def test_a_subprocess_with_the_env_reaches_the_same_server(aws_env: LocalAws) -> None:
    aws_env.client("s3").create_bucket(
        Bucket="seen-by-child", CreateBucketConfiguration={"LocationConstraint": aws_env.region}
    )
    code = "import boto3; print(*[b['Name'] for b in boto3.client('s3').list_buckets()['Buckets']])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=aws_env.subprocess_env(), capture_output=True, text=True,
        timeout=CHILD_BOUND_S,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["seen-by-child"]


def test_reset_forgets_every_resource(moto_endpoint: LocalAws) -> None:
    s3 = moto_endpoint.client("s3")
    s3.create_bucket(Bucket="to-forget", CreateBucketConfiguration={"LocationConstraint": moto_endpoint.region})
    moto_endpoint.reset()
    assert s3.list_buckets()["Buckets"] == []


def test_aws_env_fixture_sets_the_process_environment(aws_env: LocalAws) -> None:
    import os

    assert os.environ["AWS_ENDPOINT_URL"] == aws_env.url
    assert "AWS_PROFILE" not in os.environ
