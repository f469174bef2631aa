"""The gateway's wire contract: pydantic models of what each HTTP operation takes and answers.

The handlers validate request bodies with these models (`check.Checked`), and the OpenAPI
document (console/gateway/openapi.py) is generated from the same models, so the two cannot
drift: `openai` (Chat Completions, Completions, Embeddings, Responses), `anthropic` (Messages,
count_tokens), `fleetdeck` (outcomes, models, healthz, the admin API), `check` (a model as a
check that answers OpenAI's 400 with the field it is about).
"""
