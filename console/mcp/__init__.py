"""The MCP gateway: `/mcp`, one Streamable HTTP endpoint in front of the policy's MCP servers.

Agents speak MCP to Fleetdeck; Fleetdeck speaks MCP to each server named in `mcp_servers:`
(a stdio command it supervises, or a Streamable HTTP server on loopback), with the official
`mcp` SDK on both sides. Every `tools/call` is a call with its own ordered steps
(console/mcp/pipeline.py): authenticate, read the context, police, find the tool, check the
arguments, screen them, wait for an approval, execute, screen the result, record.
"""
