"""Typed settings for every stack and for the local run, read from ``cdk.json`` context.

One source of truth: the CDK app, the local pipeline and the tests all call
:func:`load_config`, so a bucket name or a threshold is never written twice. This module
imports nothing from ``aws_cdk`` so local code can use it without jsii/node.

Context layout (``cdk.json``)::

    "env": "dev",                      # which entry of "environments" to use (-c env=prod)
    "environments": {"dev": {...}, "prod": {...}}

A missing or invalid value raises :class:`ConfigError` naming the key, which fails synth.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CDK_JSON = PROJECT_ROOT / "cdk.json"

#: Account id used for names in the local (moto) run, where there is no real account.
LOCAL_ACCOUNT = "123456789012"

#: Raw tables of CONTRACTS.md §1, in processing order.
TABLES = ("users", "products", "interactions")

#: The Kinesis clickstream's archive (Firehose JSON lines under raw/clickstream/): rows in the interactions
#: contract, curated by the interactions recipe into their own table, which the training set reads too.
CLICKSTREAM = "clickstream"
CLICKSTREAM_RECIPE = "interactions"

#: CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
#: ``experiment_mode`` values (the deploy Lambda's EXPERIMENT_MODE).
EXPERIMENT_MODES = ("off", "ab", "shadow")
#: ``training_engine`` values, and the most Spark instances one training may start (a cost bound).
TRAINING_ENGINES = ("single", "spark", "auto")
MAX_SPARK_INSTANCES = 20
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,20}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: Instance families with NVIDIA GPUs that the PyTorch 2.6 GPU training image (CUDA 12) serves. A
#: ``training_instance_type`` among them trains on the GPU: the pipeline's training step takes that image and
#: train.py installs the pinned JAX CUDA plugin (sagemaker_src/requirements-gpu.txt) before SASRec trains; any
#: other type trains on CPU with the same code.
GPU_TRAINING_FAMILIES = ("ml.g4dn", "ml.g5", "ml.g6", "ml.g6e", "ml.p3", "ml.p4d", "ml.p4de", "ml.p5")
_SCHEDULE_RE = re.compile(r"^(cron|rate)\(.+\)$")
_ARN_RE = re.compile(r"^arn:aws[a-z-]*:quicksight:[a-z0-9-]+:\d{12}:(user|group)/.+$")


#: Each instance-type key and the SageMaker API enum its value must be in (:func:`sagemaker_enum`): a training type
#: is not always a processing or transform type (``ml.c5.large`` serves endpoints but runs no transform job).
INSTANCE_TYPE_ENUMS = {
    "processing_instance_type": "ProcessingInstanceType",
    "training_instance_type": "TrainingInstanceType",
    "endpoint_instance_type": "ProductionVariantInstanceType",
    "transform_instance_type": "TransformInstanceType",
    "spark_instance_type": "ProcessingInstanceType",
}


@functools.cache
def sagemaker_enum(shape: str) -> tuple[str, ...]:
    """The values SageMaker's API model (botocore's, pinned in constraints.txt) allows for ``shape``."""
    import botocore.session  # loads the service model (~0.5 s), so only when a config is parsed

    return tuple(botocore.session.get_session().get_service_model("sagemaker").shape_for(shape).enum)


class ConfigError(ValueError):
    """A setting in cdk.json context is missing or invalid; the message names the key."""


@dataclass(frozen=True)
class Config:
    """Settings of one environment. Field docs are the config reference in the README."""

    env_name: str
    project_name: str
    region: str
    removal_policy: str  # "destroy" (dev) or "retain" (prod)
    log_retention_days: int
    raw_expiry_days: int  # raw uploads move to cheaper storage / expire after this
    noncurrent_version_expiry_days: int
    athena_bytes_scanned_cutoff_mb: int
    crawler_schedule: str
    processing_instance_type: str
    training_instance_type: str
    endpoint_instance_type: str
    #: The Batch Transform instance type the registered model package declares (SupportedTransformInstanceTypes).
    transform_instance_type: str
    quality_threshold_ndcg_at_10: float
    model_approval: str  # "auto" or "manual"
    alarm_email: str  # "" = no subscription
    quicksight_principal_arn: str  # "" only allowed when enable_analytics is false
    enable_analytics: bool
    enable_streaming: bool
    serverless_endpoint: bool
    alarm_latency_p99_ms: int  # endpoint ModelLatency p99 above this (ms) for 15 minutes
    alarm_5xx_rate: float  # endpoint 5XX errors / invocations above this share
    alarm_4xx_rate: float  # endpoint 4XX errors / invocations above this share (bad requests from clients)
    alarm_quarantine_ratio: float  # quarantined / input rows of a table above this share
    alarm_drift_score: float  # max population stability index of the input features above this
    api_reserved_concurrency: int  # concurrent executions reserved for (and capping) the recommendations API Lambda
    #: Hours after a recommendation is served in which a view, add-to-cart or purchase echoing its
    #: recommendation_id counts for it (sql/attribution_daily.sql); later events are not attributed.
    attribution_window_hours: int
    #: Click-through alarm: CTR of the last day below this share of its trailing 7-day level (e.g. 0.7 = a 30 % drop).
    alarm_ctr_drop_share: float
    #: Share of endpoint requests (percent) the endpoint's data capture records (the impressions; 100 = all).
    capture_sampling_percent: int
    #: What the deploy Lambda does with a newly approved version while an earlier one serves: "off" (blue/green
    #: to all traffic), "ab" (the serving model as the Champion variant, the new one as the Challenger with
    #: ``experiment_challenger_percent`` of requests) or "shadow" (the new one as a shadow variant receiving that
    #: share of requests as copies, its answers captured but never shown). Instance endpoints only: SageMaker
    #: Serverless Inference hosts one variant and captures nothing, so there the Lambda deploys to all traffic.
    experiment_mode: str
    experiment_challenger_percent: int  # percent of requests sent (ab) or copied (shadow) to the challenger
    experiment_alpha: float  # significance level of the A/B verdict (monitoring/ab_test.py)
    #: Which engine trains (issue 23): "single" (train.py, one training job), "spark" (spark_train.py on the SageMaker
    #: Spark container, ``spark_instance_count`` x ``spark_instance_type``) or "auto" (the Spark step, which hands a
    #: training set under ``spark_min_interactions`` rows to train.py on its driver, before starting Spark).
    training_engine: str
    spark_min_interactions: int  # "auto": interactions from which Spark trains (train.py stops personalising ~5M)
    spark_instance_type: str  # the Spark processing cluster's instance type (a ProcessingInstanceType)
    spark_instance_count: int  # its instance count, bounded here (1 to MAX_SPARK_INSTANCES)

    # ---- derived names: the only place they are built -------------------------------
    @property
    def prefix(self) -> str:
        return f"{self.project_name}-{self.env_name}"

    def bucket_name(self, kind: str, account: str, region: str | None = None) -> str:
        """Bucket names are global: project, env, kind, account and region make them unique."""
        return f"{self.prefix}-{kind}-{account}-{region or self.region}"

    @property
    def glue_database(self) -> str:
        return f"{self.project_name}_{self.env_name}".replace("-", "_")

    @property
    def athena_workgroup(self) -> str:
        return f"{self.prefix}-analytics"

    @property
    def curation_state_machine(self) -> str:
        """The curation workflow (Step Functions); its skipped-job metric is dimensioned by it."""
        return f"{self.prefix}-curation"

    @property
    def pipeline_name(self) -> str:
        return f"{self.prefix}-training"

    @property
    def model_package_group(self) -> str:
        return f"{self.prefix}-recommender"

    @property
    def endpoint_name(self) -> str:
        """Stable across retrains: deployments update this endpoint in place (blue/green)."""
        return f"{self.prefix}-recommender"

    @property
    def retain(self) -> bool:
        return self.removal_policy == "retain"

    @property
    def training_on_gpu(self) -> bool:
        """Whether the training step runs on a GPU instance (see ``GPU_TRAINING_FAMILIES``)."""
        return self.training_instance_type.rsplit(".", 1)[0] in GPU_TRAINING_FAMILIES


# Object-key layout shared by DataBrew jobs, the crawler, Athena and the local run.
RAW_PREFIX = "raw"  # source bucket: raw/<table>/<file>
CURATED_PREFIX = "curated"  # destination bucket: curated/<table>/ (Parquet)
QUARANTINE_PREFIX = "quarantine"  # destination bucket: quarantine/<table>/ (Parquet, with reason)
FEATURES_PREFIX = "features"  # destination bucket: features/<table>/ (Athena CTAS output)
ATHENA_RESULTS_PREFIX = "athena-results"  # results bucket
TRAINING_PREFIX = "training"  # destination bucket: training/ (what PrepareData reads)
#: The curation workflow's UNLOAD of sql/training_set.sql: a folder of its own under training/, because Athena
#: UNLOADs only into an empty location and the erasure suppression list lives beside it (training/).
TRAINING_SET_PREFIX = f"{TRAINING_PREFIX}/interactions"
PIPELINE_PREFIX = "pipeline"  # destination bucket: pipeline/<execution>/ splits, models, evaluation
BATCH_PREFIX = "batch"  # destination bucket: batch/<table>/, the BatchRecommend step's latest lists (Glue tables)


def _require(env: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in env:
        raise ConfigError(f"missing context key '{where}.{key}' in cdk.json")
    return env[key]


def _check(ok: bool, where: str, key: str, what: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"context key '{where}.{key}' must be {what}, got {value!r}")


def _parse_env(env_name: str, env: Mapping[str, Any]) -> Config:
    where = f"environments.{env_name}"
    raw = {f.name: _require(env, f.name, where) for f in fields(Config) if f.name != "env_name"}
    unknown = sorted(set(env) - set(raw))
    if unknown:
        raise ConfigError(f"unknown context key(s) {', '.join(where + '.' + k for k in unknown)}")

    def is_int(v: Any, lo: int, hi: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    _check(
        isinstance(raw["project_name"], str) and bool(_NAME_RE.match(raw["project_name"])),
        where,
        "project_name",
        "lowercase letters, digits and '-' (2-21 chars, starting with a letter)",
        raw["project_name"],
    )
    _check(
        isinstance(raw["region"], str) and bool(re.match(r"^[a-z]{2}(-[a-z]+)+-\d$", raw["region"])),
        where,
        "region",
        "an AWS region such as 'ap-south-1'",
        raw["region"],
    )
    _check(
        raw["removal_policy"] in ("destroy", "retain"),
        where,
        "removal_policy",
        "'destroy' or 'retain'",
        raw["removal_policy"],
    )
    _check(
        raw["log_retention_days"] in LOG_RETENTION_DAYS,
        where,
        "log_retention_days",
        f"one of {LOG_RETENTION_DAYS}",
        raw["log_retention_days"],
    )
    for key in ("raw_expiry_days", "noncurrent_version_expiry_days"):
        _check(is_int(raw[key], 1, 3650), where, key, "an integer number of days from 1 to 3650", raw[key])
    _check(
        is_int(raw["athena_bytes_scanned_cutoff_mb"], 10, 10_000_000),
        where,
        "athena_bytes_scanned_cutoff_mb",
        "an integer >= 10 (Athena's minimum cutoff is 10 MB)",
        raw["athena_bytes_scanned_cutoff_mb"],
    )
    _check(
        isinstance(raw["crawler_schedule"], str) and bool(_SCHEDULE_RE.match(raw["crawler_schedule"])),
        where,
        "crawler_schedule",
        "a 'cron(...)' expression",
        raw["crawler_schedule"],
    )
    for key, shape in INSTANCE_TYPE_ENUMS.items():
        allowed = sagemaker_enum(shape)
        close = difflib.get_close_matches(str(raw[key]), allowed, n=3, cutoff=0.8) or ["ml.m5.large"]
        _check(
            isinstance(raw[key], str) and raw[key] in allowed,
            where,
            key,
            f"one of the SageMaker API's {shape} values, such as {' or '.join(repr(c) for c in close)}",
            raw[key],
        )
    family = str(raw["training_instance_type"]).rsplit(".", 1)[0]
    _check(
        not family.startswith(("ml.g", "ml.p")) or family in GPU_TRAINING_FAMILIES,
        where,
        "training_instance_type",
        "a CPU type, or a GPU type of a family the CUDA 12 training image serves (" + ", ".join(GPU_TRAINING_FAMILIES)
        + ")",
        raw["training_instance_type"],
    )
    q = raw["quality_threshold_ndcg_at_10"]
    _check(
        isinstance(q, (int, float)) and not isinstance(q, bool) and 0.0 <= q <= 1.0,
        where,
        "quality_threshold_ndcg_at_10",
        "a number from 0 to 1",
        q,
    )
    _check(
        raw["model_approval"] in ("auto", "manual"),
        where,
        "model_approval",
        "'auto' or 'manual'",
        raw["model_approval"],
    )
    _check(
        isinstance(raw["alarm_email"], str) and (raw["alarm_email"] == "" or bool(_EMAIL_RE.match(raw["alarm_email"]))),
        where,
        "alarm_email",
        'an e-mail address or ""',
        raw["alarm_email"],
    )
    for key in ("enable_analytics", "enable_streaming", "serverless_endpoint"):
        _check(isinstance(raw[key], bool), where, key, "true or false", raw[key])
    arn = raw["quicksight_principal_arn"]
    _check(
        isinstance(arn, str) and (bool(_ARN_RE.match(arn)) or (arn == "" and not raw["enable_analytics"])),
        where,
        "quicksight_principal_arn",
        'a QuickSight user/group ARN ("" only when enable_analytics is false)',
        arn,
    )
    _check(
        is_int(raw["alarm_latency_p99_ms"], 1, 60_000),
        where,
        "alarm_latency_p99_ms",
        "an integer number of milliseconds from 1 to 60000",
        raw["alarm_latency_p99_ms"],
    )
    for key in ("alarm_5xx_rate", "alarm_4xx_rate", "alarm_quarantine_ratio"):
        v = raw[key]
        _check(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 < v <= 1.0,
            where,
            key,
            "a share in (0, 1]",
            v,
        )
        raw[key] = float(v)
    d = raw["alarm_drift_score"]
    _check(
        isinstance(d, (int, float)) and not isinstance(d, bool) and 0.0 < d <= 10.0,
        where,
        "alarm_drift_score",
        "a number in (0, 10] (population stability index; 0.25 is the usual 'major shift')",
        d,
    )
    raw["alarm_drift_score"] = float(d)
    _check(
        is_int(raw["api_reserved_concurrency"], 1, 1000),
        where,
        "api_reserved_concurrency",
        "an integer from 1 to 1000 (concurrent executions of the recommendations API Lambda)",
        raw["api_reserved_concurrency"],
    )
    _check(
        is_int(raw["attribution_window_hours"], 1, 720),
        where,
        "attribution_window_hours",
        "an integer number of hours from 1 to 720 (30 days)",
        raw["attribution_window_hours"],
    )
    drop = raw["alarm_ctr_drop_share"]
    _check(
        isinstance(drop, (int, float)) and not isinstance(drop, bool) and 0.0 < drop < 1.0,
        where,
        "alarm_ctr_drop_share",
        "a share in (0, 1): the alarm fires when click-through falls below it times the trailing level",
        drop,
    )
    raw["alarm_ctr_drop_share"] = float(drop)
    _check(
        is_int(raw["capture_sampling_percent"], 1, 100),
        where,
        "capture_sampling_percent",
        "an integer percent from 1 to 100 (a sampled capture undercounts impressions by the same share)",
        raw["capture_sampling_percent"],
    )
    _check(
        raw["experiment_mode"] in EXPERIMENT_MODES,
        where,
        "experiment_mode",
        " or ".join(repr(m) for m in EXPERIMENT_MODES),
        raw["experiment_mode"],
    )
    _check(
        is_int(raw["experiment_challenger_percent"], 1, 99),
        where,
        "experiment_challenger_percent",
        "an integer percent from 1 to 99 (the challenger's share of requests; the champion keeps the rest)",
        raw["experiment_challenger_percent"],
    )
    alpha = raw["experiment_alpha"]
    _check(
        isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0.0 < alpha <= 0.2,
        where,
        "experiment_alpha",
        "a significance level in (0, 0.2] (e.g. 0.05: a 5 % chance of declaring identical variants different)",
        alpha,
    )
    raw["experiment_alpha"] = float(alpha)
    _check(raw["training_engine"] in TRAINING_ENGINES, where, "training_engine",
           " or ".join(repr(e) for e in TRAINING_ENGINES), raw["training_engine"])
    _check(is_int(raw["spark_min_interactions"], 1, 10**13), where, "spark_min_interactions",
           "a positive integer number of interactions (\"auto\" trains on Spark from this many)",
           raw["spark_min_interactions"])
    _check(is_int(raw["spark_instance_count"], 1, MAX_SPARK_INSTANCES), where, "spark_instance_count",
           f"an integer from 1 to {MAX_SPARK_INSTANCES} (instances of one Spark training)", raw["spark_instance_count"])
    raw["quality_threshold_ndcg_at_10"] = float(q)
    return Config(env_name=env_name, **raw)


#: Account ids that only ever stand for "fill in yours": the AWS documentation's example and repeated digits.
PLACEHOLDER_ACCOUNTS = frozenset({"123456789012", *(d * 12 for d in "0123456789")})


def check_deployable(cfg: Config) -> None:
    """Refuse, at synth, settings that would deploy but cannot work: with analytics on, a QuickSight principal
    in a placeholder account (cdk.json's prod ships one) grants the dashboard to nobody.

    Separate from :func:`load_config` because the local run and the template tests read the same environments
    without deploying them."""
    if not cfg.enable_analytics:
        return
    account = cfg.quicksight_principal_arn.split(":")[4]
    _check(
        account not in PLACEHOLDER_ACCOUNTS,
        f"environments.{cfg.env_name}",
        "quicksight_principal_arn",
        f"a QuickSight user/group ARN in your own account when enable_analytics is true (account {account} is "
        "a placeholder; or set enable_analytics to false)",
        cfg.quicksight_principal_arn,
    )


def load_config(context: Mapping[str, Any], env_name: str | None = None) -> Config:
    """Build the :class:`Config` of ``env_name`` (default: context ``env``) from CDK context."""
    env_name = env_name or context.get("env")
    if not env_name:
        raise ConfigError("missing context key 'env' in cdk.json (or pass -c env=NAME)")
    if not isinstance(env_name, str) or not _NAME_RE.match(env_name):
        raise ConfigError(f"context key 'env' must be a short lowercase name, got {env_name!r}")
    environments = context.get("environments")
    if not isinstance(environments, Mapping):
        raise ConfigError("missing context key 'environments' in cdk.json")
    if env_name not in environments:
        raise ConfigError(f"context key 'env' is {env_name!r} but 'environments' has only {sorted(environments)}")
    if not isinstance(environments[env_name], Mapping):
        raise ConfigError(f"context key 'environments.{env_name}' must be an object")
    env = environments[env_name]
    if "training_engine" in context:  # `cdk synth -c training_engine=spark` (what `recsys run --training-engine` does)
        env = {**env, "training_engine": context["training_engine"]}
    return _parse_env(env_name, env)


def load_project_config(env_name: str | None = None, path: Path = CDK_JSON) -> Config:
    """The config the local run and tests use: the same ``cdk.json`` the CDK app reads."""
    try:
        context = json.loads(path.read_text())["context"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read 'context' from {path}: {exc}") from exc
    return load_config(context, env_name)
