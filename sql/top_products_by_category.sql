-- top_products_by_category: the 10 best-selling products of each category (dashboard dataset).
--
-- Why: merchandising and the popularity fallback both want "what sells here"; purchases rank
-- first, views break ties, product_id makes the order deterministic (row_number, no shared ranks).
-- Only products present in the catalogue (inner join: a category is needed to rank within).
--
-- Output columns: category, category_rank (1 = best), product_id, purchases, views
-- Order: category, category_rank.
-- Parameters: none (top N = 10 is a constant below).
WITH product_counts AS (
    SELECT
        p.category,
        i.product_id,
        count_if(i.event_type = 'purchase') AS purchases,
        count_if(i.event_type = 'view') AS views
    FROM interactions AS i
    JOIN products AS p ON p.product_id = i.product_id
    GROUP BY p.category, i.product_id
),
ranked AS (
    SELECT
        category,
        product_id,
        purchases,
        views,
        row_number() OVER (PARTITION BY category ORDER BY purchases DESC, views DESC, product_id) AS category_rank
    FROM product_counts
)
SELECT category, category_rank, product_id, purchases, views
FROM ranked
WHERE category_rank <= 10
ORDER BY category, category_rank
