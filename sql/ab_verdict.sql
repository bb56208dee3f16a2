-- ab_verdict: the A/B test's verdict, Challenger against Champion, per metric (issue 14), for both dashboards.
-- Reads attribution_daily's rows: sql.library.ab_verdict_query(window, alpha) puts sql/attribution_daily.sql
-- (with the configured attribution window) in front as a CTE of that name; that is what the stacks deploy and the
-- local run runs. Impressions, clicks and purchases are summed over every day, model version, strategy and position
-- of each production variant; AllTraffic rows (no test running) are not part of it.
-- Metrics: CTR = clicks / impressions, purchase rate = purchases / impressions (labels as monitoring/ab_test.py's
-- OUTCOMES). difference = challenger rate - champion rate; standard_error its Wald (unpooled) standard error;
-- ci_low, ci_high the (1 - alpha) interval difference -/+ z_critical x standard_error; z the pooled two-proportion
-- statistic (0 when the pooled rate is 0 or 1); significant when |z| > z_critical. z_critical is the standard normal
-- quantile at 1 - alpha / 2: the one params line below holds alpha and its z (0.05 as written), which
-- sql.library.ab_verdict_sql sets from settings experiment_alpha (z computed in Python by sql/stats.py: the two
-- engines share no normal quantile function).
-- No row when either variant has no impression (no A/B test in the rows). The same statistics as
-- monitoring.ab_test.Verdict (a test keeps them equal); its p-value is not here (no erfc in both engines).
-- Output columns: metric, champion_impressions, champion_outcomes, champion_rate, challenger_impressions,
--         challenger_outcomes, challenger_rate, difference, standard_error, ci_low, ci_high, z, z_critical, alpha,
--         significant, verdict ('Challenger better', 'Champion better' or 'no significant difference').
WITH params AS (
    SELECT CAST(0.05 AS DOUBLE) AS alpha, CAST(1.959963984540054 AS DOUBLE) AS z_critical
),
arms AS (
    SELECT
        CAST(SUM(CASE WHEN variant = 'Champion' THEN impressions ELSE 0 END) AS BIGINT) AS a_n,
        CAST(SUM(CASE WHEN variant = 'Champion' THEN clicks ELSE 0 END) AS BIGINT) AS a_clicks,
        CAST(SUM(CASE WHEN variant = 'Champion' THEN purchases ELSE 0 END) AS BIGINT) AS a_purchases,
        CAST(SUM(CASE WHEN variant = 'Challenger' THEN impressions ELSE 0 END) AS BIGINT) AS b_n,
        CAST(SUM(CASE WHEN variant = 'Challenger' THEN clicks ELSE 0 END) AS BIGINT) AS b_clicks,
        CAST(SUM(CASE WHEN variant = 'Challenger' THEN purchases ELSE 0 END) AS BIGINT) AS b_purchases
    FROM attribution_daily
),
outcomes AS (
    SELECT 1 AS metric_order, 'CTR' AS metric, a_n, a_clicks AS a_x, b_n, b_clicks AS b_x FROM arms
    UNION ALL
    SELECT 2 AS metric_order, 'purchase rate' AS metric, a_n, a_purchases AS a_x, b_n, b_purchases AS b_x FROM arms
),
rates AS (
    SELECT
        metric_order,
        metric,
        a_n,
        a_x,
        b_n,
        b_x,
        CAST(a_x AS DOUBLE) / a_n AS a_rate,
        CAST(b_x AS DOUBLE) / b_n AS b_rate,
        CAST(a_x + b_x AS DOUBLE) / (a_n + b_n) AS pooled
    FROM outcomes
    WHERE a_n > 0 AND b_n > 0
),
tested AS (
    SELECT
        r.*,
        r.b_rate - r.a_rate AS difference,
        sqrt(r.a_rate * (1 - r.a_rate) / CAST(r.a_n AS DOUBLE) + r.b_rate * (1 - r.b_rate) / CAST(r.b_n AS DOUBLE))
            AS standard_error,
        sqrt(r.pooled * (1 - r.pooled) * (CAST(1 AS DOUBLE) / r.a_n + CAST(1 AS DOUBLE) / r.b_n)) AS pooled_error
    FROM rates AS r
),
scored AS (
    SELECT
        t.*,
        CASE WHEN t.pooled_error > 0 THEN CAST(t.difference AS DOUBLE) / t.pooled_error ELSE CAST(0 AS DOUBLE) END AS z
    FROM tested AS t
)
SELECT
    s.metric,
    s.a_n AS champion_impressions,
    s.a_x AS champion_outcomes,
    s.a_rate AS champion_rate,
    s.b_n AS challenger_impressions,
    s.b_x AS challenger_outcomes,
    s.b_rate AS challenger_rate,
    s.difference,
    s.standard_error,
    s.difference - p.z_critical * s.standard_error AS ci_low,
    s.difference + p.z_critical * s.standard_error AS ci_high,
    s.z,
    p.z_critical,
    p.alpha,
    abs(s.z) > p.z_critical AS significant,
    CASE
        WHEN abs(s.z) <= p.z_critical THEN 'no significant difference'
        WHEN s.difference > 0 THEN 'Challenger better'
        ELSE 'Champion better'
    END AS verdict
FROM scored AS s
CROSS JOIN params AS p
ORDER BY s.metric_order
