-- feature_recently_viewed: each user's 20 most recently viewed distinct products (CTAS feature table).
--
-- Why: session-style recommendations ("because you looked at ...") and the recent-items seed of the
-- real-time path need the last views per user; 20 bounds the table at 20 rows per user.
--
-- Output columns: user_id, recency_rank (1 = most recent), product_id, last_viewed_at (TIMESTAMP,
--   UTC, the latest view of that product), view_count (views of that product by that user)
-- Parameters: none (the cap of 20 is a constant below).
WITH product_views AS (
    SELECT
        user_id,
        product_id,
        max(event_time) AS last_viewed_at,
        count(*) AS view_count
    FROM interactions
    WHERE event_type = 'view'
    GROUP BY user_id, product_id
),
ranked AS (
    SELECT
        user_id,
        product_id,
        last_viewed_at,
        view_count,
        row_number() OVER (PARTITION BY user_id ORDER BY last_viewed_at DESC, product_id) AS recency_rank
    FROM product_views
)
SELECT user_id, recency_rank, product_id, last_viewed_at, view_count
FROM ranked
WHERE recency_rank <= 20
