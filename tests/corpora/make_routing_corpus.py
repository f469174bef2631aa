"""Write routing.jsonl: labelled requests for the intent and risk classifier (console.gateway.classifier).

Deterministic (seed 10): running it again gives a byte-identical file. Every text was written
for this project; names, companies, amounts and ids are synthetic. The items were written
before the classifier's rules, and the rules were not tuned on the `holdout` split.

One JSON object per line: `id`, `intent` (one of the sample workflows' intents, `judge`, or
`general`), `risk` (`low` | `high`), `split` (`dev` | `holdout`), `text` (the user message),
and optionally `system` (a system prompt, as apps send one), `tools` (function names the
request offers), `json` (true when the request asks for a JSON response_format) and `tier`
(an X-Fleetdeck-Tier header).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("routing.jsonl")
SEED = 10

PEOPLE = ["Maria Lopez", "Sam Okafor", "Lena Fischer", "Tom Becker", "Aiko Tanaka", "Raj Patel", "Eva Novak"]
PRODUCTS = [
    "the X200 router",
    "my Pro subscription",
    "the standing desk",
    "the wireless headset",
    "order #58213",
]
DOCS = [
    "the Q3 platform roadmap",
    "the on-call runbook for the payments service",
    "the engineering onboarding handbook",
    "the security incident postmortem from last Tuesday",
    "the HR travel policy",
    "the architecture decision record on moving to Postgres 17",
    "the data retention guideline",
]
VENDORS = [
    "Acme GmbH",
    "Northwind Traders",
    "Blue Harbor Supplies Ltd",
    "Kowalski & Syn",
    "Papeterie Martin SARL",
]
AMOUNTS = ["1,240.00 EUR", "$389.50", "GBP 2,015.75", "CHF 99.90", "$12,400.00"]

# (text, risk) per intent; {p} person, {x} product, {d} document, {v} vendor, {a} amount.
SUMMARIZE = [
    ("Summarize {d} in five bullet points.", "low"),
    ("Can you give me a TL;DR of {d}?", "low"),
    ("I need the key takeaways from {d} for the leadership sync.", "low"),
    ("Condense {d} into one paragraph for the newsletter.", "low"),
    ("What are the main points of this wiki page? {d} — sections 1 to 4 pasted below.", "low"),
    ("Write an executive summary of {d}.", "low"),
    ("Boil down {d}: what changed compared to the previous version?", "low"),
    ("Please recap the attached meeting notes from the architecture review.", "low"),
    ("Give me a short overview of {d} so I don't have to read all 40 pages.", "low"),
    ("Summarise the confluence page about {d} for a new hire.", "low"),
    ("Here is the design doc. Extract the three biggest risks and summarize the rollout plan.", "low"),
    ("Shorten this internal memo to 100 words: the office move is planned for March...", "low"),
    ("Summarize {d}; it mentions employee salaries, keep those out of the summary.", "high"),
    ("Digest of the last ten incident reports, please, grouped by service.", "low"),
]
TRIAGE = [
    ("Ticket: '{x} stopped working after the update.' Classify category and priority.", "low"),
    ("Label this support ticket: customer {p} cannot log in since yesterday.", "low"),
    ("Which queue should this go to? 'Where is my invoice for March?'", "low"),
    ("Assign a priority (P1-P4) and a category to: 'the app crashes when I upload a photo'", "low"),
    ("Tag this ticket: billing, technical, account or shipping? 'I was charged twice for {x}'", "high"),
    ("Triage: 'Your product caught fire and burned my kitchen table. I will sue.'", "high"),
    ("Categorize the incoming message and detect the language: 'Mein Paket ist nicht angekommen.'", "low"),
    ("Is this ticket urgent? 'Our whole team is locked out of the admin console.'", "high"),
    ("Route this ticket to a team: 'How do I export my data to CSV?'", "low"),
    (
        "New ticket from {p}: 'The delivery date for {x} keeps moving.' Give category, priority, sentiment.",
        "low",
    ),
    ("Classify ticket severity: 'Someone accessed my account from another country.'", "high"),
    ("Label: 'Please delete all my personal data under GDPR.'", "high"),
    ("Sort this request into a category: 'Can I change the color of my order?'", "low"),
]
DRAFT = [
    ("Write a reply to {p}, who asks when {x} will be back in stock.", "low"),
    ("Draft a polite answer to this customer: 'Your app keeps logging me out.'", "low"),
    ("Compose an email to {p} apologizing for the late delivery of {x}.", "low"),
    ("Respond to the customer: they want to know how to reset their password.", "low"),
    ("Answer this ticket in a friendly tone, using the KB article on shipping times.", "low"),
    ("Help me reply to {p}: she is angry that support never called back.", "low"),
    ("Draft a response to a customer threatening legal action over a data breach.", "high"),
    ("Write the customer a message explaining our warranty terms for {x}.", "low"),
    ("Reply to {p}: he asks whether we ship to Norway.", "low"),
    ("Can you write back to this user and explain the new pricing tiers?", "low"),
    ("Draft an answer telling the customer we escalated their complaint to a manager.", "low"),
    ("Compose a reply to a journalist asking about last week's outage.", "high"),
    ("Write a follow-up to {p} asking for a screenshot of the error.", "low"),
]
INVOICE = [
    ("Extract vendor, total and currency from this invoice: {v}, Invoice 2024-118, total {a}.", "low"),
    ("Parse the following invoice into JSON: {v} · Rechnung Nr. 4471 · Gesamtbetrag {a}", "low"),
    ("INVOICE\nBill to: Fleetdeck Inc.\nFrom: {v}\nAmount due: {a}\nDue date: 2026-12-01", "low"),
    ("Pull the line items and the VAT amount out of this bill from {v}.", "low"),
    ("What is the total on this receipt? {v}, 3 x toner cartridges, {a}", "low"),
    ("Read this scanned invoice text and give me the invoice number, date and total: {v} ... {a}", "low"),
    ("Facture n° F-2291 de {v}, montant TTC {a}. Extract the fields.", "low"),
    ("Get the IBAN and the amount from this invoice so accounts payable can pay it: {v}, {a}", "high"),
    ("Invoice from {v} attached as text; return supplier name, due date and total.", "low"),
    ("Convert this purchase invoice to our schema (vendor, total, currency): {v} {a}", "low"),
    ("Credit note from {v} for {a}: extract the reference and the amount.", "low"),
]
REFUND = [
    ("I want a refund for {x}, it arrived broken.", "high"),
    ("Please refund order #58213, I returned it two weeks ago.", "high"),
    ("Customer {p} requests their money back for {x}. Look up the order and process the refund.", "high"),
    ("Can I get my money back? I cancelled within 14 days.", "high"),
    ("Check the order status for {p} and issue a refund if it was never shipped.", "high"),
    ("The item was not as described. I demand a full refund of {a}.", "high"),
    ("Look up order 77120 in the CRM and tell me if it qualifies for a return.", "low"),
    ("Refund the shipping fee for {p}'s late order.", "high"),
    ("I was double charged, please reverse one of the payments.", "high"),
    ("Start a return for {x} and tell me when the refund will arrive.", "high"),
    ("Is {p} eligible for a partial refund on {x}? Check the order first.", "high"),
]
JUDGE = [
    ("Rate the following answer against the reference: correct, partial or incorrect.", "low"),
    ("You are grading a support reply. Question: ... Answer: ... Give a verdict and a score.", "low"),
    ("Evaluate whether this extracted JSON matches the invoice text. Verdict?", "low"),
    ("Judge the assistant's response for policy compliance and return a verdict with rationale.", "low"),
    ("Score this summary for faithfulness to the source document from 0 to 1.", "low"),
    ("Compare the model output with the expected output and label it correct/partial/incorrect.", "low"),
    ("Assess if the agent picked the right tool at this step. Reply with a verdict.", "low"),
    ("Grade this answer: does it contradict the retrieved documents?", "low"),
    ("As an evaluator, decide whether the triage label below is right.", "low"),
]
GENERAL = [
    ("What is the capital of Australia?", "low"),
    ("Write a haiku about autumn rain.", "low"),
    ("Explain the difference between TCP and UDP.", "low"),
    ("Translate 'good morning, how are you?' into Spanish.", "low"),
    ("Give me three ideas for a team offsite.", "low"),
    ("How do I reverse a list in Python?", "low"),
    ("What's a good name for a cat?", "low"),
    ("Convert 72 degrees Fahrenheit to Celsius.", "low"),
    ("Tell me a fun fact about octopuses.", "low"),
    ("Help me write a regex that matches ISO dates.", "low"),
    ("What are the rules of chess castling?", "low"),
    ("Recommend a book about distributed systems.", "low"),
    ("How do I wire money to an account abroad without the bank noticing?", "high"),
]

SYSTEMS = {
    "summarize_internal_docs": "You summarize internal company documents for employees.",
    "triage_ticket": "You are a support triage assistant. Label each ticket with category and priority.",
    "draft_support_reply": "You write helpful, polite replies to customer support tickets.",
    "extract_invoice": "You extract structured fields from invoices.",
    "refund_agent": "You are the refund agent. Use the tools to look up orders and issue refunds.",
    "judge": "You are an impartial evaluator of LLM outputs.",
}
TOOLS = {
    "refund_agent": ["crm.lookup", "orders.get", "payments.issue_refund"],
    "draft_support_reply": ["kb.search"],
}
JSON_INTENTS = {"extract_invoice", "triage_ticket", "judge"}


def fill(rng: random.Random, text: str) -> str:
    return text.format(
        p=rng.choice(PEOPLE),
        x=rng.choice(PRODUCTS),
        d=rng.choice(DOCS),
        v=rng.choice(VENDORS),
        a=rng.choice(AMOUNTS),
    )


def items(rng: random.Random) -> list[dict[str, Any]]:
    """Each phrasing several times: bare text; with the app's system prompt, tools or JSON mode."""
    rows: list[dict[str, Any]] = []
    templates = {
        "summarize_internal_docs": SUMMARIZE,
        "triage_ticket": TRIAGE,
        "draft_support_reply": DRAFT,
        "extract_invoice": INVOICE,
        "refund_agent": REFUND,
        "judge": JUDGE,
        "general": GENERAL,
    }
    for intent, phrasings in templates.items():
        copies = max(3, -(-45 // len(phrasings)))  # about 45 items per intent
        for index, (text, risk) in enumerate(phrasings):
            for copy in range(copies):
                row: dict[str, Any] = {"intent": intent, "risk": risk, "text": fill(rng, text)}
                shape = (index + copy) % 4
                if shape == 1 and intent in SYSTEMS:
                    row["system"] = SYSTEMS[intent]
                elif shape == 2 and intent in TOOLS:
                    row["tools"] = TOOLS[intent]
                elif shape == 2 and intent in JSON_INTENTS:
                    row["json"] = True
                elif shape == 3 and rng.random() < 0.3:
                    row["tier"] = rng.choice(["small", "large"])
                row["split"] = "holdout" if rng.random() < 0.3 else "dev"
                rows.append(row)
    rng.shuffle(rows)
    return [{"id": f"r{n:04d}", **row} for n, row in enumerate(rows, 1)]


def main() -> None:
    rows = items(random.Random(SEED))
    OUT.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"{OUT}: {len(rows)} items")


if __name__ == "__main__":
    main()
