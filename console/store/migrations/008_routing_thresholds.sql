-- 008: difficulty thresholds fitted by `fleetdeck routing calibrate` on judged traffic.

-- One row per calibration; the gateway's router reads the newest row of each route when it
-- starts (queries/routing_thresholds.sql). A call whose difficulty score is above
-- `threshold` goes to the route's large tier first.
CREATE TABLE routing_thresholds (
    fitted_at             TIMESTAMP NOT NULL,
    route                 VARCHAR NOT NULL,   -- the route's intent
    small_tier            VARCHAR NOT NULL,   -- traces.tier of the cheap tier
    large_tier            VARCHAR NOT NULL,
    target_large_share    DOUBLE NOT NULL,    -- what was asked for (0-1)
    threshold             DOUBLE NOT NULL,    -- on the difficulty score (0-1)
    predicted_large_share DOUBLE NOT NULL,    -- share of the route's calls above the threshold
    predicted_quality     DOUBLE,             -- predicted share of correct answers
    predicted_cost_usd    DOUBLE,             -- over the calls calibrated on
    calls                 INTEGER NOT NULL,   -- served calls the share is measured on
    judged_calls          INTEGER NOT NULL,   -- of them, judged (the fit's training data)
    model                 JSON NOT NULL,      -- {features, weights, bias, mean, scale}
    report                JSON,               -- the cost and quality table, as printed
    actor                 VARCHAR             -- who ran it
);
