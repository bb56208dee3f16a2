"""The curation state machine from the synthesized data stack, executed on the local engines.

The definition, the DataBrew jobs, datasets and recipes, the crawlers' targets and the declared tables are
all read from ``cdk.out/<prefix>-data.template.json`` (what ``cdk deploy`` would create), and each Task
resource is served by the local stand-in of its service:

- ``databrew:startJobRun.sync`` -> the job's dataset objects (its key and path parameters), the job's recipe
  steps from the template run by ``glue_jobs/recipe_executor.py``, its output written where the job says;
- ``aws-sdk:glue:startCrawler`` / ``getCrawler`` -> the crawler's S3 targets registered in (moto) Glue and DuckDB;
- ``athena:startQueryExecution.sync`` / ``aws-sdk:athena:getQueryResults`` -> DuckDB (``LocalAthena``); an
  ``UNLOAD (...) TO 's3://...'`` writes its rows as Parquet into that (moto) location, which must be empty;
- ``aws-sdk:s3:listObjectsV2`` / ``deleteObject`` -> (moto) S3, as the SDK integration answers;
- ``aws-sdk:cloudwatch:putMetricData`` -> (moto) CloudWatch.

A resource without a local engine stops the run (:class:`~recsys.local.states.DefinitionError`): whatever the
deployed workflow does, the local run does, or says that it cannot.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from glue_jobs.datasets import selected_keys, template_parameters
from glue_jobs.raw_reader import RawDataError, read_raw
from glue_jobs.recipe_executor import RecipeStepError, apply_steps
from glue_jobs.recipe_jobs import as_raw_strings, curated_arrow_table, reason_counts, typed_curated
from glue_jobs.schema import QUARANTINE_REASON_COLUMN
from recsys.local.athena import AthenaQueryError, LocalAthena
from recsys.local.catalog import CrawlerRun, CrawlerRunningError, LocalCrawlers, register_prefix
from recsys.local.moto_server import LocalAws
from recsys.local.provision import LocalResources
from recsys.local.s3io import delete_data, split_s3_uri, write_parquet
from recsys.local.states import DefinitionError, Execution, Interpreter, StatesError
from settings.config import CURATED_PREFIX, FEATURES_PREFIX, LOCAL_ACCOUNT, PROJECT_ROOT, Config
from sql.library import parse_unload

CDK_OUT = PROJECT_ROOT / "cdk.out"


def cdk_out() -> Path:
    """Where the synthesized templates are: ``CDK_OUTDIR`` when set (the variable ``cdk synth`` gives app.py,
    so a test can point the local run at a changed copy), else ``cdk.out``."""
    return Path(os.environ.get("CDK_OUTDIR") or CDK_OUT)


def stack_templates(cfg: Config, out_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every template of the environment's stacks in ``out_dir`` (``cdk_out()``), by stack name."""
    return {
        path.name.removesuffix(".template.json"): json.loads(path.read_text())
        for path in sorted(Path(out_dir or cdk_out()).glob(f"{cfg.prefix}-*.template.json"))
    }


_CTAS = re.compile(r"^\s*CREATE\s+TABLE\s+(\w+)\s+WITH\s*\((.*?)\)\s*AS\s+(.*)$", re.S | re.I)
_DROP = re.compile(r"^\s*DROP\s+TABLE\s+IF\s+EXISTS\s+(\w+)\s*;?\s*$", re.I)


