"""Deploy an approved model package to the recommender endpoint (blue/green, with auto-rollback).

Invoked by EventBridge for two events, both for the project's resources only:

- ``SageMaker Model Package State Change`` in the configured group: when the package is Approved,
  create a Model and a new EndpointConfig named after the package version, then create the
  endpoint or update it with a blue/green deployment whose CloudWatch alarms roll it back.
  With EXPERIMENT_MODE ``ab`` or ``shadow`` and an earlier model serving an instance endpoint, the new
  config is an experiment instead (:func:`experiment_config_request`): the serving model as the
  ``Champion`` variant, the new one as the ``Challenger`` (a weighted production variant, or a shadow
  variant that gets copies of requests), data capture on, so the attribution SQL can compare them per
  variant. SageMaker's blue/green deployments need the new config to keep the variant names, so an
  experiment (and the first single-variant config after one) is deployed with a plain UpdateEndpoint:
  no canary, no bake, no alarm rollback; the log line says so.
- ``SageMaker Endpoint State Change`` for the endpoint (``IN_SERVICE``, ``FAILED``,
  ``UPDATE_ROLLBACK_FAILED``): finish or judge the deployment the function started. Back in
  service on the config it deployed: done. Back in service on another config: SageMaker rolled
  the blue/green deployment back (an alarm fired during the canary or the bake), so the package is
  marked Rejected with the reason and a repeated approval event cannot redeploy it. Failed states
  are reported. In service, autoscaling is (re-)registered, which AWS only accepts then.

Names are derived from the package version and a digest of what is deployed, so a repeated
event (EventBridge delivers at least once; SageMaker may emit several events per change) finds
the same Model and EndpointConfig and returns ``skipped: already deployed`` instead of
redeploying. Only boto3 is needed; everything is configured by environment variables set by
``stacks/deploy_stack.py`` (see :class:`Settings`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

PACKAGE_EVENT = "SageMaker Model Package State Change"
ENDPOINT_EVENT = "SageMaker Endpoint State Change"
SOURCE = "aws.sagemaker"
APPROVED = "Approved"
#: Blue/green deployments require the new config to keep the variant name.
VARIANT_NAME = "AllTraffic"
#: The variants of an experiment config: the model serving when the new one was approved, and the new one (as a
#: production variant in an A/B test, as a shadow variant in a shadow test). sql/attribution_daily.sql counts no
#: impressions for the shadow variant's captured answers: nobody was shown them.
CHAMPION, CHALLENGER, SHADOW = "Champion", "Challenger", "Shadow"
#: The variants an experiment config of each EXPERIMENT_MODE has (the stack makes rollback alarms for them).
EXPERIMENT_VARIANTS: dict[str, tuple[str, ...]] = {
    "off": (),
    "ab": (CHAMPION, CHALLENGER),
    "shadow": (CHAMPION, SHADOW),
}
#: EXPERIMENT_MODE values (``settings.config.EXPERIMENT_MODES``).
EXPERIMENT_MODES = ("off", "ab", "shadow")
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
#: Instance families whose storage is local NVMe, encrypted by the instance's hardware: SageMaker refuses a
#: KmsKeyId for them, as do families with a "d" (c5d, g4dn, p4d). The SageMaker Python SDK's rule
#: (``sagemaker.utils.instance_supports_kms``), so both decide alike.
LOCAL_STORAGE_FAMILIES = ("g5", "g6", "p5", "trn1")
MAX_NAME_LENGTH = 63  # SageMaker model / endpoint-config names
#: An endpoint in any other state refuses UpdateEndpoint.
UPDATABLE_STATUS = "InService"
#: DescribeEndpoint states in which a deployment ended badly and a person must look.
FAILED_STATUSES = ("Failed", "UpdateRollbackFailed")
REJECTED = "Rejected"
#: Endpoint tags naming the deployment in flight and its verdict (``pending`` when UpdateEndpoint is
#: called, then ``completed`` or ``rolled_back``): only a pending deployment this function started is
#: judged, once. Tags are overwritten, never deleted (the role has no sagemaker:Delete* action).
TARGET_CONFIG_TAG = "deploy:target-endpoint-config"
TARGET_PACKAGE_TAG = "deploy:target-model-package"
VERDICT_TAG = "deploy:verdict"
PENDING = "pending"
MAX_APPROVAL_DESCRIPTION = 1024
#: Endpoint State Change statuses the stack's rule sends (the event spells DescribeEndpoint's status
#: in upper snake case, e.g. IN_SERVICE); the handler then reads the status from DescribeEndpoint.
HANDLED_ENDPOINT_EVENTS = ("IN_SERVICE", "FAILED", "UPDATE_ROLLBACK_FAILED")


class MalformedEventError(ValueError):
    """The event is not one this function handles: its message says which field is wrong."""


class InvalidModelPackageError(ValueError):
    """The approved package cannot be deployed as is (e.g. no inference container image)."""


class ConfigurationError(RuntimeError):
    """An environment variable set by the stack is missing or invalid."""


class EndpointBusyError(RuntimeError):
    """The endpoint cannot take a deployment now; raising lets Lambda retry, then the DLQ keep the event."""


def _log(decision: str, **fields: Any) -> None:
    """One JSON line per decision: CloudWatch Logs Insights can filter on ``decision``."""
    print(json.dumps({"decision": decision, **fields}, default=str, sort_keys=True), flush=True)


@dataclass(frozen=True)
class Settings:
    """What to deploy and how; every field comes from one environment variable."""

    endpoint_name: str  # ENDPOINT_NAME
    model_package_group: str  # MODEL_PACKAGE_GROUP
    execution_role_arn: str  # EXECUTION_ROLE_ARN: the role the endpoint's model runs with
    serverless: bool  # SERVERLESS: "true" or "false"
    serverless_memory_mb: int  # SERVERLESS_MEMORY_MB
    serverless_max_concurrency: int  # SERVERLESS_MAX_CONCURRENCY
    instance_type: str  # INSTANCE_TYPE
    instance_count: int  # INSTANCE_COUNT: initial count of a new instance endpoint
    autoscaling_min: int  # AUTOSCALING_MIN
    autoscaling_max: int  # AUTOSCALING_MAX
    autoscaling_target: float  # AUTOSCALING_TARGET_INVOCATIONS: per instance per minute
    canary_percent: int  # CANARY_PERCENT: share of capacity that gets traffic first
    canary_wait_seconds: int  # CANARY_WAIT_SECONDS: watch the canary this long before shifting the rest
    bake_seconds: int  # BAKE_SECONDS: keep the old fleet this long after the full shift
    kms_key_id: str  # ENDPOINT_KMS_KEY_ARN: encrypts the instances' storage volumes (endpoint config KmsKeyId)
    rollback_alarms: tuple[str, ...] = field(default=())  # ROLLBACK_ALARMS: comma-separated names (AllTraffic)
    #: EXPERIMENT_ROLLBACK_ALARMS: comma-separated ``<variant>:<alarm name>`` pairs, the alarms on an experiment
    #: config's variants (a further approval during a test is a blue/green update rolled back by them)
    variant_rollback_alarms: tuple[tuple[str, str], ...] = field(default=())
    # CAPTURE_S3_URI: where data capture writes (s3://<destination>/capture); "" = no capture
    capture_s3_uri: str = ""
    capture_sampling_percent: int = 100  # CAPTURE_SAMPLING_PERCENT: share of requests captured
    experiment_mode: str = "off"  # EXPERIMENT_MODE: off | ab | shadow (unset: off)
    #: EXPERIMENT_CHALLENGER_PERCENT: share of requests the challenger answers (ab) or gets copies of (shadow)
    experiment_challenger_percent: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigurationError(f"environment variable {name} is not set")
            return value

        def integer(name: str, lo: int, hi: int) -> int:
            raw = get(name)
            try:
                value = int(raw)
            except ValueError:
                raise ConfigurationError(f"environment variable {name} must be an integer, got {raw!r}") from None
            if not lo <= value <= hi:
                raise ConfigurationError(f"environment variable {name} must be from {lo} to {hi}, got {value}")
            return value

        mode = env.get("EXPERIMENT_MODE", "").strip().lower() or "off"
        serverless = get("SERVERLESS").lower()
        if serverless not in ("true", "false"):
            raise ConfigurationError(f"environment variable SERVERLESS must be 'true' or 'false', got {serverless!r}")
        settings = cls(
            endpoint_name=get("ENDPOINT_NAME"),
            model_package_group=get("MODEL_PACKAGE_GROUP"),
            execution_role_arn=get("EXECUTION_ROLE_ARN"),
            serverless=serverless == "true",
            serverless_memory_mb=integer("SERVERLESS_MEMORY_MB", 1024, 6144),
            serverless_max_concurrency=integer("SERVERLESS_MAX_CONCURRENCY", 1, 200),
            instance_type=get("INSTANCE_TYPE"),
            instance_count=integer("INSTANCE_COUNT", 1, 100),
            autoscaling_min=integer("AUTOSCALING_MIN", 1, 100),
            autoscaling_max=integer("AUTOSCALING_MAX", 1, 100),
            autoscaling_target=float(integer("AUTOSCALING_TARGET_INVOCATIONS", 1, 1_000_000)),
            canary_percent=integer("CANARY_PERCENT", 1, 50),  # SageMaker: canary <= 50% of the fleet
            canary_wait_seconds=integer("CANARY_WAIT_SECONDS", 0, 3600),
            bake_seconds=integer("BAKE_SECONDS", 0, 3600),
            kms_key_id=get("ENDPOINT_KMS_KEY_ARN"),
            rollback_alarms=tuple(a.strip() for a in env.get("ROLLBACK_ALARMS", "").split(",") if a.strip()),
            variant_rollback_alarms=_variant_alarms(env.get("EXPERIMENT_ROLLBACK_ALARMS", "")),
            capture_s3_uri=env.get("CAPTURE_S3_URI", "").strip(),
            capture_sampling_percent=integer("CAPTURE_SAMPLING_PERCENT", 1, 100) if env.get("CAPTURE_S3_URI") else 100,
            experiment_mode=mode,
            experiment_challenger_percent=integer("EXPERIMENT_CHALLENGER_PERCENT", 1, 99) if mode != "off" else 10,
        )
        if settings.experiment_mode not in EXPERIMENT_MODES:
            raise ConfigurationError(
                f"EXPERIMENT_MODE must be one of {', '.join(EXPERIMENT_MODES)}, got {settings.experiment_mode!r}"
            )
        if settings.experiment_mode != "off" and not settings.capture_s3_uri:
            raise ConfigurationError("an experiment needs CAPTURE_S3_URI: the variants are compared from the capture")
        if settings.capture_s3_uri and not settings.capture_s3_uri.startswith("s3://"):
            raise ConfigurationError(f"CAPTURE_S3_URI must be an s3:// URI, got {settings.capture_s3_uri!r}")
        if settings.autoscaling_min > settings.autoscaling_max:
            raise ConfigurationError("AUTOSCALING_MIN must not exceed AUTOSCALING_MAX")
        if not settings.rollback_alarms:
            raise ConfigurationError("environment variable ROLLBACK_ALARMS is not set: a deployment needs them")
        return settings

    @property
    def all_rollback_alarms(self) -> list[str]:
        """Every rollback alarm, for naming the ones in ALARM after a rollback."""
        return [*self.rollback_alarms, *(name for _, name in self.variant_rollback_alarms)]

    @property
    def scalable_resource_id(self) -> str:
        return f"endpoint/{self.endpoint_name}/variant/{VARIANT_NAME}"

    @property
    def scaling_policy_name(self) -> str:
        return f"{self.endpoint_name}-invocations"


def _variant_alarms(raw: str) -> tuple[tuple[str, str], ...]:
    """``Champion:name,Challenger:name`` -> ((variant, name), ...); a variant name has no ':' (SageMaker's pattern)."""
    pairs = []
    known = {v for variants in EXPERIMENT_VARIANTS.values() for v in variants}
    for item in (i.strip() for i in raw.split(",") if i.strip()):
        variant_name, _, alarm = item.partition(":")
        if variant_name not in known or not alarm.strip():
            raise ConfigurationError(
                f"EXPERIMENT_ROLLBACK_ALARMS: {item!r} is not '<variant>:<alarm name>' with a variant of "
                f"{', '.join(sorted(known))}"
            )
        pairs.append((variant_name, alarm.strip()))
    return tuple(pairs)


def deployable_variants(settings: Settings) -> tuple[str, ...]:
    """The variant names this function's configs can have: ``AllTraffic``, and the experiment's where one can run
    (an instance endpoint with EXPERIMENT_MODE ab or shadow); rollback alarms watch exactly these."""
    if settings.serverless:
        return (VARIANT_NAME,)
    return (VARIANT_NAME, *EXPERIMENT_VARIANTS[settings.experiment_mode])


def rollback_alarms_for(settings: Settings, names: list[str]) -> tuple[list[str], str]:
    """The alarms that watch a config with these variant names, and ``""``; or no alarms and why rollback is off.

    The single-variant config is watched by ROLLBACK_ALARMS (``AllTraffic``). An experiment config (a further
    approval during a test keeps its names, so it is a blue/green update) is watched by the alarms on its own
    variants: every variant needs at least one, else SageMaker would watch metrics nobody publishes."""
    if names == [VARIANT_NAME]:
        return list(settings.rollback_alarms), ""
    by_variant = {v: [a for w, a in settings.variant_rollback_alarms if w == v] for v in names}
    unwatched = [v for v, alarms in by_variant.items() if not alarms]
    if unwatched:
        return [], (
            f"no rollback alarm watches variant(s) {', '.join(unwatched)} (EXPERIMENT_ROLLBACK_ALARMS): "
            "the update shifts traffic blue/green but cannot roll back"
        )
    return [a for alarms in by_variant.values() for a in alarms], ""


@dataclass
class Clients:
    """AWS calls the handler makes. ``update_endpoint`` is separate so tests can observe it
    (moto does not implement UpdateEndpoint); in Lambda it is the SageMaker client's method.
    ``cloudwatch`` (optional) names the rollback alarms in ALARM when a rollback is reported."""

    sagemaker: Any
    autoscaling: Any
    update_endpoint: Callable[..., Any]
    cloudwatch: Any = None


def make_clients() -> Clients:
    sagemaker = boto3.client("sagemaker")
    return Clients(
        sagemaker, boto3.client("application-autoscaling"), sagemaker.update_endpoint, boto3.client("cloudwatch")
    )


# ---- event parsing -------------------------------------------------------------------------------


def _detail(event: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(event, Mapping):
        raise MalformedEventError(f"event must be a JSON object, got {type(event).__name__}")
    if event.get("source") != SOURCE:
        raise MalformedEventError(f"event source must be {SOURCE!r}, got {event.get('source')!r}")
    kind = event.get("detail-type")
    if kind not in (PACKAGE_EVENT, ENDPOINT_EVENT):
        raise MalformedEventError(f"detail-type must be {PACKAGE_EVENT!r} or {ENDPOINT_EVENT!r}, got {kind!r}")
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise MalformedEventError(f"event has no 'detail' object ({kind})")
    return kind, dict(detail)


def _required(detail: Mapping[str, Any], key: str) -> str:
    value = detail.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedEventError(f"event detail has no '{key}'")
    return value


# ---- naming --------------------------------------------------------------------------------------


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def resource_name(endpoint_name: str, version: Any, payload: Any) -> str:
    """``<endpoint>-<version>-<digest>``: starts with the endpoint name (the IAM policy allows only
    that prefix), names the package version for people, and changes whenever what is deployed does.
    The version is dropped when the 63-character limit leaves too little room for the digest."""
    digest = _digest(payload)
    for stem in (f"{endpoint_name}-{version}-", f"{endpoint_name}-"):
        room = MAX_NAME_LENGTH - len(stem)
        if room >= 8 or (room >= 6 and stem == f"{endpoint_name}-"):
            return stem + digest[: min(room, 12)]
    raise ConfigurationError(f"endpoint name {endpoint_name!r} is too long to derive model names from")


# ---- SageMaker requests --------------------------------------------------------------------------


def _containers(package: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = package.get("InferenceSpecification") or {}
    containers = [
        {k: c[k] for k in ("Image", "ModelDataUrl", "Environment") if c.get(k)} for c in spec.get("Containers", [])
    ]
    if not containers or not all(c.get("Image") for c in containers):
        raise InvalidModelPackageError(
            f"model package {package.get('ModelPackageArn')} has no inference container image"
        )
    return containers


def model_request(settings: Settings, package: Mapping[str, Any]) -> dict[str, Any]:
    containers = _containers(package)
    body: dict[str, Any] = {"ExecutionRoleArn": settings.execution_role_arn}
    if len(containers) == 1:
        body["PrimaryContainer"] = containers[0]
    else:
        body["Containers"] = containers
    name = resource_name(
        settings.endpoint_name, package.get("ModelPackageVersion", "x"), [package["ModelPackageArn"], body]
    )
    tags = [{"Key": "model-package-arn", "Value": package["ModelPackageArn"]}]
    return {"ModelName": name, **body, "Tags": tags}


def variant(
    settings: Settings, model_name: str, name: str = VARIANT_NAME, weight: float | None = None
) -> dict[str, Any]:
    """One variant sized by the settings; ``weight`` (InitialVariantWeight) only for experiment variants, so a
    single-variant config (and its digest-derived name) is what it always was."""
    if settings.serverless:
        sizing: dict[str, Any] = {
            "ServerlessConfig": {
                "MemorySizeInMB": settings.serverless_memory_mb,
                "MaxConcurrency": settings.serverless_max_concurrency,
            }
        }
    else:
        sizing = {"InstanceType": settings.instance_type, "InitialInstanceCount": settings.instance_count}
    weighting = {} if weight is None else {"InitialVariantWeight": weight}
    return {"VariantName": name, "ModelName": model_name, **sizing, **weighting}


def volume_kms_supported(settings: Settings) -> bool:
    """Whether the endpoint config may name a KMS key for its variant's storage volume.

    Not for serverless variants (no instance volume: SageMaker manages their compute and storage) nor for
    instance types with local NVMe storage, whose volumes the hardware encrypts (CreateEndpointConfig fails
    if a key is given for them)."""
    if settings.serverless:
        return False
    family = settings.instance_type.split(".")[1] if settings.instance_type.count(".") == 2 else ""
    return bool(family) and "d" not in family and not family.startswith(LOCAL_STORAGE_FAMILIES)


def data_capture_config(settings: Settings) -> dict[str, Any] | None:
    """SageMaker data capture of requests and answers (the impressions, issue 14): JSON lines, written with
    the data key, under CAPTURE_S3_URI/<endpoint>/<variant>/yyyy/mm/dd/hh/. JSON is captured as text (not
    base64), so the attribution SQL reads the answer's recommendation_id directly. None when no URI is set or
    the endpoint is serverless: SageMaker Serverless Inference does not support data capture."""
    if not settings.capture_s3_uri or settings.serverless:
        return None
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": settings.capture_sampling_percent,
        "DestinationS3Uri": settings.capture_s3_uri,
        "KmsKeyId": settings.kms_key_id,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    }


def endpoint_config_request(settings: Settings, model_name: str, version: Any) -> dict[str, Any]:
    """The new config: one variant, the data key on its storage volume wherever SageMaker takes one, and data
    capture (with the same key) where SageMaker offers it."""
    body: dict[str, Any] = {"ProductionVariants": [variant(settings, model_name)]}
    if volume_kms_supported(settings):
        body["KmsKeyId"] = settings.kms_key_id
    capture = data_capture_config(settings)
    if capture is not None:
        body["DataCaptureConfig"] = capture
    return {"EndpointConfigName": resource_name(settings.endpoint_name, version, body), **body}


def serving_model(endpoint_config: Mapping[str, Any]) -> str | None:
    """The model the endpoint serves now (the champion of a new experiment): the Champion variant's during an
    experiment, else the only (or the most heavily weighted) production variant's."""
    variants = endpoint_config.get("ProductionVariants") or []
    for v in variants:
        if v.get("VariantName") == CHAMPION:
            return v.get("ModelName")
    if not variants:
        return None
    return max(variants, key=lambda v: float(v.get("InitialVariantWeight", 1.0))).get("ModelName")


def experiment_blocker(settings: Settings, champion: str | None, challenger: str) -> str | None:
    """Why the new model is deployed to all traffic rather than as a challenger; None when it can be one."""
    if settings.experiment_mode == "off":
        return "experiment_mode is off"
    if settings.serverless:  # SageMaker Serverless Inference: one production variant, no data capture
        return "a serverless endpoint hosts one variant and captures nothing"
    if champion is None:
        return "no model is serving yet"
    if champion == challenger:
        return "the new package's model is the one serving"
    return None


def experiment_config_request(settings: Settings, champion: str, challenger: str, version: Any) -> dict[str, Any]:
    """An experiment config (instance endpoints): the serving model as ``Champion``, the new one as ``Challenger``
    (A/B) or ``Shadow``.

    ``ab``: two production variants weighted 100 - p and p percent (SageMaker routes each request to one by
    weight). ``shadow``: the champion answers every request and the challenger is a shadow variant that gets a
    copy of a share of them, its answers captured but never returned; its weight relative to the production
    variant's is that share. Data capture (required) records each variant under its own name."""
    share = settings.experiment_challenger_percent
    if settings.experiment_mode == "ab":
        body: dict[str, Any] = {
            "ProductionVariants": [
                variant(settings, champion, CHAMPION, (100 - share) / 100),
                variant(settings, challenger, CHALLENGER, share / 100),
            ]
        }
    elif settings.experiment_mode == "shadow":
        body = {
            "ProductionVariants": [variant(settings, champion, CHAMPION, 1.0)],
            "ShadowProductionVariants": [variant(settings, challenger, SHADOW, share / 100)],
        }
    else:
        raise ConfigurationError(f"no experiment config for EXPERIMENT_MODE {settings.experiment_mode!r}")
    if volume_kms_supported(settings):
        body["KmsKeyId"] = settings.kms_key_id
    capture = data_capture_config(settings)
    if capture is None:
        raise ConfigurationError("an experiment needs data capture (CAPTURE_S3_URI, an instance endpoint)")
    body["DataCaptureConfig"] = capture
    return {"EndpointConfigName": resource_name(settings.endpoint_name, version, body), **body}


def variant_names(endpoint_config: Mapping[str, Any]) -> list[str]:
    return [
        v["VariantName"]
        for key in ("ProductionVariants", "ShadowProductionVariants")
        for v in endpoint_config.get(key) or []
    ]


def deployment_config(settings: Settings, alarms: list[str] | None = None) -> dict[str, Any]:
    """Blue/green: instance endpoints send CANARY_PERCENT of capacity the traffic first, then all of it;
    serverless endpoints (no instance capacity to take a share of) shift all at once. Both keep the old
    fleet for BAKE_SECONDS and roll back if any of ``alarms`` (default: ROLLBACK_ALARMS) fires meanwhile;
    no alarms: no AutoRollbackConfiguration (the caller logs why)."""
    alarms = list(settings.rollback_alarms) if alarms is None else alarms
    if settings.serverless:
        routing: dict[str, Any] = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": settings.canary_wait_seconds}
    else:
        routing = {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": settings.canary_percent},
            "WaitIntervalInSeconds": settings.canary_wait_seconds,
        }
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": settings.bake_seconds,
        },
    }
    if alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": name} for name in alarms]}
    return config


