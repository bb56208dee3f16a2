"""Erasure of one shopper (DPDP Act 2023 / GDPR art. 17): the one implementation the Lambda and the local run share.

A shopper's rows are found by *scanning* every object (every version) and item of each store, not by
assuming where a user id lives: a row belongs to the shopper when any of its values (nested JSON and
JSON-in-a-string, as SageMaker data capture writes it, included) equals the id. Each store is a
step that can be redone: it rewrites what holds the shopper's rows and deletes the versions that
held them, so a rerun after a crash finds nothing left and converges. Order per request:

1. suppression: the shopper's keyed hash joins the suppression list first, so even an interrupted
   erasure keeps them out of the next model (``sagemaker_src/prepare_data.py`` applies it: the step
   AWS and the local run both execute);
2. each store, in turn (progress kept in ``erasure/requests/``: a rerun keeps the request id);
3. the audit record (``erasure/audit/``), without the raw id, and the progress record removed.

Why a keyed hash (HMAC-SHA256) and not a salted hash of the id: shopper ids are short and enumerable
(``u1`` ... ``u2000000``), so anyone holding a salted hash and its salt can find the id by trying them
all. The key lives only with the suppression list (``training/erasure_suppression.json``, readable by
the erasure function and the training pipeline); the audit records, which auditors read, hold the
hash alone and cannot be reversed without it.

Only boto3 and pyarrow (the Lambda gets pyarrow from the AWS SDK for pandas layer): no project imports,
so this file deploys as the Lambda asset ``lambdas/erasure`` unchanged.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

#: Where, in the destination bucket, the audit records and the in-flight requests' progress go.
AUDIT_PREFIX = "erasure/audit"
PROGRESS_PREFIX = "erasure/requests"
#: The suppression list: inside the training prefix, so the PrepareData step receives it with the training set.
SUPPRESSION_KEY = "training/erasure_suppression.json"
HASH_ALGORITHM = "hmac-sha256"
#: Model bundles (``sagemaker_src/recsys_core/bundle.py``): ``arrays.npz`` holds the shopper id map and the
#: training history by user row, so a bundle holding the shopper is re-written without their id and rows
#: (:func:`drop_user_from_arrays`), alone or inside a ``model.tar.gz``. Other binaries that hold the id are
#: deleted (every version): they cannot be edited.
ARRAY_SUFFIXES = (".npz",)
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
DATA_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")
#: Model state arrays indexed by user row (``recsys_core/models``: mf's factors, user_knn's user x item matrix,
#: segment_pop's segment per user); every other family's state is per item only. A family not listed in either
#: cannot be re-written safely: its archive is deleted.
USER_ROW_STATES = ("user_factors", "X", "segment_of")
KNOWN_FAMILIES = ("popularity", "item_knn", "rp3beta", "ease", "user_knn", "mf", "content", "segment_pop",
                  "sequence", "sasrec")  # fmt: skip


class CannotRewrite(ValueError):
    """A file holds the shopper in a form this code cannot remove them from: the file is deleted instead."""


# ---- keyed hash and suppression --------------------------------------------------------------------
def user_key(user_id: str, key: bytes) -> str:
    """The shopper's keyed hash (hex): what the audit record and the suppression list hold."""
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def new_suppression() -> dict[str, Any]:
    return {"algorithm": HASH_ALGORITHM, "key": secrets.token_hex(32), "user_keys": []}


# ---- rows of one file ------------------------------------------------------------------------------
def _mentions(value: Any, user_id: str) -> bool:
    """True when ``value`` (a scalar, a list/dict, or a JSON document in a string) holds ``user_id``."""
    if isinstance(value, str):
        if value == user_id:
            return True
        text = value.strip()
        if text[:1] in "{[" and user_id in text:
            try:
                return _mentions(json.loads(text), user_id)
            except ValueError:
                return _token(user_id).search(text) is not None
        if len(text) >= 8 and len(text) % 4 == 0 and _BASE64_WHOLE.fullmatch(text):
            try:  # a dead-lettered record's base64 payload, Firehose's rawData
                decoded = base64.b64decode(text, validate=True).decode("utf-8")
            except ValueError:
                return False
            return decoded != text and (_mentions(decoded, user_id) or _token(user_id).search(decoded) is not None)
        return False
    if isinstance(value, dict):
        if str(value.get("encoding", "")).upper() == "BASE64" and isinstance(value.get("data"), str):
            try:  # SageMaker data capture of a content type it does not list as text
                return _mentions(base64.b64decode(value["data"]).decode("utf-8", errors="replace"), user_id)
            except ValueError:
                pass
        return any(_mentions(v, user_id) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_mentions(v, user_id) for v in value)
    return False


