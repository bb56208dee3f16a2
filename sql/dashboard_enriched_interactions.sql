-- dashboard_enriched_interactions: every interaction with its product and shopper attributes (dashboard dataset).
--
-- Why: the QuickSight analyses slice behaviour by category, price, gender and location; one wide
-- dataset lets the dashboard aggregate freely (top products by revenue, orders by region) without a
-- query per visual. Left joins keep interactions whose product or user is missing from the catalogue
-- (category 'unknown'), as kpi_daily_funnel does.
--
-- Output columns: event_time (TIMESTAMP, UTC), event_date (DATE), user_id, product_id, event_type,
--   category, sub_category, price (INR), revenue (quantity x unit price for purchase events, the
--   catalogue price where the order line has none; else 0.0), orders (1 for purchase events, else 0),
--   gender, location
-- Order: event_time, user_id, product_id.
-- Parameters: none.
SELECT
    i.event_time,
    CAST(i.event_time AS DATE) AS event_date,
    i.user_id,
    i.product_id,
    i.event_type,
    COALESCE(p.category, 'unknown') AS category,
    p.sub_category,
    p.price,
    CASE WHEN i.event_type = 'purchase'
        THEN COALESCE(COALESCE(i.quantity, 1.0) * COALESCE(i.unit_price, p.price), 0.0) ELSE 0.0 END AS revenue,
    CASE WHEN i.event_type = 'purchase' THEN 1 ELSE 0 END AS orders,
    u.gender,
    u.location
FROM interactions AS i
LEFT JOIN products AS p ON p.product_id = i.product_id
LEFT JOIN users AS u ON u.user_id = i.user_id
ORDER BY i.event_time, i.user_id, i.product_id