def _not_found(error: ClientError) -> bool:
    err = error.response.get("Error", {})
    return err.get("Code") in ("ValidationException", "ResourceNotFound") and "not find" in err.get("Message", "")


def _describe(call: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any] | None:
    try:
        return call(**kwargs)
    except ClientError as error:
        if _not_found(error):
            return None
        raise


# ---- autoscaling ---------------------------------------------------------------------------------


def ensure_autoscaling(settings: Settings, clients: Clients) -> str:
    """Register the variant and its target-tracking policy (both calls are upserts, so idempotent).

    Returns what happened; AWS refuses registration while the endpoint is not in service, in which
    case the endpoint's IN_SERVICE event brings the function back to finish the job."""
    if settings.serverless:
        return "not applicable (serverless)"
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": settings.scalable_resource_id,
        "ScalableDimension": SCALABLE_DIMENSION,
    }
    try:
        clients.autoscaling.register_scalable_target(
            **target, MinCapacity=settings.autoscaling_min, MaxCapacity=settings.autoscaling_max
        )
        clients.autoscaling.put_scaling_policy(
            **target,
            PolicyName=settings.scaling_policy_name,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": settings.autoscaling_target,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ValidationException":
            raise
        _log("autoscaling deferred", endpoint=settings.endpoint_name, reason=str(error))
        return "deferred until the endpoint is in service"
    _log("autoscaling registered", endpoint=settings.endpoint_name, resource_id=settings.scalable_resource_id)
    return "registered"


def _deregister_autoscaling(settings: Settings, clients: Clients) -> None:
    """UpdateEndpoint fails when it changes the instance type of an autoscaled variant; drop the target first."""
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": settings.scalable_resource_id,
        "ScalableDimension": SCALABLE_DIMENSION,
    }
    found = clients.autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[settings.scalable_resource_id]
    )["ScalableTargets"]
    if found:
        clients.autoscaling.deregister_scalable_target(**target)
        _log("autoscaling deregistered", endpoint=settings.endpoint_name, reason="variant sizing changes")