_BASE64_WHOLE = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _token(user_id: str) -> re.Pattern[str]:
    """The id as a whole token: ``u12`` matches in ``"u12"`` but not in ``u123``."""
    return re.compile(rf"(?<![\w-]){re.escape(user_id)}(?![\w-])")


def data_format(key: str) -> str | None:
    """parquet/csv/jsonl from the name (``.gz`` looked through); None for anything else."""
    name = key[:-3] if key.endswith(".gz") else key
    for suffix in DATA_SUFFIXES:
        if name.endswith(suffix):
            return "jsonl" if suffix == ".json" else suffix[1:]
    return None


def is_model_artifact(key: str) -> bool:
    """A model bundle's arrays or a model archive (read and re-written whole, not row by row)."""
    return key.endswith(ARRAY_SUFFIXES + ARCHIVE_SUFFIXES)


# ---- model bundles ---------------------------------------------------------------------------------------
def _id_positions(ids: Any, user_id: str) -> Any:
    import numpy as np

    return np.nonzero(np.asarray(ids).astype(str) == user_id)[0]


def _drop_csr_row(indptr: Any, row: int) -> tuple[Any, int, int]:
    """(indptr without ``row``, lo, hi): entries [lo, hi) were that row's."""
    import numpy as np

    lo, hi = int(indptr[row]), int(indptr[row + 1])
    return np.concatenate([indptr[: row + 1], indptr[row + 2 :] - (hi - lo)]).astype(indptr.dtype), lo, hi


def drop_user_from_arrays(arrays: dict[str, Any], user_id: str, families: list[str] | None) -> int:
    """Remove ``user_id`` from a bundle's arrays in place: the id map entry, their history row (CSR), their rows of
    user-indexed model state and their segment entry. Returns how many id entries went (0: not there).

    ``families`` (``model.json``'s components, in order) must all be known; an array that does not have the
    layout ``Bundle.save`` writes raises :class:`CannotRewrite`, so nothing half-edited is ever written."""
    import numpy as np

    removed = 0
    if "user_ids" in arrays and len(hits := _id_positions(arrays["user_ids"], user_id)):
        unknown = [f for f in families or [] if f not in KNOWN_FAMILIES]
        if unknown or families is None:
            raise CannotRewrite(f"model families {unknown or '(no model.json)'} are not known to hold no user rows")
        u, n_users = int(hits[0]), len(arrays["user_ids"])
        arrays["user_ids"] = np.delete(arrays["user_ids"], u)
        if "hist_indptr" in arrays:
            nnz = int(arrays["hist_indptr"][-1])
            arrays["hist_indptr"], lo, hi = _drop_csr_row(arrays["hist_indptr"], u)
            for name in [k for k in arrays if k.startswith("hist_") and k != "hist_indptr"]:
                if len(arrays[name]) != nnz:
                    raise CannotRewrite(f"{name} is not one value per history entry")
                arrays[name] = np.delete(arrays[name], np.s_[lo:hi])
        for j, _ in enumerate(families):
            for state in USER_ROW_STATES:
                dense, indptr = f"m{j}_{state}", f"m{j}_{state}_indptr"
                if dense in arrays:
                    if len(arrays[dense]) != n_users:
                        raise CannotRewrite(f"{dense} has {len(arrays[dense])} rows for {n_users} users")
                    arrays[dense] = np.delete(arrays[dense], u, axis=0)
                elif indptr in arrays:
                    shape = arrays[f"m{j}_{state}_shape"]
                    if int(shape[0]) != n_users or len(arrays[indptr]) != n_users + 1:
                        raise CannotRewrite(f"m{j}_{state} is not a user x item matrix")
                    arrays[indptr], lo, hi = _drop_csr_row(arrays[indptr], u)
                    for part in ("data", "indices"):
                        arrays[f"m{j}_{state}_{part}"] = np.delete(arrays[f"m{j}_{state}_{part}"], np.s_[lo:hi])
                    arrays[f"m{j}_{state}_shape"] = np.asarray([n_users - 1, *shape[1:]], dtype=shape.dtype)
        removed += 1
    if "seg_user_ids" in arrays and len(hits := _id_positions(arrays["seg_user_ids"], user_id)):
        s = int(hits[0])
        if len(arrays.get("seg_of", ())) != len(arrays["seg_user_ids"]):
            raise CannotRewrite("seg_of is not one segment per seg_user_ids entry")
        arrays["seg_user_ids"], arrays["seg_of"] = np.delete(arrays["seg_user_ids"], s), np.delete(arrays["seg_of"], s)
        removed += 1
    for name, values in arrays.items():  # anything else still naming them: a layout this code does not know
        if values.dtype.kind in "US" and len(_id_positions(values.ravel(), user_id)):
            raise CannotRewrite(f"array {name} holds the id")
    return removed


