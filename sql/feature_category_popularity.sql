-- feature_category_popularity: product popularity within each category (CTAS feature table).
--
-- Why: the cold-start fallback ("popular in Sarees") for unknown users or a requested category.
-- Events are weighted by intent: view = 1, add_to_cart = 3, purchase = 5; rating events carry no
-- weight here (they follow a purchase that already counts).
-- Only products present in the catalogue (inner join: a category is needed to rank within).
--
-- Output columns: category, product_id, views, carts, purchases, popularity_score (BIGINT),
--   popularity_rank (1 = most popular in the category; ties broken by product_id)
-- Parameters: none (weights are constants below).
WITH scored AS (
    SELECT
        p.category,
        i.product_id,
        count_if(i.event_type = 'view') AS views,
        count_if(i.event_type = 'add_to_cart') AS carts,
        count_if(i.event_type = 'purchase') AS purchases,
        sum(
            CASE i.event_type
                WHEN 'view' THEN 1
                WHEN 'add_to_cart' THEN 3
                WHEN 'purchase' THEN 5
                ELSE 0
            END
        ) AS popularity_score
    FROM interactions AS i
    JOIN products AS p ON p.product_id = i.product_id
    WHERE i.event_type IN ('view', 'add_to_cart', 'purchase')
    GROUP BY p.category, i.product_id
)
SELECT
    category,
    product_id,
    views,
    carts,
    purchases,
    CAST(popularity_score AS BIGINT) AS popularity_score,
    row_number() OVER (PARTITION BY category ORDER BY popularity_score DESC, product_id) AS popularity_rank
FROM scored