def template_path(cfg: Config, out_dir: Path | None = None) -> Path:
    """The data stack's template; synthesized first (``python app.py``, what ``cdk synth`` runs) if absent."""
    out_dir = out_dir or cdk_out()
    path = Path(out_dir) / f"{cfg.prefix}-data.template.json"
    if not path.is_file():
        env = {**os.environ, "CDK_OUTDIR": str(out_dir), "CDK_CONTEXT_JSON": json.dumps({"env": cfg.env_name})}
        done = subprocess.run([sys.executable, "app.py"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0 or not path.is_file():
            why = done.stderr.strip().splitlines()[-1:]
            raise FileNotFoundError(f"{path}: not synthesized ({why}); run make synth")
    return path


def definition_sha256(template: dict, machine_name: str) -> str:
    """Hash of the state machine's ``DefinitionString`` exactly as the template holds it."""
    props = _machine(template, machine_name)
    body = props.get("DefinitionString", props.get("Definition"))
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def machine_definition(template: dict, props: dict, region: str) -> dict:
    """The ASL as CloudFormation hands it to Step Functions: ``DefinitionString`` (or ``Definition``) with its
    intrinsics resolved and ``DefinitionSubstitutions`` applied; whatever stays unresolved is refused, here or by
    the interpreter's check (a leftover ``${...}`` or ``Fn::*``), never passed through."""
    resolve = Resolver(template, region)
    if "DefinitionString" in props:
        body = resolve(props["DefinitionString"])
        if not isinstance(body, str):
            shown = next(iter(body)) if isinstance(body, dict) and body else type(body).__name__
            raise DefinitionError(f"DefinitionString: unresolved CloudFormation {shown}")
    elif "Definition" in props:
        body = json.dumps(resolve(props["Definition"]))
    else:
        raise DefinitionError(f"state machine {props.get('StateMachineName')}: no DefinitionString or Definition "
                              "(DefinitionS3Location is not read locally)")  # fmt: skip
    for key, value in resolve(props.get("DefinitionSubstitutions", {})).items():
        body = body.replace("${" + key + "}", value if isinstance(value, str) else json.dumps(value))
    try:
        definition = json.loads(body)
    except json.JSONDecodeError as err:
        raise DefinitionError(f"DefinitionString is not JSON ({err})") from None
    if not isinstance(definition, dict):
        raise DefinitionError("DefinitionString: not a JSON object")
    return definition


def _machine(template: dict, machine_name: str) -> dict:
    for r in template["Resources"].values():
        if r["Type"] == "AWS::StepFunctions::StateMachine" and r["Properties"].get("StateMachineName") == machine_name:
            return r["Properties"]
    raise DefinitionError(f"no state machine {machine_name!r} in the template")


#: What ``Ref`` returns for resource types whose Ref is an ARN (CloudFormation's documented return values).
_REF_ARNS = {
    "AWS::StepFunctions::StateMachine": "arn:aws:states:{region}:{account}:stateMachine:{name}",
    "AWS::SNS::Topic": "arn:aws:sns:{region}:{account}:{name}",
}
_ATT_ARNS = {
    **_REF_ARNS,
    "AWS::Lambda::Function": "arn:aws:lambda:{region}:{account}:function:{name}",
    "AWS::SQS::Queue": "arn:aws:sqs:{region}:{account}:{name}",
}
_NAME_KEYS = ("BucketName", "Name", "StateMachineName", "TableName", "TopicName", "FunctionName", "QueueName",
              "PipelineName")  # fmt: skip


class Resolver:
    """CloudFormation intrinsics of the template resolved to the local names (account, region, buckets, ARNs);
    ``exports`` (export name -> (value, its template)) resolves ``Fn::ImportValue`` across stacks."""

    def __init__(self, template: dict, region: str, exports: dict[str, tuple[Any, dict]] | None = None) -> None:
        self.template = template
        self.exports = exports or {}
        self.pseudo = {"AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": LOCAL_ACCOUNT,
                       "AWS::URLSuffix": "amazonaws.com"}  # fmt: skip

    def __call__(self, node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Ref"}:
                return self._ref(node["Ref"])
            if set(node) == {"Fn::Join"}:
                sep, parts = node["Fn::Join"]
                resolved = [self(p) for p in parts]
                for part, value in zip(parts, resolved, strict=True):
                    if isinstance(value, (dict, list)):
                        raise DefinitionError(f"Fn::Join: part {json.dumps(part)[:80]} is unresolved CloudFormation")
                return sep.join(str(v) for v in resolved)
            if set(node) == {"Fn::GetAtt"}:
                return self._get_att(*node["Fn::GetAtt"])
            if set(node) == {"Fn::ImportValue"}:
                name = self(node["Fn::ImportValue"])
                if name not in self.exports:
                    raise DefinitionError(f"Fn::ImportValue {name!r}: no stack exports it")
                value, doc = self.exports[name]
                return Resolver(doc, self.pseudo["AWS::Region"], self.exports)(value)
            return {k: self(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self(v) for v in node]
        return node

    def _name(self, logical: str) -> tuple[str, str]:
        resource = self.template["Resources"].get(logical)
        if resource is None:
            raise DefinitionError(f"{logical!r} is not a resource of the template")
        props = resource.get("Properties", {})
        name = next((str(self(props[k])) for k in _NAME_KEYS if k in props), logical)
        return resource["Type"], name

    def _arn(self, fmt: str, name: str) -> str:
        return fmt.format(region=self.pseudo["AWS::Region"], account=LOCAL_ACCOUNT, name=name)

    def _ref(self, name: str) -> str:
        if name in self.pseudo:
            return self.pseudo[name]
        type_, physical = self._name(name)
        return self._arn(_REF_ARNS[type_], physical) if type_ in _REF_ARNS else physical

    def _get_att(self, logical: str, attr: str) -> str:
        type_, physical = self._name(logical)
        if attr == "Arn" and type_ in _ATT_ARNS:
            return self._arn(_ATT_ARNS[type_], physical)
        return f"arn:aws:local:{self.pseudo['AWS::Region']}:{LOCAL_ACCOUNT}:{logical}/{attr}"


@dataclass
class JobRun:
    """What one DataBrew job run did: rows read (with the reader's malformed lines) and rows written."""

    job: str
    table: str  # the dataset's name part: users / products / interactions / clickstream
    output: str  # curated | quarantine
    rows_in: int = 0
    rows_out: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class CurationCounts:
    rows_in: int = 0
    curated: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def curation_counts(runs: dict[str, JobRun]) -> dict[str, CurationCounts]:
    """Per dataset: rows read (the curated job's), curated and quarantined rows (each job's output), reasons."""
    counts: dict[str, CurationCounts] = {}
    for run in runs.values():
        if run.error is not None:
            continue
        c = counts.setdefault(run.table, CurationCounts(rows_in=run.rows_in))
        if run.output == "curated":
            c.curated = run.rows_out
        else:
            c.quarantined, c.reasons = run.rows_out, run.reasons
    return counts


class LocalEngines:
    """The Task resolver: each resource of the workflow served by its local engine."""

    def __init__(self, cfg: Config, aws: LocalAws, res: LocalResources, template: dict, lake: Path,
                 athena: LocalAthena) -> None:  # fmt: skip
        self.cfg, self.aws, self.res, self.lake, self.athena = cfg, aws, res, Path(lake), athena
        self.template = template
        self.resolve = Resolver(template, aws.region)
        self.runs: dict[str, JobRun] = {}
        self.ctas_rows: dict[str, int] = {}  # feature table -> rows, in the order built
        self.unloaded: dict[str, int] = {}  # UNLOAD location -> rows written, in the order run
        self._results: dict[str, pd.DataFrame] = {}
        self.crawlers = LocalCrawlers()  # StartCrawler / GetCrawler as AWS answers them: RUNNING, then READY
        self._declare_tables()

    def __call__(self, resource: str, params: Any) -> tuple[Any, str]:
        service = resource.split(":states:::", 1)[-1]
        handler = {
            "databrew:startJobRun.sync": self._databrew_job,
            "aws-sdk:glue:startCrawler": self._start_crawler,
            "aws-sdk:glue:getCrawler": self._get_crawler,
            "athena:startQueryExecution.sync": self._athena_query,
            "aws-sdk:athena:getQueryResults": self._athena_results,
            "aws-sdk:cloudwatch:putMetricData": self._put_metric_data,
            "aws-sdk:s3:listObjectsV2": self._list_objects,
            "aws-sdk:s3:deleteObject": self._delete_object,
        }.get(service)
        if handler is None:
            raise DefinitionError(f"Task resource {resource} has no local engine")
        try:
            return handler(params)
        except StatesError as err:  # a failed job run keeps why, for its DataBrew Job State Change event
            run = self.runs.get(params.get("Name", "")) if service.startswith("databrew:") else None
            if run is not None and run.error is None:
                run.error = err.cause
            raise

    # ---- lookups in the template ----

    def _resource(self, type_: str, name: str) -> dict:
        for r in self.template["Resources"].values():
            if r["Type"] == type_ and r["Properties"].get("Name") == name:
                return self.resolve(r["Properties"])
        service = type_.split("::")[1]
        raise StatesError(f"{service}.ResourceNotFoundException", f"{type_} {name!r} is not in the template")

    def _declare_tables(self) -> None:
        """Tables the stack declares (not crawled), e.g. ``clickstream``: readable by SQL once written."""
        self.declared: dict[str, str] = {}  # destination key -> table name
        for r in self.template["Resources"].values():
            if r["Type"] == "AWS::Glue::Table":
                table = self.resolve(r["Properties"]["TableInput"])
                bucket, key = split_s3_uri(table["StorageDescriptor"]["Location"])
                if bucket == self.res.destination_bucket:
                    self.declared[key] = table["Name"]
                    if (self.lake / key).exists():
                        self.athena.register(table["Name"], self.lake / key)
                    elif key.startswith(f"{CURATED_PREFIX}/") and table["Name"].lower() not in self.athena.tables:
                        # a curated table with no file yet (no clickstream archived): empty, as Athena reads it
                        columns = table["StorageDescriptor"]["Columns"]
                        self.athena.declare(table["Name"], {c["Name"]: c["Type"] for c in columns})

    # ---- DataBrew ----

    def _databrew_job(self, params: dict) -> tuple[dict, str]:
        job = self._resource("AWS::DataBrew::Job", params["Name"])
        dataset = self._resource("AWS::DataBrew::Dataset", job["DatasetName"])
        recipe = self._resource("AWS::DataBrew::Recipe", job["Recipe"]["Name"])
        output = "quarantine" if recipe["Name"].endswith("-quarantine") else "curated"
        table = recipe["Name"].removeprefix(f"{self.cfg.prefix}-").removesuffix(f"-{output}")
        name = dataset["Name"].removeprefix(f"{self.cfg.prefix}-").removesuffix("-raw")
        run = self.runs[job["Name"]] = JobRun(job["Name"], name, output)
        source = dataset["Input"]["S3InputDefinition"]
        key = source["Key"]
        listed = self._list(source["Bucket"], key.split("{", 1)[0])
        keys = selected_keys(key, template_parameters(dataset.get("PathOptions")), listed)
        if not keys:
            run.error = f"no objects at s3://{source['Bucket']}/{key}"
            cause = f"DataBrew job {job['Name']}: dataset {dataset['Name']} has {run.error}"
            raise StatesError("States.TaskFailed", cause)
        frames, malformed = [], []
        s3 = self.aws.client("s3")
        for k in keys:
            body = s3.get_object(Bucket=source["Bucket"], Key=k)["Body"].read()
            try:
                raw = read_raw(body, table, fmt=_raw_format(k), name=f"s3://{source['Bucket']}/{k}")
            except RawDataError as err:  # a file the job cannot read fails the job (caught for optional tables)
                raise StatesError("States.TaskFailed", f"DataBrew job {job['Name']}: {err}") from err
            frames.append(raw.frame)
            if len(raw.malformed):
                malformed.append(raw.malformed)
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        try:
            out = apply_steps(as_raw_strings(table, frame), recipe["Steps"])
        except RecipeStepError as err:
            raise StatesError("States.TaskFailed", f"DataBrew job {job['Name']}: {err}") from err
        if output == "curated":
            written: pa.Table | pd.DataFrame = curated_arrow_table(table, typed_curated(table, out))
        else:
            out = pd.concat([*malformed, out], ignore_index=True) if malformed else out
            written = out.astype("string")
            run.reasons = reason_counts(out) if QUARANTINE_REASON_COLUMN in out else {}
        run.rows_in = len(frame) + sum(len(m) for m in malformed)
        run.rows_out = len(written)
        (location,) = job["Outputs"]
        self._write(location["Location"]["Bucket"], location["Location"]["Key"], written)
        note = f"{len(keys)} object(s), {run.rows_in:,} rows in -> {run.rows_out:,} {output}"
        return {"JobName": job["Name"], "JobRunState": "SUCCEEDED"}, note

    def _list(self, bucket: str, prefix: str) -> list[str]:
        pages = self.aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def _write(self, bucket: str, key: str, frame: pa.Table | pd.DataFrame) -> None:
        """An output with Overwrite: the folder replaced, in the bucket and in the local lake mirror."""
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        folder = self.lake / key
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.parquet"):
            old.unlink()
        pq.write_table(table, folder / "part-00000.parquet")
        delete_data(self.aws, f"s3://{bucket}/{key}")
        write_parquet(self.aws, table, f"s3://{bucket}/{key}")
        if key in self.declared:  # the stack's own Glue table over this output
            register_prefix(self.aws, self.res.glue_database, bucket, key, self.declared[key], kind=key.split("/")[0])
            self.athena.register(self.declared[key], folder)

    # ---- Glue crawlers ----

    def _start_crawler(self, params: dict) -> tuple[dict, str]:
        crawler = self._resource("AWS::Glue::Crawler", params["Name"])

        def crawl() -> list[str]:
            prefix, found = crawler.get("TablePrefix", ""), []
            for target in crawler["Targets"]["S3Targets"]:
                bucket, key = split_s3_uri(target["Path"])
                folder = key.strip("/").rsplit("/", 1)[-1]
                if not self._list(bucket, key.rstrip("/") + "/"):
                    continue  # an empty target: the crawler creates no table
                kind = key.split("/", 1)[0]
                register_prefix(self.aws, crawler["DatabaseName"], bucket, key, f"{prefix}{folder}", kind=kind)
                self.athena.register(f"{prefix}{folder}", self.lake / key)
                found.append(f"{prefix}{folder}")
            return found

        try:
            run = self.crawlers.start(crawler["Name"], crawl)
        except CrawlerRunningError as err:
            raise StatesError("Glue.CrawlerRunningException", str(err)) from err
        if run.status == "FAILED":
            return {}, f"started; the crawl FAILED: {run.message}"
        return {}, "started; catalogued " + (", ".join(run.tables) or "nothing")

    def _get_crawler(self, params: dict) -> tuple[dict, str]:
        crawler = self.crawlers.get(params["Name"])
        last = crawler.get("LastCrawl", {}).get("Status")
        return {"Crawler": crawler}, crawler["State"] + (f" (last crawl {last})" if last else "")

    # ---- Athena ----

    def _athena_query(self, params: dict) -> tuple[dict, str]:
        sql = params["QueryString"]
        qid = str(uuid.uuid4())
        try:
            if m := _DROP.match(sql):
                note = self._drop(m.group(1))
            elif m := _CTAS.match(sql):
                note = self._ctas(m.group(1), m.group(3))
            elif unload := parse_unload(sql):
                note = self._unload(qid, *unload)
            else:
                self._results[qid] = self.athena.query(sql)
                note = f"{len(self._results[qid]):,} row(s)"
        except AthenaQueryError as err:
            raise StatesError("States.TaskFailed", f"Athena query failed: {err.message}") from err
        execution = {
            "QueryExecutionId": qid,
            "Query": sql,
            "Status": {"State": "SUCCEEDED"},
            "QueryExecutionContext": params.get("QueryExecutionContext", {}),
            "WorkGroup": params.get("WorkGroup"),
        }
        return {"QueryExecution": execution}, note

    def _drop(self, name: str) -> str:
        self.athena.drop(name)
        try:
            self.aws.client("glue").delete_table(DatabaseName=self.res.glue_database, Name=name)
        except self.aws.client("glue").exceptions.EntityNotFoundException:
            pass
        return f"dropped {name}"

    def _ctas(self, name: str, body: str) -> str:
        """CTAS without external_location: Athena writes under a fresh results prefix; locally under features/."""
        key = f"{FEATURES_PREFIX}/{name}/"
        folder = self.athena.ctas(name, self.lake / FEATURES_PREFIX, sql=body)  # DuckDB writes the typed Parquet
        table = pq.ParquetDataset(folder).read()
        delete_data(self.aws, f"s3://{self.res.destination_bucket}/{key}")
        write_parquet(self.aws, table, f"s3://{self.res.destination_bucket}/{key}")
        register_prefix(self.aws, self.res.glue_database, self.res.destination_bucket, key, name, kind="features")
        self.ctas_rows[name] = table.num_rows
        return f"{name}: {table.num_rows:,} rows"

    def _unload(self, qid: str, select: str, location: str, props: dict[str, str]) -> str:
        """UNLOAD as Athena runs it: the location must hold no object, the rows go there as files named after the
        query (no extension, as Athena names them), the local lake mirrors them."""
        fmt = props.get("format", "TEXTFILE").upper()
        if fmt != "PARQUET" or props.get("partitioned_by"):
            raise DefinitionError(f"UNLOAD to {location} with {props}: only unpartitioned PARQUET runs locally")
        bucket, key = split_s3_uri(location)
        prefix = key if key.endswith("/") else f"{key}/"
        if self._list(bucket, prefix):
            raise AthenaQueryError("UNLOAD", f"HIVE_PATH_ALREADY_EXISTS: {location} is not empty (UNLOAD writes "
                                   "only into an empty location)")  # fmt: skip
        table = pa.Table.from_pandas(self.athena.query(select), preserve_index=False)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression=props.get("compression", "GZIP").lower())
        name = f"{prefix}{qid}_00000"
        self.aws.client("s3").put_object(Bucket=bucket, Key=name, Body=buffer.getvalue())
        if bucket == self.res.destination_bucket:
            (self.lake / name).parent.mkdir(parents=True, exist_ok=True)
            (self.lake / name).write_bytes(buffer.getvalue())
        self.unloaded[location] = table.num_rows
        return f"UNLOAD {table.num_rows:,} rows -> {location}"

    def _athena_results(self, params: dict) -> tuple[dict, str]:
        frame = self._results.get(params["QueryExecutionId"])
        if frame is None:
            raise StatesError("States.TaskFailed", f"Athena: no results for {params['QueryExecutionId']}")
        rows = [{"Data": [{"VarCharValue": str(c)} for c in frame.columns]}]
        rows += [{"Data": [{"VarCharValue": _athena_text(v)} for v in row]} for row in frame.itertuples(index=False)]
        return {"ResultSet": {"Rows": rows}}, f"{len(frame):,} row(s)"

    # ---- S3 (the aws-sdk integration: the API's response, without the SDK's metadata) ----

    def _s3(self, operation: str, params: dict) -> dict:
        """One S3 call; its error as the aws-sdk integration names it (``S3.<code>``: a Catch can match it)."""
        try:
            answer = getattr(self.aws.client("s3"), operation)(**params)
        except ClientError as err:
            error = err.response.get("Error", {})
            raise StatesError(f"S3.{error.get('Code', 'S3Exception')}", error.get("Message", str(err))) from err
        answer.pop("ResponseMetadata", None)
        return answer

    def _list_objects(self, params: dict) -> tuple[dict, str]:
        answer = self._s3("list_objects_v2", params)
        for obj in answer.get("Contents", []):
            obj["LastModified"] = obj["LastModified"].isoformat()
        return answer, f"{answer['KeyCount']} key(s) under s3://{params['Bucket']}/{params.get('Prefix', '')}"

    def _delete_object(self, params: dict) -> tuple[dict, str]:
        answer = self._s3("delete_object", params)
        if params["Bucket"] == self.res.destination_bucket:  # the lake mirror follows
            (self.lake / params["Key"]).unlink(missing_ok=True)
        return answer, f"deleted s3://{params['Bucket']}/{params['Key']}"

    # ---- CloudWatch ----

    def _put_metric_data(self, params: dict) -> tuple[dict, str]:
        self.aws.client("cloudwatch").put_metric_data(**params)
        shown = ", ".join(f"{d['MetricName']}={d.get('Value')}" for d in params["MetricData"])
        return {}, f"{params['Namespace']}: {shown}"


def _athena_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def _raw_format(key: str) -> str | None:
    suffixes = [x.lstrip(".") for x in Path(key).suffixes if x != ".gz"]
    return suffixes[-1] if suffixes and suffixes[-1] in ("csv", "parquet", "jsonl", "json") else None


@dataclass
class CurationRun:
    template: Path
    sha256: str
    execution: Execution
    runs: dict[str, JobRun]
    features: dict[str, int]
    unloaded: dict[str, int] = field(default_factory=dict)  # UNLOAD location -> rows, as the workflow wrote them
    crawls: dict[str, CrawlerRun] = field(default_factory=dict)  # each crawler's last crawl, as GetCrawler says


def run_curation(
    cfg: Config, aws: LocalAws, res: LocalResources, lake: Path, athena: LocalAthena,
    template: Path | None = None, execution_input: Any = None,
) -> CurationRun:  # fmt: skip
    """Execute the data stack's curation state machine (from the template) on the local engines."""
    path = template or template_path(cfg)
    doc = json.loads(Path(path).read_text())
    props = _machine(doc, cfg.curation_state_machine)
    definition = machine_definition(doc, props, aws.region)
    engines = LocalEngines(cfg, aws, res, doc, lake, athena)
    execution = Interpreter(definition, engines).execute(execution_input if execution_input is not None else {})
    sha = definition_sha256(doc, cfg.curation_state_machine)
    return CurationRun(Path(path), sha, execution, engines.runs, engines.ctas_rows, engines.unloaded,
                       engines.crawlers.runs)
