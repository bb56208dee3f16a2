"""Load the per-table recipe JSON and compose the two DataBrew recipes (curated, quarantine) from it.

One JSON file per table holds DataBrew recipe steps in the CloudFormation ``AWS::DataBrew::Recipe`` ``Steps``
shape, split into sections. Both recipes start with the same ``flag_steps`` (which write ``quarantine_reason``
and ``row_status``); a documented row filter (REMOVE_VALUES + an IS condition on ``row_status``) then keeps
one side, and the section for that side finishes the job. The CDK stack and the local executor both call
``recipe_steps``, so AWS and the local run execute the same list.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

from glue_jobs.recipe_executor import (
    CURATED_STATUS,
    QUARANTINE_STATUS,
    ROW_STATUS_COLUMN,
    RecipeStepError,
    validate_step,
)
from glue_jobs.schema import RAW_COLUMNS

RECIPES_DIR: Path = Path(__file__).resolve().parent / "recipes"
STEP_SECTIONS = ("flag_steps", "curated_steps", "quarantine_steps")
KNOWN_SECTIONS = frozenset({"description", *STEP_SECTIONS})
OUTPUTS = {CURATED_STATUS: "curated_steps", QUARANTINE_STATUS: "quarantine_steps"}
#: Keys starting with this prefix document a step in the JSON ("_why") and are stripped before use.
NOTE_PREFIX = "_"


def _strip_notes(step: dict) -> dict:
    return {k: copy.deepcopy(v) for k, v in step.items() if not k.startswith(NOTE_PREFIX)}


@cache
def _load(table: str) -> str:
    if table not in RAW_COLUMNS:
        raise ValueError(f"unknown table {table!r}; expected one of {sorted(RAW_COLUMNS)}")
    path = RECIPES_DIR / f"{table}.json"
    return path.read_text(encoding="utf-8")


def load_recipe(table: str) -> dict:
    """The parsed recipe, validated: known sections only, every step a supported, well-formed DataBrew step."""
    path = RECIPES_DIR / f"{table}.json"
    try:
        recipe = json.loads(_load(table))
    except json.JSONDecodeError as exc:
        raise RecipeStepError(f"{path}: not valid JSON: {exc}") from exc
    unknown = set(recipe) - KNOWN_SECTIONS
    missing = [s for s in STEP_SECTIONS if s not in recipe]
    if unknown or missing:
        raise RecipeStepError(f"{path}: unknown sections {sorted(unknown)}, missing sections {missing}")
    for section in STEP_SECTIONS:
        steps = [_strip_notes(s) for s in recipe[section]]
        for i, step in enumerate(steps):
            try:
                validate_step(step)
            except RecipeStepError as exc:
                raise RecipeStepError(f"{path}: {section}[{i}]: {exc}") from exc
        recipe[section] = steps
    return recipe


def row_filter_step(keep: str) -> dict:
    """REMOVE_VALUES with an IS condition: drop the rows whose row_status is the other side."""
    if keep not in OUTPUTS:
        raise ValueError(f"keep must be one of {sorted(OUTPUTS)}, not {keep!r}")
    drop = QUARANTINE_STATUS if keep == CURATED_STATUS else CURATED_STATUS
    return {
        "Action": {"Operation": "REMOVE_VALUES", "Parameters": {"sourceColumn": ROW_STATUS_COLUMN}},
        "ConditionExpressions": [{"Condition": "IS", "Value": json.dumps([drop]), "TargetColumn": ROW_STATUS_COLUMN}],
    }


def recipe_steps(table: str, output: str) -> list[dict]:
    """CloudFormation RecipeStep dicts for ``<table>-<output>``; output is "curated" or "quarantine"."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {sorted(OUTPUTS)}, not {output!r}")
    recipe = load_recipe(table)
    return [*recipe["flag_steps"], row_filter_step(output), *recipe[OUTPUTS[output]]]