# ---- the two flows -------------------------------------------------------------------------------


def _skip(reason: str, **fields: Any) -> dict[str, Any]:
    _log("skipped", reason=reason, **fields)
    return {"action": "skipped", "reason": f"skipped: {reason}", **fields}


def deploy_package(detail: Mapping[str, Any], settings: Settings, clients: Clients) -> dict[str, Any]:
    arn = _required(detail, "ModelPackageArn")
    group = _required(detail, "ModelPackageGroupName")
    status = _required(detail, "ModelApprovalStatus")
    if group != settings.model_package_group:
        return _skip(f"package group {group!r} is not {settings.model_package_group!r}", model_package_arn=arn)
    if status != APPROVED:
        return _skip(f"approval status is {status}", model_package_arn=arn)
    sm = clients.sagemaker
    package = sm.describe_model_package(ModelPackageName=arn)
    if package.get("ModelApprovalStatus") != APPROVED:  # events can arrive late: the registry is the truth
        return _skip(f"approval status is now {package.get('ModelApprovalStatus')}", model_package_arn=arn)
    version = package.get("ModelPackageVersion", "x")

    model = model_request(settings, package)
    if _describe(sm.describe_model, ModelName=model["ModelName"]) is None:
        sm.create_model(**model)
        _log("model created", model_name=model["ModelName"], model_package_arn=arn)
    endpoint = _describe(sm.describe_endpoint, EndpointName=settings.endpoint_name)
    current: dict[str, Any] = {}
    if endpoint is not None and endpoint.get("EndpointConfigName"):
        current = _describe(sm.describe_endpoint_config, EndpointConfigName=endpoint["EndpointConfigName"]) or {}
    config, experiment = planned_config(settings, model["ModelName"], version, current, endpoint is not None)
    config_name = config["EndpointConfigName"]
    if _describe(sm.describe_endpoint_config, EndpointConfigName=config_name) is None:
        sm.create_endpoint_config(**config)
        _log("endpoint config created", endpoint_config_name=config_name, **experiment)
    done = {"model_name": model["ModelName"], "endpoint_config_name": config_name, "model_package_arn": arn}

    if endpoint is None:
        created = sm.create_endpoint(EndpointName=settings.endpoint_name, EndpointConfigName=config_name)
        _mark_target(sm, created["EndpointArn"], config_name, arn)  # a failed creation is then reported with it
        _log("endpoint created", endpoint=settings.endpoint_name, **done)
        return {"action": "created", **done, "autoscaling": ensure_autoscaling(settings, clients)}
    if endpoint.get("EndpointConfigName") == config_name:
        return _skip("already deployed", **done)
    if (endpoint.get("PendingDeploymentSummary") or {}).get("EndpointConfigName") == config_name:
        _mark_target(sm, endpoint["EndpointArn"], config_name, arn)  # a retry after a crash: keep it judged
        return _skip("deployment already in progress", **done)
    if endpoint.get("EndpointStatus") != UPDATABLE_STATUS:
        raise EndpointBusyError(
            f"endpoint {settings.endpoint_name} is {endpoint.get('EndpointStatus')}, not {UPDATABLE_STATUS}: "
            f"cannot deploy {arn} now (retried, then kept in the dead-letter queue)"
        )
    request = update_request(settings, config, current)
    if variant_names(config) != variant_names(current) or not same_sizing(config, current):
        _deregister_autoscaling(settings, clients)  # the AllTraffic target: its variant goes or changes sizing
    clients.update_endpoint(**request)
    _mark_target(sm, endpoint["EndpointArn"], config_name, arn)
    how, rollback = deployment_note(settings, config, request)
    _log(
        "endpoint updated",
        endpoint=settings.endpoint_name,
        previous=endpoint.get("EndpointConfigName"),
        deployment=how,
        rollback=rollback,
        **experiment,
        **done,
    )
    return {
        "action": "updated",
        **done,
        "previous_endpoint_config_name": endpoint.get("EndpointConfigName"),
        "deployment": how,
        "rollback": rollback,
        **experiment,
    }


