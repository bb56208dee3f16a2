-- attribution_daily: clicks, carts, purchases and revenue attributed to what the endpoint served (issue 14).
-- Impressions: every product of every captured single answer (SageMaker data capture JSONL under capture/,
-- table endpoint_capture: the response text in capturedata.endpointoutput.data), with its 1-based position,
-- strategy, model version, recommendation_id and serving time (eventmetadata.inferencetime, UTC), and the
-- production variant that answered: SageMaker writes each variant's capture under
-- capture/<endpoint>/<variant>/yyyy/mm/dd/hh/, read from the object's path ("$path"; AllTraffic outside an
-- A/B test, Champion and Challenger during one). A shadow variant's answers (variant Shadow) were never shown,
-- so they are not impressions.
-- Outcomes: curated clickstream events echoing that recommendation_id for that product within the attribution
-- window after serving (the INTERVAL below; sql.library.attribution_query sets it from settings
-- attribution_window_hours). A view of a shown product is a click. Revenue = quantity x unit price (the
-- catalogue price when the line has none) of attributed purchases. An impression counts once per outcome
-- however many events it had. Batch ("instances") answers are not impressions here.
-- Output columns: event_date, variant, model_version, strategy, position, impressions, clicks, carts, purchases, revenue,
--         click_through_rate, add_to_cart_rate, purchase_rate, purchases_per_click.
WITH captured AS (
    SELECT
        NULLIF(regexp_extract("$path", '/capture/[^/]+/([^/]+)/[0-9]{4}/[0-9]{2}/[0-9]{2}/[0-9]{2}/', 1), '') AS variant,
        capturedata,
        eventmetadata
    FROM endpoint_capture
),
served AS (
    SELECT
        variant,
        json_extract_scalar(capturedata.endpointoutput.data, '$.recommendation_id') AS recommendation_id,
        json_extract_scalar(capturedata.endpointoutput.data, '$.model_version') AS model_version,
        json_extract_scalar(capturedata.endpointoutput.data, '$.strategy') AS strategy,
        CAST(json_extract(capturedata.endpointoutput.data, '$.recommendations') AS ARRAY(JSON)) AS items,
        CAST(substr(replace(eventmetadata.inferencetime, 'T', ' '), 1, 19) AS TIMESTAMP) AS served_at
    FROM captured
    WHERE capturedata.endpointoutput.data IS NOT NULL AND COALESCE(variant, '') <> 'Shadow'
),
impressions AS (
    SELECT
        s.recommendation_id,
        s.variant,
        s.model_version,
        s.strategy,
        s.served_at,
        CAST(t.position AS BIGINT) AS position,
        json_extract_scalar(t.item, '$.product_id') AS product_id
    FROM served AS s
    CROSS JOIN UNNEST(s.items) WITH ORDINALITY AS t (item, position)
    WHERE s.recommendation_id IS NOT NULL
),
outcomes AS (
    SELECT
        i.recommendation_id,
        i.position,
        MAX(CASE WHEN c.event_type = 'view' THEN 1 ELSE 0 END) AS clicked,
        MAX(CASE WHEN c.event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS carted,
        MAX(CASE WHEN c.event_type = 'purchase' THEN 1 ELSE 0 END) AS purchased,
        SUM(
            CASE
                WHEN c.event_type = 'purchase'
                    THEN COALESCE(c.quantity, 1.0) * COALESCE(c.unit_price, p.price, 0.0)
                ELSE 0.0
            END
        ) AS revenue
    FROM impressions AS i
    INNER JOIN clickstream AS c
        ON c.recommendation_id = i.recommendation_id
        AND c.product_id = i.product_id
        AND c.event_time >= i.served_at
        AND c.event_time <= i.served_at + INTERVAL '24' HOUR
    LEFT JOIN products AS p ON p.product_id = c.product_id
    GROUP BY i.recommendation_id, i.position
)
SELECT
    CAST(i.served_at AS DATE) AS event_date,
    i.variant,
    i.model_version,
    i.strategy,
    i.position,
    COUNT(*) AS impressions,
    SUM(COALESCE(o.clicked, 0)) AS clicks,
    SUM(COALESCE(o.carted, 0)) AS carts,
    SUM(COALESCE(o.purchased, 0)) AS purchases,
    SUM(COALESCE(o.revenue, 0.0)) AS revenue,
    CAST(SUM(COALESCE(o.clicked, 0)) AS DOUBLE) / COUNT(*) AS click_through_rate,
    CAST(SUM(COALESCE(o.carted, 0)) AS DOUBLE) / COUNT(*) AS add_to_cart_rate,
    CAST(SUM(COALESCE(o.purchased, 0)) AS DOUBLE) / COUNT(*) AS purchase_rate,
    CAST(SUM(COALESCE(o.purchased, 0)) AS DOUBLE) / NULLIF(SUM(COALESCE(o.clicked, 0)), 0) AS purchases_per_click
FROM impressions AS i
LEFT JOIN outcomes AS o ON o.recommendation_id = i.recommendation_id AND o.position = i.position
GROUP BY CAST(i.served_at AS DATE), i.variant, i.model_version, i.strategy, i.position
ORDER BY event_date, variant, model_version, strategy, position
