"""Response comparisons that ignore the one field that differs by design between two answers."""

from __future__ import annotations

from typing import Any

#: Each response carries a fresh ``recommendation_id`` (issue 14), so two answers to one request differ in it.
RECOMMENDATION_ID = "recommendation_id"


def without_recommendation_ids(doc: Any) -> Any:
    """``doc`` with every response's ``recommendation_id`` removed (single or ``predictions`` batch)."""
    if isinstance(doc, dict):
        out = {k: v for k, v in doc.items() if k != RECOMMENDATION_ID}
        if isinstance(out.get("predictions"), list):
            out["predictions"] = [without_recommendation_ids(p) for p in out["predictions"]]
        return out
    return doc