def _families(doc: bytes | None) -> list[str] | None:
    if doc is None:
        return None
    try:
        return [str(c["family"]) for c in json.loads(doc)["components"]]
    except (ValueError, KeyError, TypeError):
        return None


def filter_npz(data: bytes, user_id: str, model_json: bytes | None) -> tuple[bytes | None, int]:
    """``arrays.npz`` bytes without the shopper (None, 0 when they are not in it); ``model_json`` names the
    families (the file beside it, or the archive's member)."""
    import numpy as np

    if not _npz_mentions(data, user_id):
        return None, 0
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    removed = drop_user_from_arrays(arrays, user_id, _families(model_json))
    if not removed:
        return None, 0
    out = io.BytesIO()
    np.savez(out, **arrays)  # uncompressed, as Bundle.save writes it
    return out.getvalue(), removed


def _npz_mentions(data: bytes, user_id: str) -> bool:
    """Cheap test before parsing: numpy stores text as UTF-32 (``<U``) or bytes (``S``)."""
    return user_id.encode("utf-32-le") in data or user_id.encode("utf-8") in data


def filter_archive(data: bytes, user_id: str) -> tuple[bytes | None, int]:
    """A ``model.tar.gz`` with every member re-written without the shopper; (None, 0) when no member holds them."""
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]  # type: ignore[union-attr]
    docs = {m.name.rsplit("/", 1)[0] if "/" in m.name else "": body for m, body in members
            if m.name.rsplit("/", 1)[-1] == "model.json"}  # fmt: skip
    removed, out_members = 0, []
    for m, body in members:
        if body is not None:
            new, n = filter_object(body, m.name, user_id, model_json=docs.get(m.name.rsplit("/", 1)[0]
                                                                              if "/" in m.name else ""))  # fmt: skip
            if n:
                removed += n
                body = new or b""
                m.size = len(body)
        out_members.append((m, body))
    if not removed:
        return None, 0
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for m, body in out_members:
            tar.addfile(m, io.BytesIO(body) if body is not None else None)
    return out.getvalue(), removed


def filter_object(data: bytes, key: str, user_id: str, *, model_json: bytes | None = None) -> tuple[bytes | None, int]:
    """Any file without the shopper: data rows dropped, model arrays and archives re-written; (None, 0) when it
    does not hold them. A file that holds the id in a form none of these can edit raises :class:`CannotRewrite`."""
    if key.endswith(ARRAY_SUFFIXES):
        return filter_npz(data, user_id, model_json)
    if key.endswith(ARCHIVE_SUFFIXES):
        return filter_archive(data, user_id)
    if data_format(key) is None and _is_parquet(data):
        key += ".parquet"  # Athena names its UNLOAD (the training set) and CTAS files without an extension
    if data_format(key) is None and _looks_like_json_lines(data):
        key += ".jsonl"  # Firehose's error output and delivery files carry no suffix
    if data_format(key) is not None:
        new, removed = filter_rows(data, key, user_id)
        if removed or data_format(key) != "jsonl" or not count_rows(data, key, user_id):
            return new, removed
        raise CannotRewrite("a JSON document (not rows) names the shopper")
    if holds_id(data, user_id):
        raise CannotRewrite("a file this code cannot edit holds the id")
    return None, 0


