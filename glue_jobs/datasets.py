"""Which raw objects each DataBrew dataset reads: one definition for the data stack's datasets and the local run.

A table's dataset reads its ``raw/<table>/`` folder. The clickstream archive is different: Firehose writes it
under ``year=/month=/day=/`` sub-folders, and DataBrew documents *parameterised S3 paths* for data spread over
folders ("Connecting data in multiple files in Amazon S3"), not that a plain prefix reads sub-folders. So its
dataset key names the folders with ``{year}``/``{month}``/``{day}`` path parameters (``PathOptions.Parameters``).
:func:`selected_keys` is the local reading of such a key, used on the definition the template holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from settings.config import CLICKSTREAM, RAW_PREFIX
from settings.streaming import ARCHIVE_DATE_LAYOUT, STREAM_ARCHIVE_PREFIX

#: strftime fields of the archive's folders -> the dataset's path parameter for each.
_DATE_PARAMETERS = {"%Y": "year", "%m": "month", "%d": "day"}
#: What a parameter of each DataBrew type matches in one path segment (no filter: every value is selected).
_PARAMETER_PATTERNS = {"String": r"[^/]+", "Number": r"\d+"}


def dataset_key(name: str) -> str:
    """The dataset's S3 key: a folder, or for the clickstream the archive's folders with path parameters."""
    if name != CLICKSTREAM:
        return f"{RAW_PREFIX}/{name}/"
    layout = ARCHIVE_DATE_LAYOUT
    for field, parameter in _DATE_PARAMETERS.items():
        layout = layout.replace(field, "{" + parameter + "}")
    return f"{STREAM_ARCHIVE_PREFIX}{layout}"


def path_parameters(name: str) -> dict[str, dict[str, Any]]:
    """``PathOptions.Parameters`` in the API's shape (name -> DatasetParameter); empty for a plain folder.

    String parameters without a filter: every year/month/day folder Firehose has written is read."""
    names = re.findall(r"\{(\w+)\}", dataset_key(name))
    return {p: {"Name": p, "Type": "String"} for p in names}


def selected_keys(key: str, parameters: Mapping[str, Mapping[str, Any]], keys: Iterable[str]) -> list[str]:
    """The objects a dataset with this key and these path parameters reads, in key order.

    A key ending in ``/`` is a folder: the objects directly in it (what Firehose writes), not deeper ones.
    A parameter with a filter, or a ``<regex>`` part, is refused: the local run must not read more or less
    than DataBrew would, so it reads only what it can interpret exactly."""
    if "<" in key:
        raise ValueError(f"dataset key {key!r}: regular-expression path parts are not interpreted locally")
    pattern, pos = "", 0
    for match in re.finditer(r"\{(\w+)\}", key):
        name = match.group(1)
        spec = parameters.get(name)
        if spec is None:
            raise ValueError(f"dataset key {key!r}: path parameter {{{name}}} has no definition in PathOptions")
        if spec.get("Filter") or spec.get("Type") not in _PARAMETER_PATTERNS:
            raise ValueError(f"path parameter {name!r}: only String/Number without a filter are interpreted locally")
        pattern += re.escape(key[pos : match.start()]) + f"(?P<{name}>{_PARAMETER_PATTERNS[spec['Type']]})"
        pos = match.end()
    pattern += re.escape(key[pos:]) + (r"[^/]+" if key.endswith("/") else "")
    unused = set(parameters) - set(re.findall(r"\{(\w+)\}", key))
    if unused:
        raise ValueError(f"dataset key {key!r}: PathOptions defines unused parameters {sorted(unused)}")
    compiled = re.compile(pattern)
    return sorted(k for k in keys if compiled.fullmatch(k))


def template_parameters(path_options: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``PathOptions`` as CloudFormation writes it (a list of PathParameterName + DatasetParameter) -> API shape."""
    return {p["PathParameterName"]: dict(p["DatasetParameter"]) for p in (path_options or {}).get("Parameters", [])}
