-- feature_purchased_together: products bought by the same users within 7 days (CTAS feature table).
--
-- Why: "frequently bought together" recommendations. A pair counts once per user who bought both
-- products within 7 days of each other (distinct users, so one shopper's repeat orders do not
-- inflate it). Only pairs with pair_count >= 2 are kept: a pair seen for a single user is noise
-- rather than a pattern, and pairs grow quadratically with each basket, so the threshold is what
-- keeps the table small. Rows are symmetric (A,B and B,A) so a lookup is a filter on product_id.
--
-- Output columns: product_id, related_product_id, pair_count (distinct users),
--   pair_rank (1 = strongest related product for product_id)
-- Parameters: none (window of 7 days and minimum count of 2 are constants below).
WITH purchases AS (
    SELECT DISTINCT user_id, product_id, event_time
    FROM interactions
    WHERE event_type = 'purchase'
),
pairs AS (
    SELECT
        a.product_id,
        b.product_id AS related_product_id,
        count(DISTINCT a.user_id) AS pair_count
    FROM purchases AS a
    JOIN purchases AS b
        ON b.user_id = a.user_id
        AND b.product_id <> a.product_id
        AND b.event_time BETWEEN a.event_time - INTERVAL '7' DAY AND a.event_time + INTERVAL '7' DAY
    GROUP BY a.product_id, b.product_id
    HAVING count(DISTINCT a.user_id) >= 2
)
SELECT
    product_id,
    related_product_id,
    pair_count,
    row_number() OVER (PARTITION BY product_id ORDER BY pair_count DESC, related_product_id) AS pair_rank
FROM pairs
