"""Template-level guards: cfn-lint finds no errors, cdk-nag finds nothing unacknowledged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3

from stacks.nag import APP_WIDE, GRANT_ACTIONS, register_nag
from tests import HEAVY_TIMEOUT_S

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]


CFN_LINT = Path(sys.executable).with_name("cfn-lint")


def cfn_lint_errors(templates: list[str]) -> list[dict]:
    """cfn-lint's error-level findings; a run that produced no JSON report is itself a failure."""
    run = subprocess.run([str(CFN_LINT), "--format", "json", *templates], capture_output=True, text=True, check=False)
    assert run.stdout.strip().startswith("["), f"cfn-lint gave no report (exit {run.returncode}): {run.stderr[-500:]}"
    return [f for f in json.loads(run.stdout) if f["Level"] == "Error"]


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_cfn_lint_reports_no_errors(synth, env_name):
    outdir, _ = synth(env_name)
    templates = sorted(str(p) for p in outdir.glob("*.template.json"))
    assert len(templates) >= 3
    assert cfn_lint_errors(templates) == []


def test_cfn_lint_catches_an_invalid_template(tmp_path):
    """The check can fail: an unknown DataBrew job type is an error."""
    bad = tmp_path / "bad.template.json"
    bad.write_text(
        json.dumps(
            {
                "Resources": {
                    "Job": {
                        "Type": "AWS::DataBrew::Job",
                        "Properties": {
                            "Name": "j",
                            "RoleArn": "arn:aws:iam::123456789012:role/r",
                            "Type": "NOT_A_TYPE",
                        },
                    }
                }
            }
        )
    )
    assert any("NOT_A_TYPE" in e["Message"] for e in cfn_lint_errors([str(bad)]))


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_cdk_nag_passes_with_only_acknowledged_findings(synth, env_name):
    outdir, _ = synth(env_name)  # synth raises ValidationFailed on any unacknowledged finding
    report = (
        json.loads((outdir / "validation-report.json").read_text())
        if (outdir / "validation-report.json").exists()
        else None
    )
    if report:
        assert all(r["conclusion"] == "success" for r in report["pluginReports"]), report


def test_cdk_nag_fails_synth_on_an_unacknowledged_finding(tmp_path):
    """The check can fail: a bucket with no TLS policy and no access logs must stop synth."""
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Bad")
    s3.Bucket(stack, "Open", encryption=s3.BucketEncryption.S3_MANAGED)
    register_nag(app)
    with pytest.raises(RuntimeError, match=r"ValidationFailed(.|\n)*AwsSolutions-S10"):
        app.synth()


def test_every_suppression_has_a_real_reason():
    for rule, reason in {**APP_WIDE, **GRANT_ACTIONS}.items():
        assert len(reason.split()) >= 8, f"suppression {rule} needs a reason a reviewer can check"