def _is_parquet(data: bytes) -> bool:
    return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)[:4] == b"PAR1"


def _looks_like_json_lines(data: bytes) -> bool:
    head = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)[:1].lstrip()
    return head in (b"{", b"[")


def holds_id(data: bytes, user_id: str) -> bool:
    """The id as a whole token in any encoding the stores use: UTF-8 (gzip looked through), UTF-16/32 (numpy's
    ``<U`` arrays are UTF-32-LE), base64 of UTF-8 text (SageMaker data capture)."""
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    if _mentions_token(raw, user_id):
        return True
    if any(user_id.encode(enc) in raw for enc in ("utf-32-le", "utf-16-le")):
        return True
    needle = user_id.encode("utf-8")
    for run in _BASE64_RUN.findall(raw):  # a capture record's data field, a dead-lettered Kinesis record's body
        try:
            decoded = base64.b64decode(run + b"=" * (-len(run) % 4))
        except ValueError:
            continue
        if needle in decoded and (_mentions_token(decoded, user_id) or holds_id(decoded, user_id)):
            return True
    return False


_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{8,}={0,2}")


def filter_rows(data: bytes, key: str, user_id: str) -> tuple[bytes | None, int]:
    """``data`` without the shopper's rows and how many went; (None, 0) when none (or not a data file)."""
    fmt = data_format(key)
    if fmt is None or not data:
        return None, 0
    gz = data[:2] == b"\x1f\x8b"
    raw = gzip.decompress(data) if gz else data
    if fmt == "parquet":
        out, removed = _filter_parquet(raw, user_id)
    elif not _mentions_token(raw, user_id) and not (fmt == "jsonl" and holds_id(raw, user_id)):
        return None, 0  # cheap: text holds the id verbatim, unless base64-encoded (capture, dead letters)
    elif fmt == "csv":
        out, removed = _filter_csv(raw, user_id)
    else:
        out, removed = _filter_lines(raw, user_id)
    if not removed:
        return None, 0
    return (gzip.compress(out, mtime=0) if gz else out), removed


def _filter_parquet(raw: bytes, user_id: str) -> tuple[bytes, int]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def texts(t: pa.DataType) -> bool:
        t = t.value_type if pa.types.is_dictionary(t) else t
        return pa.types.is_string(t) or pa.types.is_large_string(t)

    names = [f.name for f in pq.read_schema(io.BytesIO(raw)) if texts(f.type)]
    if not names:
        return raw, 0
    strings = pq.read_table(io.BytesIO(raw), columns=names)  # only the text columns: fast for a clean file
    hit = pa.array([False] * strings.num_rows, type=pa.bool_())
    for column in strings.columns:
        values = column.cast(pa.string()) if pa.types.is_dictionary(column.type) else column
        hit = pc.or_(hit, pc.fill_null(pc.equal(values, user_id), False))
    removed = pc.sum(hit).as_py() or 0
    if not removed:
        return raw, 0
    table = pq.read_table(io.BytesIO(raw))
    buffer = io.BytesIO()
    pq.write_table(table.filter(pc.invert(hit)), buffer)
    return buffer.getvalue(), int(removed)


def _filter_csv(raw: bytes, user_id: str) -> tuple[bytes, int]:
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    header, body = rows[:1], rows[1:]
    kept = [r for r in body if user_id not in r]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([*header, *kept])
    return out.getvalue().encode("utf-8"), len(body) - len(kept)


