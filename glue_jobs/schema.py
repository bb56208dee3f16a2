"""Table schemas: the raw contract (CONTRACTS.md §1) and the curated columns downstream SQL uses.

The generator writes RAW_COLUMNS; the recipes turn raw into curated; the Athena SQL in
``sql/`` and the Glue catalogue rely on CURATED_COLUMNS. Recipes may add further columns
(encodings); extra raw columns are passed through.
"""

from __future__ import annotations

import pyarrow as pa

#: Raw columns per table, in file order (CONTRACTS.md §1). All are read as strings.
RAW_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("user_id", "age", "gender", "location", "signup_date"),
    "products": ("product_id", "product_url", "category", "sub_category", "price"),
    "interactions": ("user_id", "product_id", "event_type", "rating", "timestamp"),
}

#: Optional raw columns beyond the contract's core (new in the README's "Your own data"): an order line's
#: ``quantity`` (default 1) and ``unit_price`` (INR; the catalogue price when empty) make revenue right for
#: shops whose files carry them. Absent ones are added empty before the recipe runs.
OPTIONAL_RAW_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": (),
    "products": (),
    "interactions": ("quantity", "unit_price", "recommendation_id"),
}
#: ``recommendation_id`` (issue 14): the endpoint answer a clickstream event came from, echoed by the shop; empty
#: for events not from a recommendation. The recipe passes it through untouched (no step names it, so a DataBrew
#: job over a file without the column still runs); attribution SQL reads blank as absent.

#: Columns that must be present in a raw file for the table to be processed at all (a real catalogue often
#: has no category: it is optional and reads 'unknown').
REQUIRED_RAW_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("user_id",),
    "products": ("product_id", "price"),
    "interactions": ("user_id", "product_id", "event_type", "timestamp"),
}

EVENT_TYPES = ("view", "add_to_cart", "purchase", "rating")

#: Curated columns that SQL, the catalogue and the recommender may rely on (name -> type).
CURATED_COLUMNS: dict[str, dict[str, pa.DataType]] = {
    "users": {
        "user_id": pa.string(),
        "age": pa.int64(),  # null when missing or implausible
        "gender": pa.string(),  # normalised lower-case; "unknown" when missing
        "location": pa.string(),
        "signup_date": pa.date32(),
    },
    "products": {
        "product_id": pa.string(),
        "product_url": pa.string(),
        "category": pa.string(),  # "unknown" when missing
        "sub_category": pa.string(),
        "price": pa.float64(),  # INR, > 0
        "price_normalized": pa.float64(),  # min-max over the curated rows, in [0, 1]
    },
    "interactions": {
        "user_id": pa.string(),
        "product_id": pa.string(),
        "event_type": pa.string(),  # one of EVENT_TYPES
        "rating": pa.float64(),  # 1-5 for rating events, else null
        "event_time": pa.timestamp("ms"),  # UTC, timezone-naive
        "quantity": pa.float64(),  # units on the order line, > 0; 1 when the file has none
        "unit_price": pa.float64(),  # INR per unit on the order line, > 0; null = use the catalogue price
        "recommendation_id": pa.string(),  # the answer the event came from (clickstream); null/blank = none
    },
}

#: Quarantine rows keep every raw column (as strings) plus these two.
QUARANTINE_REASON_COLUMN = "quarantine_reason"
QUARANTINE_STEP_COLUMN = "quarantine_step"

#: The batch step's outputs (``sagemaker_src/batch_recommend.py``): what the endpoint would answer for every
#: known user and every product, as Glue tables under the destination bucket's ``settings.config.BATCH_PREFIX``.
BATCH_COLUMNS: dict[str, dict[str, pa.DataType]] = {
    "batch_user_recommendations": {
        "user_id": pa.string(),
        "rank": pa.int32(),  # 1 = first
        "product_id": pa.string(),
        "score": pa.float64(),
        "strategy": pa.string(),
        "model_version": pa.string(),
        "generated_at": pa.timestamp("s"),  # UTC
    },
    "batch_similar_products": {
        "product_id": pa.string(),
        "rank": pa.int32(),
        "similar_product_id": pa.string(),
        "score": pa.float64(),
        "model_version": pa.string(),
        "generated_at": pa.timestamp("s"),
    },
}
#: Folder of each batch table under ``batch/`` (the step's output channel keeps this layout).
BATCH_FOLDERS = {"batch_user_recommendations": "user_recommendations", "batch_similar_products": "similar_products"}

#: The endpoint's data-capture records (SageMaker's JSON lines under the destination bucket's ``capture/``; see
#: ``recsys/local/capture.py``): the Glue table ``endpoint_capture`` declares them, the local run reads them alike.
_CAPTURED = pa.struct(
    [("observedContentType", pa.string()), ("mode", pa.string()), ("data", pa.string()), ("encoding", pa.string())]
)
CAPTURE_SCHEMA = pa.schema(
    [
        ("captureData", pa.struct([("endpointInput", _CAPTURED), ("endpointOutput", _CAPTURED)])),
        ("eventMetadata", pa.struct([("eventId", pa.string()), ("inferenceTime", pa.string())])),
        ("eventVersion", pa.string()),
    ]
)
