-- cache_shadow: What a cache in shadow mode would have served, per route and similarity threshold, before it is switched on.
-- Rows come from traces with cache_shadow set (routes with `cache: shadow`): each such
-- lookup recorded its nearest entry (cache_entry) and cosine (cache_similarity; 1 for an
-- exact match). A lookup would hit at threshold T when it matched exactly or its
-- similarity is >= T. hit_rate = would_hit / lookups; saved_usd = cost_usd of the calls
-- that would have been served from the cache. examples: the would-be hits closest to the
-- threshold (the riskiest), with the question asked, the answer the cache would have served
-- (the entry's) and the answer the model gave, from the redacted payloads.
-- param from: TIMESTAMP = `to` - 30 days | start of the window, inclusive (UTC)
-- param to: TIMESTAMP = now | end of the window, exclusive (UTC)
-- param route: VARCHAR = all | only this route
-- param examples: INTEGER = 3 | example answers per route and threshold
-- users: fleetdeck query --name cache_shadow, operators choosing cache_threshold
WITH bounds AS (
    SELECT
        coalesce($to::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP) AS window_end,
        coalesce($from::TIMESTAMP, window_end - INTERVAL 30 DAY) AS window_start
),

lookups AS (
    SELECT
        traces.request_id,
        traces.route,
        traces.cache_shadow,
        traces.cache_entry,
        traces.cost_usd,
        CASE WHEN traces.cache_shadow = 'exact' THEN 1.0 ELSE traces.cache_similarity END AS similarity
    FROM traces
    CROSS JOIN bounds
    WHERE traces.cache_shadow IS NOT NULL
      AND traces.ts_start >= bounds.window_start
      AND traces.ts_start < bounds.window_end
      AND ($route::VARCHAR IS NULL OR traces.route = $route::VARCHAR)
),

thresholds AS (
    SELECT unnest([0.75, 0.80, 0.85, 0.90, 0.92, 0.95, 0.98]::DOUBLE[]) AS threshold
),

graded AS (
    SELECT
        lookups.*,
        thresholds.threshold,
        coalesce(lookups.similarity >= thresholds.threshold, FALSE) AS would_hit
    FROM lookups
    CROSS JOIN thresholds
),

answers AS (
    SELECT
        graded.route,
        graded.threshold,
        graded.similarity,
        json_extract_string(asked.request, '$.messages[#-1].content') AS question,
        json_extract_string(entry.request, '$.messages[#-1].content') AS cached_question,
        json_extract_string(entry.response, '$.choices[0].message.content') AS would_serve,
        json_extract_string(asked.response, '$.choices[0].message.content') AS model_answer
    FROM graded
    LEFT JOIN payloads AS asked ON asked.payload_ref = graded.request_id
    LEFT JOIN payloads AS entry ON entry.payload_ref = graded.cache_entry
    WHERE graded.would_hit
),

examples AS (
    SELECT
        route,
        threshold,
        list(
            {
                'similarity': similarity,
                'question': question,
                'cached_question': cached_question,
                'would_serve': would_serve,
                'model_answer': model_answer
            }
            ORDER BY similarity, question
        )[1:coalesce($examples::INTEGER, 3)] AS examples
    FROM answers
    GROUP BY route, threshold
)

SELECT
    graded.route,
    graded.threshold,
    count(*) AS lookups,
    count(*) FILTER (WHERE graded.would_hit) AS would_hit,
    count(*) FILTER (WHERE graded.would_hit AND graded.cache_shadow = 'exact') AS exact_hits,
    count(*) FILTER (WHERE graded.would_hit) / count(*) AS hit_rate,
    avg(graded.similarity) FILTER (WHERE graded.would_hit) AS mean_similarity,
    min(graded.similarity) FILTER (WHERE graded.would_hit) AS min_similarity,
    coalesce(sum(graded.cost_usd) FILTER (WHERE graded.would_hit), 0) AS saved_usd,
    any_value(examples.examples) AS examples
FROM graded
LEFT JOIN examples ON examples.route IS NOT DISTINCT FROM graded.route AND examples.threshold = graded.threshold
GROUP BY graded.route, graded.threshold
ORDER BY graded.route NULLS LAST, graded.threshold