def _filter_lines(raw: bytes, user_id: str) -> tuple[bytes, int]:
    """JSON lines (or one JSON document); a line that does not parse goes when it holds the id as a token."""
    text = raw.decode("utf-8", errors="replace")
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, list):  # one JSON array of records
        kept_items = [x for x in whole if not _mentions(x, user_id)]
        return json.dumps(kept_items).encode("utf-8"), len(whole) - len(kept_items)
    if isinstance(whole, dict) and "\n" in text.strip():  # one document (a report): not rows, see count_rows
        return raw, 0
    token = _token(user_id)
    kept, removed = [], 0
    for line in text.splitlines(keepends=True):
        try:
            hit = _mentions(json.loads(line), user_id) if line.strip() else False
        except ValueError:
            hit = token.search(line) is not None
        if hit:
            removed += 1
        else:
            kept.append(line)
    return "".join(kept).encode("utf-8"), removed


def count_rows(data: bytes, key: str, user_id: str) -> int:
    """The shopper's rows in a data file; a JSON document that names them but has no rows to drop counts 1,
    so the verification scan reports what the erasure could not edit instead of passing it over."""
    _, removed = filter_rows(data, key, user_id)
    if removed or data_format(key) != "jsonl":
        return removed
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    try:
        return int(_mentions(json.loads(raw), user_id))
    except ValueError:
        return 0


def _mentions_token(data: bytes, user_id: str) -> bool:
    needle = user_id.encode("utf-8")
    if needle not in data:
        return False
    return re.search(rb"(?<![\w-])" + re.escape(needle) + rb"(?![\w-])", data) is not None


