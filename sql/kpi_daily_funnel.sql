-- kpi_daily_funnel: the shopping funnel per day and category (dashboard dataset and monitoring).
--
-- Why: view -> cart -> purchase conversion by category is the first thing a marketplace looks at,
-- and a sudden drop is an operational signal independent of the model's offline metrics.
-- Rates are NULL when the denominator is 0, and may exceed 1 (a cart without a view that day).
-- Products missing from the catalogue are counted under category 'unknown'; their revenue comes from
-- the order line's unit_price when the file had one, else none.
--
-- Output columns: event_date (DATE, UTC), category, views, carts, purchases, users (distinct users
--   with any event that day in that category), revenue (sum over purchase events of quantity x
--   unit price, the catalogue price where the order line has none; INR, 2 decimals),
--   view_to_cart_rate, cart_to_purchase_rate (DOUBLE, 4 decimals)
-- Order: event_date, category.
-- Parameters: none.
WITH daily AS (
    SELECT
        CAST(i.event_time AS DATE) AS event_date,
        COALESCE(p.category, 'unknown') AS category,
        count_if(i.event_type = 'view') AS views,
        count_if(i.event_type = 'add_to_cart') AS carts,
        count_if(i.event_type = 'purchase') AS purchases,
        count(DISTINCT i.user_id) AS users,
        COALESCE(sum(CASE WHEN i.event_type = 'purchase'
            THEN COALESCE(i.quantity, 1.0) * COALESCE(i.unit_price, p.price) END), 0.0) AS revenue
    FROM interactions AS i
    LEFT JOIN products AS p ON p.product_id = i.product_id
    GROUP BY CAST(i.event_time AS DATE), COALESCE(p.category, 'unknown')
)
SELECT
    event_date,
    category,
    views,
    carts,
    purchases,
    users,
    round(revenue, 2) AS revenue,
    round(CAST(carts AS DOUBLE) / NULLIF(CAST(views AS DOUBLE), 0.0), 4) AS view_to_cart_rate,
    round(CAST(purchases AS DOUBLE) / NULLIF(CAST(carts AS DOUBLE), 0.0), 4) AS cart_to_purchase_rate
FROM daily
ORDER BY event_date, category