def deployment_note(settings: Settings, config: Mapping[str, Any], request: Mapping[str, Any]) -> tuple[str, str]:
    """How the update deploys and what rolls it back, as logged: ``(deployment, rollback)``."""
    if "DeploymentConfig" not in request:
        return "plain update (variant names change: no blue/green)", (
            "none: SageMaker's blue/green needs the variant names kept, so entering or leaving an experiment "
            "cannot roll back"
        )
    alarms = [
        a["AlarmName"] for a in request["DeploymentConfig"].get("AutoRollbackConfiguration", {}).get("Alarms", [])
    ]
    if alarms:
        return "blue/green", f"on alarm(s) {', '.join(alarms)}"
    return "blue/green", f"disabled: {rollback_alarms_for(settings, variant_names(config))[1]}"


def planned_config(
    settings: Settings, model_name: str, version: Any, current: Mapping[str, Any], serving: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config to deploy and what to log about the experiment: an experiment config when the mode asks for
    one and it is possible, else the single-variant config (with the reason, once a model serves)."""
    champion = serving_model(current) if serving else None
    blocker = experiment_blocker(settings, champion, model_name)
    if blocker is None:
        assert champion is not None
        config = experiment_config_request(settings, champion, model_name, version)
        return config, {
            "experiment": settings.experiment_mode,
            "champion_model": champion,
            "challenger_model": model_name,
            "challenger_percent": settings.experiment_challenger_percent,
        }
    fields = {"experiment": f"none: {blocker}"} if settings.experiment_mode != "off" and serving else {}
    return endpoint_config_request(settings, model_name, version), fields


def same_sizing(config: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    keys = ("InstanceType", "ServerlessConfig")
    old = [{k: v.get(k) for k in keys} for v in current.get("ProductionVariants", [])]
    return old == [{k: v.get(k) for k in keys} for v in config["ProductionVariants"]]


def update_request(settings: Settings, config: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """UpdateEndpoint's request: blue/green with the rollback alarms of the config's variants when the variant
    names stay (SageMaker's condition for deployment guardrails: a new version while on AllTraffic, or a new
    challenger while a test runs), a plain update otherwise (into or out of an experiment)."""
    request: dict[str, Any] = {
        "EndpointName": settings.endpoint_name,
        "EndpointConfigName": config["EndpointConfigName"],
        # Keep a scaled-out fleet's size when only the model changes; take the new sizing otherwise.
        "RetainAllVariantProperties": same_sizing(config, current) and not settings.serverless,
    }
    if variant_names(config) == variant_names(current):
        request["DeploymentConfig"] = deployment_config(
            settings, rollback_alarms_for(settings, variant_names(config))[0]
        )
    else:
        request["RetainAllVariantProperties"] = False  # variants come and go: their sizing is the new config's
    return request


# ---- after a deployment: completed, rolled back or failed -------------------------------------------


def _mark_target(sm: Any, endpoint_arn: str, config_name: str, package_arn: str) -> None:
    """Record on the endpoint which config and package the running deployment is for (AddTags overwrites)."""
    sm.add_tags(
        ResourceArn=endpoint_arn,
        Tags=[
            {"Key": TARGET_CONFIG_TAG, "Value": config_name},
            {"Key": TARGET_PACKAGE_TAG, "Value": package_arn},
            {"Key": VERDICT_TAG, "Value": PENDING},
        ],
    )


def _target(sm: Any, endpoint_arn: str) -> tuple[str | None, str | None]:
    """The pending deployment's (config, package), or (None, None) when none is waiting for a verdict."""
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=endpoint_arn).get("Tags", [])}  # last wins
    if tags.get(VERDICT_TAG) != PENDING:
        return None, None
    return tags.get(TARGET_CONFIG_TAG), tags.get(TARGET_PACKAGE_TAG)


