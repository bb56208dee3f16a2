"""The Athena workgroup's settings, in the shape both the API (CreateWorkGroup) and CloudFormation
(``AWS::Athena::WorkGroup`` ``WorkGroupConfiguration``) take: the data stack and the local run create it
from this one definition."""

from __future__ import annotations

from typing import Any

from settings.config import ATHENA_RESULTS_PREFIX, Config


def athena_output_location(results_bucket: str) -> str:
    return f"s3://{results_bucket}/{ATHENA_RESULTS_PREFIX}/"


def workgroup_configuration(cfg: Config, results_bucket: str, kms_key_arn: str) -> dict[str, Any]:
    """Enforced so no query can write unencrypted results elsewhere or scan past the cutoff."""
    return {
        "ResultConfiguration": {
            "OutputLocation": athena_output_location(results_bucket),
            "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": kms_key_arn},
        },
        "EnforceWorkGroupConfiguration": True,
        "PublishCloudWatchMetricsEnabled": True,
        "BytesScannedCutoffPerQuery": cfg.athena_bytes_scanned_cutoff_mb * 1024 * 1024,
        "EngineVersion": {"SelectedEngineVersion": "Athena engine version 3"},
    }
