-- mcp_tool_calls: Per MCP server and tool: calls through /mcp, refused ones, failed ones, cost.
-- One row per (server, tool) over the traces of tools/call (protocol 'mcp', operation
-- execute_tool) since $since. server is the trace's provider ('' when the call named no
-- known server), tool the name the caller used (server__tool). refused: status blocked
-- (policy, a human's denial, a guard); failed: status error. cost_usd sums the per-call price.
-- param since: TIMESTAMP = 30 days ago | start of the window (UTC)
-- users: fleet pane, fleetdeck mcp list
SELECT
    coalesce(provider, '') AS server,
    request_model AS tool,
    count(*) AS calls,
    count(*) FILTER (WHERE status = 'blocked') AS refused,
    count(*) FILTER (WHERE status = 'error') AS failed,
    coalesce(sum(cost_usd), 0) AS cost_usd,
    max(ts_start) AS last_call
FROM traces
WHERE protocol = 'mcp'
    AND operation = 'execute_tool'
    AND ts_start >= coalesce($since::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP - INTERVAL 30 DAY)
GROUP BY ALL
ORDER BY server, tool
