-- training_set: the extraction the recommender trains on (CONTRACTS.md §1 interactions, plus joins).
--
-- Why: the training job reads one flat table in the raw interactions contract, so the same
-- train.py works on a raw CSV and on this extract. The curated `event_time` goes back to the
-- contract's `timestamp` as epoch seconds (floor of to_unixtime, UTC: Athena's session zone).
-- LEFT JOINs keep every interaction: a model must train on interactions alone, so an unknown
-- product or user only leaves its joined columns null.
-- Interactions come from the uploaded exports and from the Kinesis clickstream archive (curated by
-- the same recipe into `clickstream`). UNION, not UNION ALL: an event present in both (an export
-- that overlaps the stream) counts once, the rule the recipe applies to duplicates within a source.
--
-- Output columns: user_id, product_id, event_type, rating, timestamp (BIGINT epoch seconds),
--   category, sub_category, price, age, gender, location
-- Order: timestamp, user_id, product_id, event_type (chronological, so a time split is a slice).
-- Parameters: none.
SELECT
    i.user_id,
    i.product_id,
    i.event_type,
    i.rating,
    CAST(floor(to_unixtime(i.event_time)) AS BIGINT) AS "timestamp",
    p.category,
    p.sub_category,
    p.price,
    u.age,
    u.gender,
    u.location
FROM (
    SELECT user_id, product_id, event_type, rating, event_time FROM interactions
    UNION
    SELECT user_id, product_id, event_type, rating, event_time FROM clickstream
) AS i
LEFT JOIN products AS p ON p.product_id = i.product_id
LEFT JOIN users AS u ON u.user_id = i.user_id
ORDER BY "timestamp", i.user_id, i.product_id, i.event_type
