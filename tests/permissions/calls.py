"""Every AWS call each principal of one environment makes, derived from the synthesized templates (and, for the
Lambdas, from the record their tests write): what the permissions test holds against the policies.

Each :class:`Call` names its principal, IAM action, resource, request context and why it is made (the state, step,
rule or recorded call), plus the row of ``requirements.REQUIREMENTS`` that makes it necessary. Nothing here reads
a policy: the calls come from what the templates *do* (state machine definitions, the pipeline definition, rule
targets, job and crawler definitions, alarm actions, log group keys, Lambda code), the grants from what they
*allow*; the test compares the two.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from monitoring.metrics import NAMESPACE
from settings.config import PROJECT_ROOT
from settings.erasure import SUPPRESSION_ENV
from tests.permissions.evaluator import Principal
from tests.permissions.recorder import Entry, iam_calls
from tests.permissions.requirements import REQUIREMENTS
from tests.permissions.templates import ACCOUNT, PARTITION, Json, Templates

P = PARTITION
SECURE = {"aws:SecureTransport": "true"}


@dataclass(frozen=True)
class Call:
    principal: Principal
    action: str
    resource: str
    why: str
    rule: str
    context: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.rule not in REQUIREMENTS:
            raise KeyError(f"{self.rule!r} is not a row of requirements.REQUIREMENTS")

    @property
    def context_dict(self) -> dict[str, str]:
        return {**SECURE, **dict(self.context)}

    def describe(self) -> str:
        return f"{self.principal.name} -> {self.action} on {self.resource} ({self.why}; {REQUIREMENTS[self.rule].url})"


def service(name: str) -> Principal:
    return Principal(name, ACCOUNT, service=name)


class CallModel:
    """The calls of one environment: ``calls`` after construction."""

    def __init__(self, t: Templates, outdir: Path, lambda_record: set[Entry]) -> None:
        self.t, self.outdir, self.record = t, outdir, lambda_record
        self.region = t.region
        self.roles = t.roles()
        self.calls: list[Call] = []
        for generate in (
            self._state_machines, self._event_rules, self._pipelines, self._lambdas, self._cdk_providers,
            self._firehose, self._crawlers, self._databrew_jobs, self._alarms, self._log_group_keys,
            self._access_logs, self._api_gateway, self._quicksight,
        ):  # fmt: skip
            generate()

    # ---- helpers ----------------------------------------------------------------------------------------------

    def role(self, arn: str) -> Principal:
        return self.roles[arn].principal()

    def add(self, principal: Principal, action: str, resource: str, why: str, rule: str, **context: str) -> None:
        self.calls.append(Call(principal, action, resource, why, rule, tuple(sorted(context.items()))))

    def arn(self, service_: str, resource: str, region: str | None = None) -> str:
        return f"arn:{P}:{service_}:{self.region if region is None else region}:{ACCOUNT}:{resource}"

    def bucket_key(self, bucket: str) -> str | None:
        """The KMS key a bucket encrypts new objects with (None for SSE-S3 or a bucket outside the templates)."""
        for _, _, res in self.t.find("AWS::S3::Bucket", BucketName=bucket):
            rule = res["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            return rule["ServerSideEncryptionByDefault"].get("KMSMasterKeyID")
        return None

    def s3_object(self, who: Principal, uri: str, mode: str, why: str, rule: str, listed: str | None = None) -> None:
        """Read (``r``), write (``w``) or list (``l``) ``s3://bucket/key``; with the bucket key's KMS call. A listing
        names the prefix ``listed`` (an ``s3://`` URI; default: the object's folder)."""
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if "l" in mode:
            folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
            prefix = listed.removeprefix(f"s3://{bucket}/") if listed else folder
            self.add(who, "s3:ListBucket", f"arn:{P}:s3:::{bucket}", why, rule, **{"s3:prefix": prefix})
        actions = {"r": ("s3:GetObject", "kms:Decrypt"), "w": ("s3:PutObject", "kms:GenerateDataKey")}
        for m in mode:
            if m not in actions:
                continue
            s3_action, kms_action = actions[m]
            self.add(who, s3_action, f"arn:{P}:s3:::{bucket}/{key}", why, rule)
            key_arn = self.bucket_key(bucket)
            if key_arn:
                self.add(who, kms_action, key_arn, f"{why}: SSE-KMS object in {bucket}", "s3-sse-kms",
                         **{"kms:ViaService": f"s3.{self.region}.amazonaws.com",
                            "kms:EncryptionContext:aws:s3:arn": f"arn:{P}:s3:::{bucket}"})  # fmt: skip

    def log_stream(self, who: Principal, group: str, stream: str, why: str, rule: str, create_group: bool) -> None:
        """Write a log stream; a service creates the group first unless the templates define it."""
        group_arn = self.arn("logs", f"log-group:{group}")
        if create_group and not self.t.find("AWS::Logs::LogGroup", LogGroupName=group):
            self.add(who, "logs:CreateLogGroup", f"{group_arn}:*", why, rule)
        self.add(who, "logs:CreateLogStream", f"{group_arn}:log-stream:{stream}", why, rule)
        self.add(who, "logs:PutLogEvents", f"{group_arn}:log-stream:{stream}", why, rule)

    def queue_send(self, who: Principal, queue_arn: str, why: str, rule: str, **context: str) -> None:
        self.add(who, "sqs:SendMessage", queue_arn, why, rule, **context)
        name = queue_arn.rsplit(":", 1)[1]
        for _, _, res in self.t.find("AWS::SQS::Queue", QueueName=name):
            key = res["Properties"].get("KmsMasterKeyId")
            if key:
                for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                    self.add(who, action, key, f"{why}: SSE-KMS queue {name}", "sqs-kms",
                             **{**context, "kms:EncryptionContext:aws:sqs:arn": queue_arn})  # fmt: skip

    # ---- Step Functions ---------------------------------------------------------------------------------------

    def _state_machines(self) -> None:
        for stack, lid, res in self.t.of_type("AWS::StepFunctions::StateMachine"):
            props = res["Properties"]
            who = self.role(props["RoleArn"])
            name = self.t.physical_name(stack, lid).rsplit(":", 1)[-1]
            definition = json.loads(props["DefinitionString"])
            self._listing_prefix = _map_item_prefixes(definition)
            for state_name, state in _task_states(definition):
                self._task(who, f"state machine {name}, state {state_name!r}", state)
            if props.get("LoggingConfiguration"):
                for action in ("CreateLogDelivery", "GetLogDelivery", "UpdateLogDelivery", "DeleteLogDelivery",
                               "ListLogDeliveries", "PutResourcePolicy", "DescribeResourcePolicies",
                               "DescribeLogGroups"):  # fmt: skip
                    self.add(who, f"logs:{action}", "*", f"state machine {name} logs to CloudWatch Logs", "sfn-logs")
            if props.get("TracingConfiguration", {}).get("Enabled"):
                for action in ("PutTraceSegments", "PutTelemetryRecords", "GetSamplingRules", "GetSamplingTargets"):
                    self.add(who, f"xray:{action}", "*", f"state machine {name} is traced", "sfn-xray")

    def _task(self, who: Principal, why: str, state: Json) -> None:
        resource, params = state["Resource"], state.get("Parameters", {})
        integration = resource.split(":::", 1)[1]
        if integration.startswith("databrew:startJobRun"):
            job = self.arn("databrew", f"job/{params['Name']}")
            self.add(who, "databrew:StartJobRun", job, why, "code")
            if integration.endswith(".sync"):
                for action in ("ListJobRuns", "StopJobRun"):
                    self.add(who, f"databrew:{action}", job, f"{why} (.sync)", "sfn-databrew")
        elif integration.startswith("athena:startQueryExecution"):
            self._athena_query(who, why, params["QueryString"], params["WorkGroup"],
                               params["QueryExecutionContext"], sync=integration.endswith(".sync"))  # fmt: skip
        elif integration.startswith("aws-sdk:"):
            _, api, action = integration.split(":")
            operation = action[0].upper() + action[1:]
            self._sdk_task(who, why, api, operation, params)
        else:
            raise NotImplementedError(f"{why}: no call model for Task resource {resource}")

    def _sdk_task(self, who: Principal, why: str, api: str, operation: str, params: Json) -> None:
        if api == "glue" and "Crawler" in operation:
            self.add(who, f"glue:{operation}", self.arn("glue", f"crawler/{params['Name']}"), why, "code")
        elif (api, operation) == ("cloudwatch", "PutMetricData"):
            self.add(who, "cloudwatch:PutMetricData", "*", why, "code", **{"cloudwatch:namespace": params["Namespace"]})
        elif (api, operation) == ("athena", "StartQueryExecution"):
            self._athena_query(who, why, params["QueryString"], params["WorkGroup"],
                               params.get("QueryExecutionContext", {}), sync=False)  # fmt: skip
        elif (api, operation) == ("athena", "GetQueryExecution"):
            self.add(who, "athena:GetQueryExecution", self.arn("athena", f"workgroup/{self._workgroup()['Name']}"),
                     why, "code")  # fmt: skip
        elif (api, operation) == ("athena", "GetQueryResults"):
            workgroup = self._workgroup()
            self.add(who, "athena:GetQueryResults", self.arn("athena", f"workgroup/{workgroup['Name']}"), why, "code")
            self.s3_object(who, f"{_output_location(workgroup)}<query-id>.csv", "r", f"{why}: the results file",
                           "athena-s3")  # fmt: skip
        elif api == "s3":
            params = {k.removesuffix(".$"): self._state_value(v) if k.endswith(".$") else v for k, v in params.items()}
            for action, resource, context in iam_calls(api, operation, params, self.region, ACCOUNT):
                self.add(who, action, resource, why, "code", **context)
        else:
            raise NotImplementedError(f"{why}: no call model for aws-sdk:{api}:{operation}")

    def _state_value(self, path: str) -> str:
        """A task parameter taken from the state (``Key.$``): the keys a Map iterates come from the listing whose
        result it maps over, so they lie under that listing's Prefix (``_task_states`` notes it)."""
        prefix = self._listing_prefix.get(path)
        if prefix is None:
            raise NotImplementedError(f"no call model for the state value {path}")
        return prefix + "<object>"

    def _workgroup(self, name: str | None = None) -> Json:
        groups = [r["Properties"] for _, _, r in self.t.of_type("AWS::Athena::WorkGroup")]
        return next(g for g in groups if name is None or g["Name"] == name)

    # ---- Athena -----------------------------------------------------------------------------------------------

    def tables(self, database: str) -> dict[str, str]:
        """Table name -> S3 location: declared tables, crawled folders (crawlers name a table after its folder)."""
        out: dict[str, str] = {}
        for _, _, res in self.t.of_type("AWS::Glue::Table"):
            table = res["Properties"]["TableInput"]
            if res["Properties"]["DatabaseName"] == database:
                out[table["Name"]] = table["StorageDescriptor"]["Location"]
        for _, _, res in self.t.of_type("AWS::Glue::Crawler"):
            props = res["Properties"]
            if props["DatabaseName"] != database:
                continue
            for target in props["Targets"]["S3Targets"]:
                folder = target["Path"].rstrip("/").rsplit("/", 1)[1]
                out[props.get("TablePrefix", "") + folder] = target["Path"]
        return out

    def _athena_query(self, who: Principal, why: str, sql: str, workgroup_name: str, context: Json, *,
                      sync: bool, rule: str = "code") -> None:  # fmt: skip
        workgroup = self._workgroup(workgroup_name)
        wg_arn = self.arn("athena", f"workgroup/{workgroup_name}")
        self.add(who, "athena:StartQueryExecution", wg_arn, why, rule)
        if sync:
            self.add(who, "athena:GetQueryExecution", wg_arn, f"{why} (.sync polls)", "sfn-athena")
            self.add(who, "athena:StopQueryExecution", wg_arn, f"{why} (.sync stops on abort)", "sfn-athena")
        if rule == "code":  # a state machine's task: Step Functions' Athena integration documents GetDataCatalog
            catalog = context.get("Catalog", "AwsDataCatalog")
            self.add(who, "athena:GetDataCatalog", self.arn("athena", f"datacatalog/{catalog}"), why, "sfn-athena")
        self.add(who, "lakeformation:GetDataAccess", "*", why, "athena-s3")
        glue = lambda r: self.arn("glue", r)  # noqa: E731
        for action in ("glue:GetDatabase", "glue:CreateDatabase"):
            for resource in (glue("catalog"), glue("database/default")):
                self.add(who, action, resource, why, "athena-default-db")
        database = context["Database"]
        unload = re.fullmatch(r"\s*UNLOAD\s*\((.*)\)\s*TO\s+'(s3://[^']+)'.*", sql, re.S | re.I)
        statement = _parse(unload[1] if unload else sql)
        target, reads = _tables_of(statement)
        known = self.tables(database)
        for resource in (glue("catalog"), glue(f"database/{database}")):
            self.add(who, "glue:GetDatabase", resource, why, "athena-glue")
        for table in reads:
            for resource in (glue("catalog"), glue(f"database/{database}"), glue(f"table/{database}/{table}")):
                self.add(who, "glue:GetTable", resource, f"{why}: reads {table}", "athena-glue")
            if table not in known:
                raise KeyError(f"{why}: reads table {table!r}, which no template declares or crawls")
            self.s3_object(who, known[table] + "<object>", "lr", f"{why}: reads {table}", "athena-s3",
                           listed=known[table])  # fmt: skip
        output = _output_location(workgroup)
        if target is not None:
            kind, table = target
            actions = {"drop": ("glue:GetTable", "glue:DeleteTable"), "create": ("glue:GetTable", "glue:CreateTable")}
            for action in actions[kind]:
                for resource in (glue("catalog"), glue(f"database/{database}"), glue(f"table/{database}/{table}")):
                    self.add(who, action, resource, f"{why}: {kind} table {table}", "athena-glue")
            if kind == "create":
                location = _external_location(statement) or f"{output}tables/<query-id>/"
                self.s3_object(who, location + "<object>", "lw", f"{why}: CTAS writes {table}", "athena-s3")
        if unload:  # Athena lists the location (it must be empty) and writes the files
            self.s3_object(who, unload[2].rstrip("/") + "/<object>", "lw", f"{why}: UNLOAD writes", "athena-s3")
        bucket = output.removeprefix("s3://").split("/", 1)[0]
        self.add(who, "s3:GetBucketLocation", f"arn:{P}:s3:::{bucket}", f"{why}: the result location", "athena-s3")
        self.s3_object(who, f"{output}<query-id>.csv", "w", f"{why}: writes the results", "athena-s3")
        results_key = workgroup["WorkGroupConfiguration"]["ResultConfiguration"]["EncryptionConfiguration"]["KmsKey"]
        self.add(who, "kms:GenerateDataKey", results_key, f"{why}: SSE_KMS results", "athena-kms")

    # ---- EventBridge ------------------------------------------------------------------------------------------

    def _event_rules(self) -> None:
        events = service("events.amazonaws.com")
        for stack, lid, res in self.t.of_type("AWS::Events::Rule"):
            rule_arn = self.t.attribute(stack, lid, "Arn")
            for target in res["Properties"].get("Targets", []):
                arn, why = target["Arn"], f"rule {lid} -> {target['Arn']}"
                kind = arn.split(":")[2]
                if "RoleArn" in target:
                    who = self.role(target["RoleArn"])
                    action = {"states": "states:StartExecution", "sagemaker": "sagemaker:StartPipelineExecution"}[kind]
                    self.add(who, action, arn, why, "events-role-target")
                elif kind == "lambda":
                    self.add(events, "lambda:InvokeFunction", arn, why, "events-resource-target",
                             **{"aws:SourceArn": rule_arn, "aws:SourceAccount": ACCOUNT})  # fmt: skip
                elif kind == "sns":
                    self.add(events, "sns:Publish", arn, why, "events-resource-target",
                             **{"aws:SourceArn": rule_arn, "aws:SourceAccount": ACCOUNT})  # fmt: skip
                    self._topic_key(events, arn, why, context={})
                else:
                    raise NotImplementedError(f"{why}: no call model for a {kind} target")
                if "DeadLetterConfig" in target:
                    self.queue_send(events, target["DeadLetterConfig"]["Arn"], f"{why}: failed events to its DLQ",
                                    "events-dlq", **{"aws:SourceArn": rule_arn})  # fmt: skip

    def _topic_key(self, who: Principal, topic_arn: str, why: str, context: dict[str, str]) -> None:
        name = topic_arn.rsplit(":", 1)[1]
        for _, _, res in self.t.find("AWS::SNS::Topic", TopicName=name):
            key = res["Properties"].get("KmsMasterKeyId")
            if key:
                for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                    self.add(who, action, key, f"{why}: encrypted topic {name}", "sns-kms", **context)

    # ---- CloudWatch alarms -> SNS ------------------------------------------------------------------------------

    def _alarms(self) -> None:
        cloudwatch = service("cloudwatch.amazonaws.com")
        for stack, lid, res in self.t.of_type("AWS::CloudWatch::Alarm"):
            props = res["Properties"]
            alarm_arn = self.t.attribute(stack, lid, "Arn")
            context = {"aws:SourceArn": alarm_arn, "aws:SourceAccount": ACCOUNT}
            for topic in {*props.get("AlarmActions", []), *props.get("OKActions", []),
                          *props.get("InsufficientDataActions", [])}:  # fmt: skip
                if not topic.startswith(f"arn:{P}:sns:"):
                    raise NotImplementedError(f"alarm {lid}: no call model for action {topic}")
                why = f"alarm {props.get('AlarmName', lid)} notifies {topic.rsplit(':', 1)[1]}"
                self.add(cloudwatch, "sns:Publish", topic, why, "sns-service-publish", **context)
                self._topic_key(cloudwatch, topic, why, context)

    # ---- SageMaker pipeline and the endpoint's model role -----------------------------------------------------

    def _pipelines(self) -> None:
        for _, _, res in self.t.of_type("AWS::SageMaker::Pipeline"):
            props = res["Properties"]
            who = self.role(props["RoleArn"])
            definition = json.loads(props["PipelineDefinition"]["PipelineDefinitionBody"])
            PipelineCalls(self, who, props["PipelineName"], definition).generate()

    def job_calls(self, job_role: Principal, why: str, image: str, log_group: str, job: str, volume_key: str | None,
                  output_key: str | None) -> None:  # fmt: skip
        """What SageMaker does as a job's role apart from its data channels: image, logs, volume and output key."""
        registry, _, path = image.partition("/")
        repo_account, region = registry.split(".")[0], registry.split(".")[3]
        repository = f"arn:{P}:ecr:{region}:{repo_account}:repository/{path.split(':')[0].split('@')[0]}"
        self.add(job_role, "ecr:GetAuthorizationToken", "*", f"{why}: pulls {image}", "sm-job-role")
        for action in ("BatchCheckLayerAvailability", "GetDownloadUrlForLayer", "BatchGetImage"):
            self.add(job_role, f"ecr:{action}", repository, f"{why}: pulls {image}", "sm-job-role")
        self.log_stream(job_role, log_group, f"{job}/algo-1-0000000000", f"{why}: job logs", "sm-job-role", True)
        self.add(job_role, "logs:DescribeLogStreams", self.arn("logs", f"log-group:{log_group}:*"), why, "sm-job-role")
        if volume_key:
            self.add(job_role, "kms:CreateGrant", volume_key, f"{why}: VolumeKmsKeyId", "sm-volume-key",
                     **{"kms:GrantIsForAWSResource": "true"})  # fmt: skip
            self.add(job_role, "kms:DescribeKey", volume_key, f"{why}: VolumeKmsKeyId", "sm-volume-key")
        if output_key:
            self.add(job_role, "kms:GenerateDataKey", output_key, f"{why}: output KmsKeyId", "sm-job-role")

    def _model_role(self, function_env: Json, why: str) -> None:
        """The endpoint the deploy Lambda creates runs as EXECUTION_ROLE_ARN: artefacts, image, logs, capture, key."""
        who = self.role(function_env["EXECUTION_ROLE_ARN"])
        endpoint = function_env["ENDPOINT_NAME"]
        for pipeline in self.t.of_type("AWS::SageMaker::Pipeline"):
            definition = json.loads(pipeline[2]["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"])
            for step in _all_steps(definition["Steps"]):
                if step["Type"] != "RegisterModel":
                    continue
                for container in step["Arguments"]["InferenceSpecification"]["Containers"]:
                    data = PipelineCalls(self, who, "", definition).value(container["ModelDataUrl"])
                    self.s3_object(who, data, "r", f"{why}: model artefacts", "sm-model-role")
                    suppression = container.get("Environment", {}).get(SUPPRESSION_ENV)
                    if suppression:  # sagemaker_src/recsys_core/suppression.py reads it as the role
                        self.s3_object(who, PipelineCalls(self, who, "", definition).value(suppression), "r",
                                       f"{why}: erasure suppression list", "code")  # fmt: skip
                    self.job_calls(who, why, container["Image"], f"/aws/sagemaker/Endpoints/{endpoint}",
                                   "AllTraffic/i-0", function_env["ENDPOINT_KMS_KEY_ARN"], None)  # fmt: skip
        capture = function_env["CAPTURE_S3_URI"].rstrip("/")
        self.s3_object(who, f"{capture}/{endpoint}/AllTraffic/2026/01/01/00/capture.jsonl", "w",
                       f"{why}: data capture", "sm-model-role")  # fmt: skip

    # ---- Lambda -------------------------------------------------------------------------------------------------

    def function_folder(self, res: Json) -> str | None:
        """The ``lambdas/<folder>`` a function's code asset was built from (None for aws-cdk-lib's own code)."""
        key = res["Properties"].get("Code", {}).get("S3Key")  # "<asset hash>.zip": the folder asset.<hash>
        if not isinstance(key, str):
            return None
        handler = self.outdir / f"asset.{key.removesuffix('.zip')}" / "handler.py"
        for folder in sorted((PROJECT_ROOT / "lambdas").iterdir()):
            ours = folder / "handler.py"
            if handler.is_file() and ours.is_file() and ours.read_bytes() == handler.read_bytes():
                return folder.name
        return None

    def _lambdas(self) -> None:
        for stack, lid, res in self.t.of_type("AWS::Lambda::Function"):
            props = res["Properties"]
            who = self.role(props["Role"])
            name = self.t.physical_name(stack, lid)
            why = f"function {name}"
            group = props.get("LoggingConfig", {}).get("LogGroup", f"/aws/lambda/{name}")
            self.log_stream(who, group, "2026/01/01/[$LATEST]0", f"{why} logs", "lambda-logs", create_group=False)
            if props.get("KmsKeyArn"):
                self.add(who, "kms:Decrypt", props["KmsKeyArn"], f"{why}: encrypted variables", "lambda-env-kms")
            if "DeadLetterConfig" in props:
                self.queue_send(who, props["DeadLetterConfig"]["TargetArn"], f"{why}: failed events", "lambda-dlq")
            folder = self.function_folder(res)
            if folder is None:
                continue  # aws-cdk-lib's provider functions: _cdk_providers
            recorded = sorted(e for e in self.record if e[0] == folder)
            if not recorded:
                raise KeyError(f"{why}: its tests recorded no calls for lambdas/{folder} (see recorder.py)")
            env = props.get("Environment", {}).get("Variables", {})
            for _, action, resource, context in recorded:
                resource = self._as_deployed(resource, env, why)
                self.add(who, action, resource, f"{why} (lambdas/{folder}, recorded)", "code", **json.loads(context))
            if folder == "deploy_endpoint":
                self._deploy_side_effects(who, why, env)
        for _, _, res in self.t.of_type("AWS::Lambda::EventSourceMapping"):
            self._event_source(res["Properties"])

    def _as_deployed(self, resource: str, env: Json, why: str) -> str:
        """A recorded role or key ARN that no template defines was a test's stand-in for the function's setting:
        the deployed function gets that setting from its environment (the one variable holding such an ARN)."""
        queues = {self.t.attribute(s, lid, "Arn") for s, lid, _ in self.t.of_type("AWS::SQS::Queue")}
        settings = {_queue_url_arn(v) if str(v).startswith("https://sqs.") else v for v in env.values()}
        for kind, defined in (("iam", set(self.roles)), ("kms", set(self.t.key_policies())), ("sqs", queues)):
            if resource.startswith(f"arn:{P}:{kind}:") and resource not in defined:
                values = {v for v in settings if isinstance(v, str) and v.startswith(f"arn:{P}:{kind}:")}
                if len(values) != 1:
                    raise KeyError(f"{why}: recorded {resource}, and the environment has no single {kind} ARN for it")
                return values.pop()
        return resource

    def _deploy_side_effects(self, who: Principal, why: str, env: Json) -> None:
        """What AWS does on the deploy function's calls: autoscaling registration checks, the endpoint's role."""
        endpoint = self.arn("sagemaker", f"endpoint/{env['ENDPOINT_NAME'].lower()}")
        registering = f"{why}: RegisterScalableTarget checks the caller may scale the variant"
        for action in ("DescribeEndpoint", "UpdateEndpointWeightsAndCapacities"):
            self.add(who, f"sagemaker:{action}", endpoint, registering, "aas-sagemaker")
        config = self.arn("sagemaker", f"endpoint-config/{env['ENDPOINT_NAME'].lower()}-<version>-<digest>")
        self.add(who, "sagemaker:DescribeEndpointConfig", config, registering, "aas-sagemaker")
        alarms = self.arn("cloudwatch", f"alarm:TargetTracking-endpoint/{env['ENDPOINT_NAME']}/variant/AllTraffic-High")
        for action in ("PutMetricAlarm", "DeleteAlarms"):
            self.add(who, f"cloudwatch:{action}", alarms, f"{why}: target tracking's alarms", "aas-sagemaker")
        self.add(who, "cloudwatch:DescribeAlarms", "*", f"{why}: target tracking's alarms", "aas-sagemaker")
        slr = "sagemaker.application-autoscaling.amazonaws.com"
        self.add(who, "iam:CreateServiceLinkedRole",
                 f"arn:{P}:iam::{ACCOUNT}:role/aws-service-role/{slr}/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
                 f"{why}: the first registration creates Application Auto Scaling's role", "aas-slr",
                 **{"iam:AWSServiceName": slr})  # fmt: skip
        self.add(who, "iam:PassRole", env["EXECUTION_ROLE_ARN"], f"{why}: CreateModel passes the model role",
                 "sm-passrole", **{"iam:PassedToService": "sagemaker.amazonaws.com"})  # fmt: skip
        self._model_role(env, f"endpoint {env['ENDPOINT_NAME']} (model role)")

    def _event_source(self, props: Json) -> None:
        function = props["FunctionName"]
        _, _, res = next(r for r in self.t.of_type("AWS::Lambda::Function")
                         if r[2]["Properties"].get("FunctionName") == function)  # fmt: skip
        who = self.role(res["Properties"]["Role"])
        stream, why = props["EventSourceArn"], f"event source mapping of {function}"
        for action in ("DescribeStream", "DescribeStreamSummary", "GetRecords", "GetShardIterator", "ListShards"):
            self.add(who, f"kinesis:{action}", stream, why, "lambda-kinesis")
        self._stream_key(who, stream, why, "lambda-kinesis")
        failure = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if failure:
            self.queue_send(who, failure, f"{why}: failed batches", "lambda-kinesis")

    def _stream_key(self, who: Principal, stream_arn: str, why: str, rule: str) -> None:
        name = stream_arn.rsplit("/", 1)[1]
        for _, _, res in self.t.find("AWS::Kinesis::Stream", Name=name):
            key = res["Properties"].get("StreamEncryption", {}).get("KeyId")
            if key:
                self.add(who, "kms:Decrypt", key, f"{why}: encrypted stream", rule)

    def _cdk_providers(self) -> None:
        """aws-cdk-lib's AwsCustomResource and bucket-notification functions: the call each custom resource names."""
        for _, lid, res in self.t.of_type("Custom::AWS"):
            for phase in ("Create", "Update", "Delete"):
                if phase not in res["Properties"]:
                    continue
                call = json.loads(res["Properties"][phase])
                who = self._provider_role(res["Properties"]["ServiceToken"])
                resource = self._sdk_resource(call["service"], call["action"], call["parameters"])
                self.add(who, f"{call['service'].lower()}:{call['action'][0].upper()}{call['action'][1:]}", resource,
                         f"custom resource {lid} ({phase})", "cdk-provider")  # fmt: skip
        for _, lid, res in self.t.of_type("Custom::S3BucketNotifications"):
            who = self._provider_role(res["Properties"]["ServiceToken"])
            bucket = f"arn:{P}:s3:::{res['Properties']['BucketName']}"
            self.add(who, "s3:PutBucketNotification", bucket, f"custom resource {lid}", "cdk-provider")
            if not res["Properties"].get("Managed", True):  # merges with notifications made outside the stack
                self.add(who, "s3:GetBucketNotification", bucket, f"custom resource {lid}", "cdk-provider")
        for stack, lid, res in self.t.of_type("AWS::Lambda::Function"):
            if self.function_folder(res) is None:
                who = self.role(res["Properties"]["Role"])
                group = self.arn("logs", f"log-group:/aws/lambda/{self.t.physical_name(stack, lid)}:*")
                self.add(who, "logs:CreateLogGroup", group, f"provider function {lid} logs", "cdk-provider")

    def _provider_role(self, service_token: str) -> Principal:
        name = service_token.rsplit(":", 1)[1]
        _, _, res = next(r for r in self.t.of_type("AWS::Lambda::Function")
                         if self.t.physical_name(r[0], r[1]) == name)  # fmt: skip
        return self.role(res["Properties"]["Role"])

    def _sdk_resource(self, api: str, action: str, params: Json) -> str:
        if (api.lower(), action) == ("databrew", "publishRecipe"):
            return self.arn("databrew", f"recipe/{params['Name']}")
        raise NotImplementedError(f"no resource model for the custom resource call {api}.{action}")

    # ---- Firehose, crawlers, DataBrew ---------------------------------------------------------------------------

    def _firehose(self) -> None:
        for _, _, res in self.t.of_type("AWS::KinesisFirehose::DeliveryStream"):
            props = res["Properties"]
            name, rule = props["DeliveryStreamName"], "firehose-s3"
            source = props.get("KinesisStreamSourceConfiguration")
            dest = props["ExtendedS3DestinationConfiguration"]
            who = self.role(dest["RoleARN"])
            why = f"delivery stream {name}"
            if source:
                reader = self.role(source["RoleARN"])
                for action in ("DescribeStream", "GetShardIterator", "GetRecords", "ListShards"):
                    self.add(reader, f"kinesis:{action}", source["KinesisStreamARN"], f"{why} reads", rule)
                self._stream_key(reader, source["KinesisStreamARN"], f"{why} reads", rule)
            bucket = dest["BucketARN"].rsplit(":", 1)[1]
            for action in ("GetBucketLocation", "ListBucket", "ListBucketMultipartUploads"):
                self.add(who, f"s3:{action}", f"arn:{P}:s3:::{bucket}", why, rule)
            for prefix in (dest["Prefix"], dest.get("ErrorOutputPrefix", "")):
                key = re.sub(r"!\{[^}]*\}", "x", prefix) + "part.jsonl.gz"
                for action in ("PutObject", "AbortMultipartUpload"):
                    self.add(who, f"s3:{action}", f"arn:{P}:s3:::{bucket}/{key}", f"{why} writes", rule)
            kms = dest.get("EncryptionConfiguration", {}).get("KMSEncryptionConfig", {}).get("AWSKMSKeyARN")
            if kms:
                for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                    self.add(who, action, kms, f"{why}: SSE-KMS objects", rule,
                             **{"kms:ViaService": f"s3.{self.region}.amazonaws.com",
                                "kms:EncryptionContext:aws:s3:arn": f"arn:{P}:s3:::{bucket}/{key}"})  # fmt: skip
            logging = dest.get("CloudWatchLoggingOptions", {})
            if logging.get("Enabled"):
                group = self.arn("logs", f"log-group:{logging['LogGroupName']}")
                self.add(who, "logs:PutLogEvents", f"{group}:log-stream:{logging['LogStreamName']}", why, rule)

    def _crawlers(self) -> None:
        for _, _, res in self.t.of_type("AWS::Glue::Crawler"):
            props = res["Properties"]
            who, name = self.role(props["Role"]), props["Name"]
            why, db = f"crawler {name}", props["DatabaseName"]
            glue = lambda r: self.arn("glue", r)  # noqa: E731
            for target in props["Targets"]["S3Targets"]:
                self.s3_object(who, target["Path"] + "part-0.parquet", "lr", f"{why} reads", "glue-crawler")
                table = props.get("TablePrefix", "") + target["Path"].rstrip("/").rsplit("/", 1)[1]
                for action in ("GetTable", "CreateTable", "UpdateTable", "GetPartitions", "BatchCreatePartition"):
                    for resource in (glue("catalog"), glue(f"database/{db}"), glue(f"table/{db}/{table}")):
                        self.add(who, f"glue:{action}", resource, f"{why} catalogues {table}", "glue-crawler")
            for resource in (glue("catalog"), glue(f"database/{db}")):
                self.add(who, "glue:GetDatabase", resource, why, "glue-crawler")
            security = props.get("CrawlerSecurityConfiguration")
            group = "/aws-glue/crawlers"
            if security:
                role_name = self.roles[props["Role"]].name
                group = f"/aws-glue/crawlers-role/{role_name}-{security}"
                config = next(r for _, _, r in self.t.find("AWS::Glue::SecurityConfiguration", Name=security))
                key = config["Properties"]["EncryptionConfiguration"]["CloudWatchEncryption"]["KmsKeyArn"]
                self.add(who, "logs:AssociateKmsKey", self.arn("logs", f"log-group:{group}:*"), why,
                         "glue-security-config")  # fmt: skip
                for action in ("kms:Encrypt", "kms:GenerateDataKey"):
                    self.add(who, action, key, f"{why}: encrypted logs", "glue-security-config")
            self.log_stream(who, group, name, f"{why} logs", "glue-crawler", create_group=True)

    def _databrew_jobs(self) -> None:
        datasets = {r["Properties"]["Name"]: r["Properties"] for _, _, r in self.t.of_type("AWS::DataBrew::Dataset")}
        for _, _, res in self.t.of_type("AWS::DataBrew::Job"):
            props = res["Properties"]
            who, name, rule = self.role(props["RoleArn"]), props["Name"], "databrew-role"
            why = f"DataBrew job {name}"
            source = datasets[props["DatasetName"]]["Input"]["S3InputDefinition"]
            self.s3_object(who, f"s3://{source['Bucket']}/{source['Key']}file.csv", "lr", f"{why} reads", rule)
            for output in props["Outputs"]:
                location = f"s3://{output['Location']['Bucket']}/{output['Location']['Key']}"
                self.s3_object(who, location + "part-0.parquet", "lw", f"{why} writes", rule)
                if output.get("Overwrite"):
                    bucket, _, key = location.removeprefix("s3://").partition("/")
                    self.add(who, "s3:DeleteObject", f"arn:{P}:s3:::{bucket}/{key}old.parquet",
                             f"{why} overwrites its output", rule)  # fmt: skip
            if props.get("EncryptionMode") == "SSE-KMS":
                self.add(who, "kms:GenerateDataKey", props["EncryptionKeyArn"], f"{why}: SSE-KMS output", rule)
            if props.get("LogSubscription") == "ENABLE":
                self.log_stream(who, f"/aws-glue-databrew/jobs/{name}", "run-0", f"{why} logs", rule, True)

    # ---- keys of log groups, access logs, API Gateway, QuickSight ---------------------------------------------

    def _log_group_keys(self) -> None:
        logs = service(f"logs.{self.region}.amazonaws.com")
        for stack, lid, res in self.t.of_type("AWS::Logs::LogGroup"):
            key = res["Properties"].get("KmsKeyId")
            if not key:
                continue
            group = self.t.physical_name(stack, lid)
            context = {"kms:EncryptionContext:aws:logs:arn": self.arn("logs", f"log-group:{group}")}
            for action in ("kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:GenerateDataKey", "kms:DescribeKey"):
                self.add(logs, action, key, f"log group {group} is encrypted", "logs-kms", **context)

    def _access_logs(self) -> None:
        delivery = service("logging.s3.amazonaws.com")
        for stack, lid, res in self.t.of_type("AWS::S3::Bucket"):
            config = res["Properties"].get("LoggingConfiguration")
            if not config:
                continue
            source = self.t.physical_name(stack, lid)
            key = f"{config.get('LogFilePrefix', '')}2026-01-01-00-00-00-0000"
            self.add(delivery, "s3:PutObject", f"arn:{P}:s3:::{config['DestinationBucketName']}/{key}",
                     f"server access logs of {source}", "s3-access-logs",
                     **{"aws:SourceArn": f"arn:{P}:s3:::{source}", "aws:SourceAccount": ACCOUNT})  # fmt: skip

    def _api_gateway(self) -> None:
        apigw = service("apigateway.amazonaws.com")
        for stack, _, res in self.t.of_type("AWS::ApiGateway::Method"):
            props = res["Properties"]
            uri = props.get("Integration", {}).get("Uri", "")
            match = re.search(r"functions/(arn:[^/]+)/invocations", uri)
            if not match:
                continue
            path = self._resource_path(stack, props["ResourceId"])
            request = re.sub(r"\{[^}]+\}", "u1", path)  # a request's path: parameters filled in
            for _, _, stage in self.t.of_type("AWS::ApiGateway::Stage"):
                if stage["Properties"]["RestApiId"] != props["RestApiId"]:
                    continue
                api_path = f"{props['RestApiId']}/{stage['Properties']['StageName']}/{props['HttpMethod']}{request}"
                self.add(apigw, "lambda:InvokeFunction", match[1], f"API method {props['HttpMethod']} {path}",
                         "apigw-lambda", **{"aws:SourceArn": self.arn("execute-api", api_path)})  # fmt: skip
        for _, _, res in self.t.of_type("AWS::ApiGateway::Account"):
            who = self.role(res["Properties"]["CloudWatchRoleArn"])
            for _, _, stage in self.t.of_type("AWS::ApiGateway::Stage"):
                destination = stage["Properties"].get("AccessLogSetting", {}).get("DestinationArn")
                if destination:
                    group = destination.removesuffix(":*").split("log-group:", 1)[1]
                    self.log_stream(who, group, "stage-0", "API access logs", "apigw-logs", create_group=False)
                api = stage["Properties"]["RestApiId"]
                self.log_stream(who, f"API-Gateway-Execution-Logs_{api}/{stage['Properties']['StageName']}", "0",
                                "API execution logs", "apigw-logs", create_group=True)  # fmt: skip

    def _resource_path(self, stack: str, resource_id: str) -> str:
        parts: list[str] = []
        by_name = {self.t.physical_name(stack, lid): res for lid, res in self.t.resources[stack].items()
                   if res["Type"] == "AWS::ApiGateway::Resource"}  # fmt: skip
        while resource_id in by_name:
            parts.append(by_name[resource_id]["Properties"]["PathPart"])
            resource_id = by_name[resource_id]["Properties"]["ParentId"]
        return "/" + "/".join(reversed(parts))

    def _quicksight(self) -> None:
        """QuickSight runs each data set's custom SQL through the Athena data source's role."""
        for _, _, source in self.t.of_type("AWS::QuickSight::DataSource"):
            params = source["Properties"].get("DataSourceParameters", {}).get("AthenaParameters")
            if not params:
                continue
            who = self.role(params["RoleArn"])
            for _, lid, dataset in self.t.of_type("AWS::QuickSight::DataSet"):
                for table in dataset["Properties"].get("PhysicalTableMap", {}).values():
                    custom = table.get("CustomSql")
                    if not custom:
                        continue
                    database = _database_of(custom["SqlQuery"]) or self._default_database()
                    why = f"QuickSight data set {lid}"
                    self._athena_query(who, why, custom["SqlQuery"], params["WorkGroup"], {"Database": database},
                                       sync=True, rule="quicksight-athena")  # fmt: skip
                    workgroup = self._workgroup(params["WorkGroup"])
                    wg_arn = self.arn("athena", f"workgroup/{params['WorkGroup']}")
                    for action in ("GetWorkGroup", "GetQueryResults"):
                        self.add(who, f"athena:{action}", wg_arn, f"{why}: reads the results", "quicksight-athena")
                    self.s3_object(who, f"{_output_location(workgroup)}<query-id>.csv", "r",
                                   f"{why}: reads the results", "quicksight-athena")  # fmt: skip

    def _default_database(self) -> str:
        return self.t.of_type("AWS::Glue::Database")[0][2]["Properties"]["DatabaseInput"]["Name"]


class PipelineCalls:
    """The calls of one SageMaker pipeline's execution, step by step (``pipeline_steps/definition.py``)."""

    def __init__(self, model: CallModel, role: Principal, name: str, definition: Json) -> None:
        self.m, self.role, self.name, self.definition = model, role, name, definition
        self.steps = {s["Name"]: s for s in _all_steps(definition["Steps"])}
        self.parameters = {p["Name"]: p.get("DefaultValue") for p in definition.get("Parameters", [])}

    def value(self, expr: Any) -> Any:
        """A pipeline expression (Get, Std:Join) at execution time, with stand-ins for generated names."""
        if isinstance(expr, dict) and "Get" in expr:
            path = expr["Get"]
            if path.startswith("Parameters."):
                return self.parameters[path.split(".", 1)[1]]
            if path == "Execution.PipelineExecutionId":
                return "<execution-id>"
            step, _, rest = path.removeprefix("Steps.").partition(".")
            args = self.steps[step]["Arguments"]
            output = re.fullmatch(r"ProcessingOutputConfig\.Outputs\['(.+)'\]\.S3Output\.S3Uri", rest)
            if output:
                found = next(o for o in args["ProcessingOutputConfig"]["Outputs"] if o["OutputName"] == output[1])
                return self.value(found["S3Output"]["S3Uri"])
            if rest == "ModelArtifacts.S3ModelArtifacts":
                return f"{self.value(args['OutputDataConfig']['S3OutputPath'])}/{self.job(step)}/output/model.tar.gz"
            raise NotImplementedError(f"pipeline {self.name}: no value for {path}")
        if isinstance(expr, dict) and "Std:Join" in expr:
            join = expr["Std:Join"]
            return join["On"].join(str(self.value(v)) for v in join["Values"])
        return expr

    def job(self, step: str) -> str:
        return f"pipelines-<execution-id>-{step}-<suffix>".lower()

    def generate(self) -> None:
        for step in self.steps.values():
            kind, args, name = step["Type"], step.get("Arguments", {}), step["Name"]
            why = f"pipeline {self.name}, step {name}"
            if kind == "Processing":
                self._processing(name, args, why)
            elif kind == "Training":
                self._training(name, args, why)
            elif kind == "Condition":
                self._condition(step, why)
            elif kind == "RegisterModel":
                self._register(args, why)
            elif kind != "Fail":
                raise NotImplementedError(f"{why}: no call model for a {kind} step")

    def _start(self, kind: str, name: str, args: Json, why: str) -> Principal:
        m, job = self.m, self.job(name)
        arn = m.arn("sagemaker", f"{kind}-job/{job}")
        action = {"processing": "ProcessingJob", "training": "TrainingJob"}[kind]
        for verb in ("Create", "Describe", "Stop"):
            m.add(self.role, f"sagemaker:{verb}{action}", arn, why, "sm-pipeline-role")
        m.add(self.role, "sagemaker:AddTags", arn, f"{why}: tags the job with the execution", "sm-pipeline-role")
        m.add(self.role, "iam:PassRole", args["RoleArn"], f"{why}: the job's role", "sm-passrole",
              **{"iam:PassedToService": "sagemaker.amazonaws.com"})  # fmt: skip
        return m.role(args["RoleArn"])

    def _processing(self, name: str, args: Json, why: str) -> None:
        job_role = self._start("processing", name, args, why)
        for channel in args.get("ProcessingInputs", []):
            uri = str(self.value(channel["S3Input"]["S3Uri"]))
            self.m.s3_object(job_role, _object_under(uri), "lr", f"{why}: input {channel['InputName']}", "sm-job-role",
                             listed=uri)  # fmt: skip
        config = args.get("ProcessingOutputConfig", {})
        for output in config.get("Outputs", []):
            uri = str(self.value(output["S3Output"]["S3Uri"]))
            self.m.s3_object(job_role, _object_under(uri), "w", f"{why}: output {output['OutputName']}", "sm-job-role")
        cluster = args["ProcessingResources"]["ClusterConfig"]
        self.m.job_calls(job_role, why, args["AppSpecification"]["ImageUri"], "/aws/sagemaker/ProcessingJobs",
                         self.job(name), cluster.get("VolumeKmsKeyId"), config.get("KmsKeyId"))  # fmt: skip
        self._container(job_role, name, args, why)

    def _training(self, name: str, args: Json, why: str) -> None:
        job_role = self._start("training", name, args, why)
        for channel in args.get("InputDataConfig", []):
            uri = str(self.value(channel["DataSource"]["S3DataSource"]["S3Uri"]))
            self.m.s3_object(job_role, _object_under(uri), "lr", f"{why}: channel {channel['ChannelName']}",
                             "sm-job-role", listed=uri)  # fmt: skip
        code = json.loads(args.get("HyperParameters", {}).get("sagemaker_submit_directory", "null"))
        if code:
            self.m.s3_object(job_role, code, "r", f"{why}: the code archive", "sm-job-role")
        output = args["OutputDataConfig"]
        model = f"{self.value(output['S3OutputPath'])}/{self.job(name)}/output/model.tar.gz"
        self.m.s3_object(job_role, model, "w", f"{why}: the model artefact", "sm-job-role")
        self.m.job_calls(job_role, why, args["AlgorithmSpecification"]["TrainingImage"],
                         "/aws/sagemaker/TrainingJobs", self.job(name),
                         args["ResourceConfig"].get("VolumeKmsKeyId"), output.get("KmsKeyId"))  # fmt: skip

    def _container(self, job_role: Principal, name: str, args: Json, why: str) -> None:
        """The boto3 calls of a step's script (sagemaker_src/); only publish_metrics.py calls AWS itself."""
        arguments = [str(self.value(a)) for a in args["AppSpecification"].get("ContainerArguments", [])]
        script = args["AppSpecification"]["ContainerEntrypoint"][-1]
        if script == "publish_metrics.py":
            self.m.add(job_role, "cloudwatch:PutMetricData", "*", f"{why}: {script}", "code",
                       **{"cloudwatch:namespace": NAMESPACE})  # fmt: skip
            history = arguments[arguments.index("--history-uri") + 1].rstrip("/")
            self.m.s3_object(job_role, f"{history}/<execution-id>.json", "w", f"{why}: {script}", "code")

    def _condition(self, step: Json, why: str) -> None:
        """A condition reading a property file (Std:JsonGet) makes the pipeline role read it from S3."""
        pattern = r'"PropertyFile":\s*\{"Get":\s*"Steps\.(\w+)\.PropertyFiles\.(\w+)"'
        for file_ref in re.findall(pattern, json.dumps(step["Arguments"]["Conditions"])):
            producer = self.steps[file_ref[0]]
            prop = next(p for p in producer["PropertyFiles"] if p["PropertyFileName"] == file_ref[1])
            output = next(o for o in producer["Arguments"]["ProcessingOutputConfig"]["Outputs"]
                          if o["OutputName"] == prop["OutputName"])  # fmt: skip
            uri = f"{self.value(output['S3Output']['S3Uri'])}/{prop['FilePath']}"
            self.m.s3_object(self.role, uri, "r", f"{why}: reads {prop['PropertyFileName']}", "sm-pipeline-role")

    def _register(self, args: Json, why: str) -> None:
        group = args["ModelPackageGroupName"]
        m = self.m
        m.add(self.role, "sagemaker:CreateModelPackage", m.arn("sagemaker", f"model-package/{group.lower()}/1"),
              why, "sm-pipeline-role")  # fmt: skip
        group_arn = m.arn("sagemaker", f"model-package-group/{group.lower()}")
        m.add(self.role, "sagemaker:DescribeModelPackageGroup", group_arn, why, "sm-pipeline-role")


# ---- SQL helpers ---------------------------------------------------------------------------------------------------


def _parse(sql: str) -> exp.Expression:
    return sqlglot.parse_one(sql, read="athena")


def _tables_of(statement: exp.Expression) -> tuple[tuple[str, str] | None, list[str]]:
    """(("drop"|"create", table) or None, the tables the statement reads), CTE names excluded."""
    target: tuple[str, str] | None = None
    if isinstance(statement, exp.Drop):
        return ("drop", statement.find(exp.Table).name), []
    if isinstance(statement, exp.Create):
        target = ("create", statement.this.find(exp.Table).name)
        body = statement.expression
    else:
        body = statement
    ctes = {cte.alias_or_name for cte in body.find_all(exp.CTE)} if body is not None else set()
    reads = sorted({t.name for t in (body.find_all(exp.Table) if body is not None else []) if t.name not in ctes})
    return target, reads


def _external_location(statement: exp.Expression) -> str | None:
    for prop in statement.find_all(exp.Property):
        if prop.name.lower() == "external_location":
            return prop.args["value"].name.rstrip("/") + "/"
    for prop in statement.find_all(exp.LocationProperty):
        return prop.this.name.rstrip("/") + "/"
    return None


def _database_of(sql: str) -> str | None:
    tables = list(_parse(sql).find_all(exp.Table))
    return next((t.db for t in tables if t.db), None)


def _queue_url_arn(url: str) -> str:
    """``https://sqs.<region>.amazonaws.com/<account>/<name>`` as the queue's ARN."""
    host, account, name = url.removeprefix("https://").split("/")[:3]
    return f"arn:{P}:sqs:{host.split('.')[1]}:{account}:{name}"


def _output_location(workgroup: Json) -> str:
    return workgroup["WorkGroupConfiguration"]["ResultConfiguration"]["OutputLocation"]


def _object_under(uri: str) -> str:
    """An object below an S3 prefix (a channel URI names a prefix, or one object)."""
    return uri if uri.endswith((".gz", ".json", ".csv", ".parquet")) else uri.rstrip("/") + "/part-0"


def _map_item_prefixes(definition: Json) -> dict[str, str]:
    """``$.Key`` of a Map's item processor -> the S3 Prefix of the listing (``aws-sdk:s3:listObjectsV2``) whose
    ``Contents`` the Map iterates, for each Map whose items select ``$$.Map.Item.Value.Key``."""
    states = dict(_all_states(definition))
    listings = {
        state.get("ResultPath"): state["Parameters"].get("Prefix", "")
        for state in states.values()
        if state.get("Resource", "").endswith(":s3:listObjectsV2")
    }
    out: dict[str, str] = {}
    for state in states.values():
        if state["Type"] != "Map":
            continue
        source = state.get("ItemsPath", "").removesuffix(".Contents")
        for key, value in state.get("ItemSelector", state.get("Parameters", {})).items():
            if value == "$$.Map.Item.Value.Key" and source in listings:
                out[f"$.{key.removesuffix('.$')}"] = listings[source]
    return out


def _all_states(definition: Json) -> Iterator[tuple[str, Json]]:
    for name, state in definition["States"].items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _all_states(branch)
        if "Iterator" in state or "ItemProcessor" in state:
            yield from _all_states(state.get("ItemProcessor") or state["Iterator"])


def _all_steps(steps: list[Json]) -> list[Json]:
    """Every step of a pipeline, also those under a condition's IfSteps/ElseSteps."""
    out: list[Json] = []
    for step in steps:
        out.append(step)
        for branch in ("IfSteps", "ElseSteps"):
            out += _all_steps(step.get("Arguments", {}).get(branch, []))
    return out


def _task_states(definition: Json) -> Iterator[tuple[str, Json]]:
    for name, state in definition["States"].items():
        if state["Type"] == "Task":
            yield name, state
        for branch in state.get("Branches", []):
            yield from _task_states(branch)
        if "Iterator" in state or "ItemProcessor" in state:
            yield from _task_states(state.get("ItemProcessor") or state["Iterator"])