def _alarms_in_alarm(settings: Settings, clients: Clients) -> list[str]:
    if clients.cloudwatch is None:
        return []
    found = clients.cloudwatch.describe_alarms(AlarmNames=settings.all_rollback_alarms, StateValue="ALARM")
    return sorted(a["AlarmName"] for a in found.get("MetricAlarms", []))


def _reject(sm: Any, package_arn: str, description: str) -> str:
    """Mark the rolled-back package Rejected (idempotent): a redelivered or repeated Approved event
    then finds it rejected in the registry and skips it; approving it again is a person's decision."""
    status = sm.describe_model_package(ModelPackageName=package_arn).get("ModelApprovalStatus")
    if status == REJECTED:
        return "already rejected"
    sm.update_model_package(
        ModelPackageArn=package_arn,
        ModelApprovalStatus=REJECTED,
        ApprovalDescription=description[:MAX_APPROVAL_DESCRIPTION],
    )
    return f"rejected (was {status})"


def endpoint_state_changed(detail: Mapping[str, Any], settings: Settings, clients: Clients) -> dict[str, Any]:
    """Judge the deployment this function started, from DescribeEndpoint (the event is only the trigger)."""
    name = _required(detail, "EndpointName")
    event_status = _required(detail, "EndpointStatus")
    if name != settings.endpoint_name:
        return _skip(f"endpoint {name!r} is not {settings.endpoint_name!r}")
    if event_status not in HANDLED_ENDPOINT_EVENTS:
        return _skip(f"endpoint status is {event_status}")
    sm = clients.sagemaker
    endpoint = _describe(sm.describe_endpoint, EndpointName=name)
    if endpoint is None:
        return _skip(f"endpoint {name!r} no longer exists")
    status = endpoint.get("EndpointStatus")
    current = endpoint.get("EndpointConfigName")
    target_config, target_package = _target(sm, endpoint["EndpointArn"])
    reason = endpoint.get("FailureReason") or ""
    facts = {"endpoint": name, "endpoint_status": status, "endpoint_config_name": current}

    if status in FAILED_STATUSES:
        next_step = (
            "old and new configs are mixed: a person must update or delete the endpoint"
            if status == "UpdateRollbackFailed"
            else "only DeleteEndpoint is possible"
        )
        message = f"endpoint {name} is {status}: {reason or 'no FailureReason given'}; {next_step}"
        _log(
            "deployment failed",
            **facts,
            failure_reason=reason,
            target_endpoint_config_name=target_config,
            model_package_arn=target_package,
            message=message,
        )
        return {
            "action": "failed",
            **facts,
            "failure_reason": reason,
            "model_package_arn": target_package,
            "message": message,
        }
    if status != UPDATABLE_STATUS:
        return _skip(f"endpoint status is {status} (event said {event_status})", endpoint=name)

    result: dict[str, Any] = {"action": "autoscaling", **facts}
    pending = (endpoint.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")
    if target_config and not pending:
        if target_config == current:
            _log("deployment completed", **facts, model_package_arn=target_package)
            result["action"] = "completed"
        else:
            alarms = _alarms_in_alarm(settings, clients)
            why = (
                "; ".join(p for p in (f"alarm(s) in ALARM: {', '.join(alarms)}" if alarms else "", reason) if p)
                or "no alarm in ALARM now and no FailureReason given"
            )
            verdict = (
                _reject(
                    sm,
                    target_package,
                    f"Rolled back by SageMaker on endpoint {name} (now on {current}, not {target_config}): {why}",
                )
                if target_package
                else "no package recorded"
            )
            _log(
                "rolled_back",
                **facts,
                target_endpoint_config_name=target_config,
                model_package_arn=target_package,
                failure_reason=why,
                alarms=alarms,
                package=verdict,
            )
            result.update(
                action="rolled_back",
                restored_endpoint_config_name=current,
                target_endpoint_config_name=target_config,
                model_package_arn=target_package,
                failure_reason=why,
                package=verdict,
            )
        sm.add_tags(ResourceArn=endpoint["EndpointArn"], Tags=[{"Key": VERDICT_TAG, "Value": result["action"]}])
    # The variant keeps its name across blue/green (and so across a rollback): this targets what serves now.
    serving = [v.get("VariantName") for v in endpoint.get("ProductionVariants") or []]
    if serving and VARIANT_NAME not in serving:
        result["autoscaling"] = "not registered: experiment variants keep their initial instance count"
    else:
        result["autoscaling"] = ensure_autoscaling(settings, clients)
    return result


def process(event: Any, settings: Settings, clients: Clients) -> dict[str, Any]:
    kind, detail = _detail(event)
    if kind == PACKAGE_EVENT:
        return deploy_package(detail, settings, clients)
    return endpoint_state_changed(detail, settings, clients)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    try:
        return process(event, Settings.from_env(), make_clients())
    except Exception as error:  # logged as a decision, then re-raised: Lambda retries, then the DLQ keeps it
        _log("failed", error=type(error).__name__, message=str(error))
        raise