# ---- stores ------------------------------------------------------------------------------------------
@dataclass
class Removed:
    """What one store's step removed: rows (counted in every version that held them), object versions
    deleted (older versions in a versioned bucket), objects rewritten, objects deleted whole (a file that could
    not be edited), DynamoDB items deleted, and the model bundles (arrays or archives) re-written or deleted."""

    rows: int = 0
    versions_deleted: int = 0
    objects_rewritten: int = 0
    items: int = 0
    objects_deleted: int = 0
    models: list[str] = field(default_factory=list)

    def add(self, other: Removed) -> None:
        for name in ("rows", "versions_deleted", "objects_rewritten", "items", "objects_deleted"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.models = sorted({*self.models, *other.models})

    @property
    def total(self) -> int:
        return self.rows + self.items


class Store(Protocol):
    name: str

    def erase(self, user_id: str) -> Removed: ...

    def find(self, user_id: str) -> list[str]: ...


#: (bucket, key, version id, user id) read during this request and found without the user. S3 version ids name
#: immutable bytes, so the verification scan after an erasure need not fetch them again ("null", the version of
#: an unversioned bucket's object, is never cached). Cleared when a request starts.
_CLEAN: set[tuple[str, str, str, str]] = set()


#: Objects read at once: S3 GETs wait on the network and pyarrow releases the GIL, so a few threads help.
WORKERS = 4


def _parallel(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """``fn`` over ``items`` in order, on a few threads (clients are thread-safe); the first error propagates."""
    if len(items) < 2:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(fn, items))


def _versions(s3: Any, bucket: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every version (not delete markers) of every key under ``prefix``, newest first, by key."""
    out: dict[str, list[dict[str, Any]]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            out.setdefault(v["Key"], []).append(v)
    return out


@dataclass(frozen=True)
class S3Store:
    """Objects under ``prefix`` of ``bucket``, every version of each (versioned or not)."""

    name: str
    s3: Any
    bucket: str
    prefix: str = ""

    def _hits(self, key: str, versions: list[dict[str, Any]], user_id: str) -> list[tuple[dict, bytes | None, int]]:
        """(version, its bytes without the shopper or None when the file must go whole, count) per version holding
        them."""
        hits = []
        for v in versions:
            seen = (self.bucket, key, v["VersionId"], user_id)
            if seen in _CLEAN:
                continue
            body = self.s3.get_object(Bucket=self.bucket, Key=key, VersionId=v["VersionId"])["Body"].read()
            try:
                new, removed = filter_object(body, key, user_id)
            except CannotRewrite:
                new, removed = None, 1
            if removed:
                hits.append((v, new, removed))
            elif v["VersionId"] != "null":
                _CLEAN.add(seen)  # a version id names immutable bytes: no need to read them again
        return hits

    def erase(self, user_id: str) -> Removed:
        """Per key: the current version rewritten without the rows (a new version), then every version that
        held them deleted by VersionId. Crash-safe in that order: a rerun finds the clean current version
        and deletes the old ones left; nothing is lost when the put succeeds and the deletes do not. A file
        that cannot be edited (:class:`CannotRewrite`) loses every version that holds the shopper."""
        done = Removed()
        keys = list(_versions(self.s3, self.bucket, self.prefix).items())
        for part in _parallel(lambda kv: self._erase_key(kv[0], kv[1], user_id), keys):
            done.add(part)
        return done

    def _erase_key(self, key: str, versions: list[dict[str, Any]], user_id: str) -> Removed:
        done = Removed()
        hits = self._hits(key, versions, user_id)
        if hits:
            put_version = None
            latest, new, _ = hits[0]
            if latest.get("IsLatest") and new is not None:
                put = self.s3.put_object(Bucket=self.bucket, Key=key, Body=new)
                put_version = put.get("VersionId") or "null"
                done.objects_rewritten += 1
            elif latest.get("IsLatest"):
                done.objects_deleted += 1
            if is_model_artifact(key):
                done.models.append(f"s3://{self.bucket}/{key}")
            for v, _, n in hits:
                done.rows += n
                if v["VersionId"] == "null" and put_version == "null":
                    continue  # an unversioned bucket: the put replaced it
                self.s3.delete_object(Bucket=self.bucket, Key=key, VersionId=v["VersionId"])
                done.versions_deleted += 1
        return done

    def find(self, user_id: str) -> list[str]:
        todo = [
            (key, v["VersionId"])
            for key, versions in _versions(self.s3, self.bucket, self.prefix).items()
            for v in versions
            if (self.bucket, key, v["VersionId"], user_id) not in _CLEAN
        ]

        def rows(item: tuple[str, str]) -> str | None:
            key, version = item
            body = self.s3.get_object(Bucket=self.bucket, Key=key, VersionId=version)["Body"].read()
            n = count_in(body, key, user_id)
            return f"s3://{self.bucket}/{key}?versionId={version} ({n} rows)" if n else None

        return [f for f in _parallel(rows, todo) if f]


def count_in(data: bytes, key: str, user_id: str, *, model_json: bytes | None = None) -> int:
    """How many of the shopper's rows (or id entries) a file holds, whatever its kind; a file that holds the id in
    a form the erasure cannot edit counts 1, so the verification reports it instead of passing it over."""
    try:
        _, removed = filter_object(data, key, user_id, model_json=model_json)
    except CannotRewrite:
        return 1
    return removed


@dataclass(frozen=True)
class DynamoStore:
    """A DynamoDB table, scanned whole: an item goes when any of its attributes holds the id."""

    name: str
    dynamodb: Any
    table: str

    def _matches(self, user_id: str) -> Iterator[dict[str, Any]]:
        keys = [k["AttributeName"] for k in self.dynamodb.describe_table(TableName=self.table)["Table"]["KeySchema"]]
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.table):
            for item in page.get("Items", []):
                if _mentions(_plain(item), user_id):
                    yield {k: item[k] for k in keys}

    def erase(self, user_id: str) -> Removed:
        done = Removed()
        for key in list(self._matches(user_id)):
            self.dynamodb.delete_item(TableName=self.table, Key=key)
            done.items += 1
        return done

    def find(self, user_id: str) -> list[str]:
        return [f"dynamodb:{self.table} {json.dumps(_plain(k))}" for k in self._matches(user_id)]


def _plain(value: Any) -> Any:
    """A DynamoDB-JSON attribute value as plain Python ({"S": "u1"} -> "u1")."""
    if isinstance(value, dict) and len(value) == 1:
        (tag, inner), = value.items()
        if tag in ("S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS"):
            return inner
        if tag == "L":
            return [_plain(v) for v in inner]
        if tag == "M":
            return {k: _plain(v) for k, v in inner.items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class DirStore:
    """Files under a local folder (the local run's workdir copies); rewritten in place, atomically."""

    name: str
    root: Path

    def _files(self) -> Iterator[Path]:
        if self.root.is_dir():
            for path in sorted(self.root.rglob("*")):
                if path.is_file() and not path.name.endswith(".erasure"):
                    yield path

    @staticmethod
    def _seen(path: Path, user_id: str) -> tuple[str, str, str, str]:
        stat = path.stat()  # a rewrite changes both: a file read clean stays clean until then
        return (str(path), str(stat.st_mtime_ns), str(stat.st_size), user_id)

    @staticmethod
    def _model_json(path: Path) -> bytes | None:
        beside = path.with_name("model.json")
        return beside.read_bytes() if path.name.endswith(ARRAY_SUFFIXES) and beside.is_file() else None

    def _erase_file(self, path: Path, user_id: str) -> Removed:
        data = path.read_bytes()
        try:
            new, removed = filter_object(data, path.name, user_id, model_json=self._model_json(path))
        except CannotRewrite:
            path.unlink()
            return Removed(rows=1, objects_deleted=1, models=[str(path)] if is_model_artifact(path.name) else [])
        if not removed:
            _CLEAN.add(self._seen(path, user_id))
            return Removed()
        tmp = path.with_name(f".{path.name}.erasure")
        tmp.write_bytes(new or b"")
        os.replace(tmp, path)
        return Removed(rows=removed, objects_rewritten=1, models=[str(path)] if is_model_artifact(path.name) else [])

    def erase(self, user_id: str) -> Removed:
        done = Removed()
        for part in _parallel(lambda p: self._erase_file(p, user_id), list(self._files())):
            done.add(part)
        return done

    def find(self, user_id: str) -> list[str]:
        def rows(p: Path) -> str | None:
            n = count_in(p.read_bytes(), p.name, user_id, model_json=self._model_json(p))
            return f"{p} ({n} rows)" if n else None

        todo = [p for p in self._files() if self._seen(p, user_id) not in _CLEAN]
        return [f for f in _parallel(rows, todo) if f]


# ---- where records go ------------------------------------------------------------------------------
class Records(Protocol):
    """Small JSON documents by key: the suppression list, progress and audit records."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, doc: dict[str, Any]) -> None: ...

    def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class S3Records:
    s3: Any
    bucket: str

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def put(self, key: str, doc: dict[str, Any]) -> None:
        body = json.dumps(doc, indent=1, sort_keys=True).encode()
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def delete(self, key: str) -> None:
        """Every version: a progress record names no one, but an old one should not outlive its request."""
        for v in _versions(self.s3, self.bucket, key).get(key, []):
            self.s3.delete_object(Bucket=self.bucket, Key=key, VersionId=v["VersionId"])


@dataclass(frozen=True)
class DirRecords:
    root: Path

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.root / key
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, key: str, doc: dict[str, Any]) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1, sort_keys=True))

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


# ---- the request ------------------------------------------------------------------------------------
@dataclass
class ErasureResult:
    request_id: str
    subject: str  # the keyed hash
    removed: dict[str, Removed] = field(default_factory=dict)
    audit_key: str = ""
    resumed: bool = False

    def summary(self) -> dict[str, int]:
        return {name: r.total for name, r in self.removed.items()}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def forget(
    user_id: str,
    stores: Iterable[Store],
    records: Iterable[Records],
    *,
    requested_by: str = "",
    after_store: Callable[[str, Removed], None] | None = None,
    retention: Iterable[dict[str, Any]] = (),
) -> ErasureResult:
    """Erase ``user_id`` from every store; suppression first, audit last. ``records``: the first holds the
    suppression list, progress and audit; any others get copies of the suppression list and the audit record
    (the local run keeps both in its workdir as well). ``after_store`` is called after each store (progress
    output; tests raise there to simulate a crash). ``retention``: what cannot be erased at once
    (``{"store", "days", "enforced_by"}``, ``settings.erasure.retention``), copied into the audit record with the
    day the last copy expires."""
    if not user_id or not user_id.strip():
        raise ValueError("a user id is required")
    _CLEAN.clear()
    stores, (primary, *copies) = list(stores), list(records)
    suppression = primary.get(SUPPRESSION_KEY) or next(filter(None, (c.get(SUPPRESSION_KEY) for c in copies)), None)
    suppression = suppression or new_suppression()
    subject = user_key(user_id, bytes.fromhex(suppression["key"]))
    if subject not in suppression["user_keys"]:
        suppression["user_keys"] = sorted({*suppression["user_keys"], subject})
    for target in (primary, *copies):
        target.put(SUPPRESSION_KEY, suppression)

    progress_key = f"{PROGRESS_PREFIX}/{subject}.json"
    progress = primary.get(progress_key)
    resumed = progress is not None
    progress = progress or {"request_id": str(uuid.uuid4()), "requested_at": _now(), "stores": {}}
    result = ErasureResult(progress["request_id"], subject, resumed=resumed)
    for store in stores:
        done = store.erase(user_id)
        earlier = Removed(**progress["stores"].get(store.name, {}))
        earlier.add(done)  # a rerun adds what the interrupted attempt had already removed
        progress["stores"][store.name] = asdict(earlier)
        primary.put(progress_key, progress)
        result.removed[store.name] = earlier
        if after_store:
            after_store(store.name, done)

    completed = datetime.now(UTC).replace(microsecond=0)
    retention = [dict(r) for r in retention]
    longest = max((int(r["days"]) for r in retention), default=0)
    audit = {
        "request_id": result.request_id,
        "subject_hash": subject,
        "hash": f"{HASH_ALGORITHM} (key held with the suppression list, not here)",
        "requested_at": progress["requested_at"],
        "completed_at": completed.isoformat(),
        "requested_by": requested_by,
        "resumed_after_interruption": resumed,
        "stores": progress["stores"],
        "model_versions_touched": sorted({m for r in result.removed.values() for m in r.models}),
        "suppressed_from_training": True,
        "suppressed_from_serving": True,
        "not_erased_at_once": retention,
        "last_copy_expires": (completed + timedelta(days=longest)).date().isoformat(),
    }
    result.audit_key = f"{AUDIT_PREFIX}/{audit['completed_at'][:10]}/{result.request_id}.json"
    for target in (primary, *copies):
        target.put(result.audit_key, audit)
    primary.delete(progress_key)
    return result


def find_everywhere(user_id: str, stores: Iterable[Store]) -> dict[str, list[str]]:
    """Every place (object version, item, file) in ``stores`` still holding the shopper's rows."""
    return {store.name: found for store in stores if (found := store.find(user_id))}


# ---- which stores -----------------------------------------------------------------------------------
def build_stores(specs: Iterable[dict[str, str]], s3: Any, dynamodb: Any) -> list[Store]:
    """Stores from plain specs (``{"name", "bucket", "prefix"}`` or ``{"name", "table"}``), the form the
    Lambda receives in its environment and the local run builds from ``settings.erasure``."""
    out: list[Store] = []
    for spec in specs:
        if "table" in spec:
            out.append(DynamoStore(spec["name"], dynamodb, spec["table"]))
        else:
            out.append(S3Store(spec["name"], s3, spec["bucket"], spec.get("prefix", "")))
    return out


def every_store(s3: Any | None, dynamodb: Any | None, dirs: Iterable[Path] = ()) -> list[Store]:
    """For the verification scan: every bucket whole and every table of the account, plus local folders,
    whatever the erasure's own list says (a store it forgot shows up here)."""
    buckets = [b["Name"] for b in s3.list_buckets().get("Buckets", [])] if s3 is not None else []
    pages = dynamodb.get_paginator("list_tables").paginate() if dynamodb is not None else []
    tables = [t for page in pages for t in page.get("TableNames", [])]
    return [
        *(S3Store(f"s3://{b}", s3, b) for b in buckets),
        *(DynamoStore(f"dynamodb:{t}", dynamodb, t) for t in tables),
        *(DirStore(str(d), Path(d)) for d in dirs),
    ]
