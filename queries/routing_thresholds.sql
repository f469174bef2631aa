-- routing_thresholds: The newest calibrated difficulty threshold of each route.
-- One row per route: the latest `fleetdeck routing calibrate` result, with the fitted
-- difficulty model (JSON). The gateway reads it at start.
-- users: gateway router, fleetdeck query --name routing_thresholds
SELECT
    route,
    threshold,
    target_large_share,
    predicted_large_share,
    predicted_quality,
    predicted_cost_usd,
    small_tier,
    large_tier,
    calls,
    judged_calls,
    model,
    fitted_at,
    actor
FROM routing_thresholds
QUALIFY row_number() OVER (PARTITION BY route ORDER BY fitted_at DESC) = 1
ORDER BY route
