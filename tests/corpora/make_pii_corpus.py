# ruff: noqa: E501  (data tables: long literal strings are the corpus)
"""Builds tests/corpora/pii.jsonl: PII in prose, checksum-valid and checksum-invalid lookalikes.

Run: .venv/bin/python tests/corpora/make_pii_corpus.py
Deterministic (seeded). Check digits are computed here with independent implementations of
each algorithm (Luhn, ISO 7064 mod 97-10 and mod 11,10, the NIR key, the DNI/NIE letter, the
BSN 11-proof; the Italian codice fiscale check character comes from python-stdnum), and every
valid value is cross-checked against python-stdnum / phonenumbers / ipaddress before it is
written. Invalid lookalikes are valid values with one check digit broken (or, where a scheme
has no check digit, a rule broken), cross-checked to be invalid.

Every item: id, label (valid | invalid | none), kind, detail, value (the PII exactly as it
appears in text; empty for label none), text.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import string
from collections.abc import Callable
from pathlib import Path

import phonenumbers
from stdnum import iban as std_iban
from stdnum import luhn as std_luhn
from stdnum.de import idnr as std_idnr
from stdnum.es import dni as std_dni
from stdnum.es import nie as std_nie
from stdnum.fr import nir as std_nir
from stdnum.it import codicefiscale as std_cf
from stdnum.nl import bsn as std_bsn
from stdnum.us import ssn as std_ssn

OUT = Path(__file__).with_name("pii.jsonl")
rng = random.Random(424242)

FIRST = [
    "Anna",
    "Ben",
    "Chloé",
    "Dmitri",
    "Elif",
    "Femi",
    "Grace",
    "Hiro",
    "Inés",
    "Jonas",
    "Kofi",
    "Lena",
    "Marco",
    "Nadia",
    "Olu",
    "Priya",
    "Quentin",
    "Rosa",
    "Sven",
    "Tomasz",
    "Uma",
    "Victor",
    "Wen",
    "Yara",
]
LAST = [
    "Schmidt",
    "Okafor",
    "Dubois",
    "Rossi",
    "García",
    "Nakamura",
    "Kowalski",
    "Jansen",
    "Murphy",
    "Silva",
    "Novak",
    "Haddad",
    "Larsen",
    "Moreau",
    "Bianchi",
    "Fischer",
    "Patel",
    "O'Brien",
    "Yilmaz",
    "Costa",
]


def digits(n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def person() -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


# ---------------------------------------------------------------------------------------------
# check-digit algorithms (independent of the detector's validators)


def luhn_check_digit(payload: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def iban_check(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return f"{98 - int(numeric) % 97:02d}"


def mod_11_10_check(payload: str) -> str:
    product = 10
    for ch in payload:
        total = (int(ch) + product) % 10 or 10
        product = (total * 2) % 11
    return str((11 - product) % 10)


def nir_key(payload13: str) -> str:
    numeric = payload13.replace("2A", "19").replace("2B", "18")
    return f"{97 - int(numeric) % 97:02d}"


DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def bsn_checksum(number: str) -> int:
    return (sum((9 - i) * int(c) for i, c in enumerate(number[:-1])) - int(number[-1])) % 11


def other_char(ch: str, alphabet: str) -> str:
    return rng.choice([c for c in alphabet if c != ch])


# ---------------------------------------------------------------------------------------------
# generators: each returns (valid_value, invalid_value, detail)


def gen_card() -> tuple[str, str, str]:
    brand, prefix, length = rng.choice(
        [
            ("visa", "4", 16),
            ("visa", "4", 13),
            ("mastercard", str(rng.randint(51, 55)), 16),
            ("mastercard", str(rng.randint(2221, 2720)), 16),
            ("amex", rng.choice(["34", "37"]), 15),
            ("discover", "6011", 16),
            ("jcb", str(rng.randint(3528, 3589)), 16),
            ("unionpay", "62", 19),
            ("diners", "36", 14),
        ]
    )
    payload = prefix + digits(length - len(prefix) - 1)
    number = payload + luhn_check_digit(payload)
    bad = payload + other_char(number[-1], string.digits)
    assert std_luhn.is_valid(number) and not std_luhn.is_valid(bad)

    def fmt(n: str) -> str:
        style = rng.choice(["space", "dash", "none"])
        if style == "none":
            return n
        sep = " " if style == "space" else "-"
        groups = [4, 6, 5] if brand == "amex" else [4] * (len(n) // 4) + ([len(n) % 4] if len(n) % 4 else [])
        out, i = [], 0
        for g in groups:
            out.append(n[i : i + g])
            i += g
        return sep.join(out)

    state = rng.getstate()
    valid = fmt(number)
    rng.setstate(state)
    return valid, fmt(bad), brand


IBAN_FORMATS = {
    "DE": "n18",
    "GB": "a4n14",
    "NL": "a4n10",
    "FR": "n10c11n2",
    "ES": "n20",
    "IT": "a1n10c12",
    "BE": "n12",
    "CH": "n5c12",
    "AT": "n16",
    "PL": "n24",
    "IE": "a4n14",
    "PT": "n21",
}


def bban(structure: str) -> str:
    out = []
    i = 0
    while i < len(structure):
        kind = structure[i]
        j = i + 1
        while j < len(structure) and structure[j].isdigit():
            j += 1
        n = int(structure[i + 1 : j])
        alphabet = {
            "n": string.digits,
            "a": string.ascii_uppercase,
            "c": string.ascii_uppercase + string.digits,
        }[kind]
        out.append("".join(rng.choice(alphabet) for _ in range(n)))
        i = j
    return "".join(out)


def gen_iban() -> tuple[str, str, str]:
    country = rng.choice(sorted(IBAN_FORMATS))
    for _ in range(100000):
        b = bban(IBAN_FORMATS[country])
        number = country + iban_check(country, b) + b
        if std_iban.is_valid(number):  # some countries carry a national check as well
            break
    else:
        raise AssertionError(country)
    while True:
        pos = rng.randrange(4, len(number))
        if number[pos].isdigit():
            bad = number[:pos] + other_char(number[pos], string.digits) + number[pos + 1 :]
            if not std_iban.is_valid(bad):
                break
    grouped = rng.random() < 0.7

    def fmt(n: str) -> str:
        return " ".join(n[i : i + 4] for i in range(0, len(n), 4)) if grouped else n

    return fmt(number), fmt(bad), country


def gen_ssn() -> tuple[str, str, str]:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    number = f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    bad_area = rng.choice([0, 666, rng.randint(900, 999)])
    bad = f"{bad_area:03d}{number[3:]}"
    if rng.random() < 0.3:
        bad = f"{number[:4]}00{number[6:]}"
    assert std_ssn.is_valid(number) and not std_ssn.is_valid(bad), (number, bad)
    return number, bad, "us.ssn"


NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"
NINO_BAD = ["BG", "GB", "NK", "KN", "TN", "NT", "ZZ"]


def gen_nino() -> tuple[str, str, str]:
    while True:
        prefix = rng.choice(NINO_FIRST) + rng.choice(NINO_SECOND)
        if prefix not in NINO_BAD:
            break
    body = digits(6)
    suffix = rng.choice("ABCD")
    spaced = rng.random() < 0.6

    def fmt(p: str) -> str:
        return f"{p} {body[:2]} {body[2:4]} {body[4:]} {suffix}" if spaced else f"{p}{body}{suffix}"

    bad_prefix = rng.choice([*NINO_BAD, rng.choice("DFIQUV") + rng.choice(NINO_SECOND)])
    return fmt(prefix), fmt(bad_prefix), "gb.nino"


def gen_idnr() -> tuple[str, str, str]:
    while True:
        payload = str(rng.randint(1, 9)) + digits(9)
        counts = sorted((payload.count(d) for d in set(payload)), reverse=True)
        if counts[0] in (2, 3) and counts[1] == 1:  # one digit repeated twice or thrice
            number = payload + mod_11_10_check(payload)
            if std_idnr.is_valid(number):
                break
    bad = payload + other_char(number[-1], string.digits)
    assert not std_idnr.is_valid(bad)
    return (
        f"{number[:2]} {number[2:5]} {number[5:8]} {number[8:]}",
        f"{bad[:2]} {bad[2:5]} {bad[5:8]} {bad[8:]}",
        "de.idnr",
    )


def gen_nir() -> tuple[str, str, str]:
    dept = rng.choice([f"{d:02d}" for d in range(1, 96) if d != 20] + ["2A", "2B"])
    payload = f"{rng.choice('12')}{rng.randint(40, 99):02d}{rng.randint(1, 12):02d}{dept}{rng.randint(1, 990):03d}{rng.randint(1, 999):03d}"
    key = nir_key(payload)
    number = payload + key
    bad = payload + f"{(int(key) + rng.randint(1, 96)) % 97 or 1:02d}"
    assert std_nir.is_valid(number) and not std_nir.is_valid(bad), (number, bad)

    def fmt(n: str) -> str:
        return f"{n[0]} {n[1:3]} {n[3:5]} {n[5:7]} {n[7:10]} {n[10:13]} {n[13:]}" if rng.random() < 0.6 else n

    state = rng.getstate()
    valid = fmt(number)
    rng.setstate(state)
    return valid, fmt(bad), "fr.nir"


def gen_dni() -> tuple[str, str, str]:
    n = digits(8)
    letter = DNI_LETTERS[int(n) % 23]
    sep = rng.choice(["", "-"])
    valid, bad = f"{n}{sep}{letter}", f"{n}{sep}{other_char(letter, DNI_LETTERS)}"
    assert std_dni.is_valid(valid) and not std_dni.is_valid(bad)
    return valid, bad, "es.dni"


def gen_nie() -> tuple[str, str, str]:
    first = rng.choice("XYZ")
    n = digits(7)
    letter = DNI_LETTERS[int(str("XYZ".index(first)) + n) % 23]
    valid, bad = f"{first}{n}{letter}", f"{first}{n}{other_char(letter, DNI_LETTERS)}"
    assert std_nie.is_valid(valid) and not std_nie.is_valid(bad)
    return valid, bad, "es.nie"


def gen_cf() -> tuple[str, str, str]:
    consonants = "BCDFGHJKLMNPQRSTVZ"
    payload = (
        "".join(rng.choice(consonants) for _ in range(6))
        + f"{rng.randint(40, 99):02d}"
        + rng.choice("ABCDEHLMPRST")
        + f"{rng.choice([rng.randint(1, 28), rng.randint(41, 68)]):02d}"
        + rng.choice("ABCDEFGHILMZ")
        + f"{rng.randint(1, 999):03d}"
    )
    check = std_cf.calc_check_digit(payload)
    valid, bad = payload + check, payload + other_char(check, string.ascii_uppercase)
    assert std_cf.is_valid(valid) and not std_cf.is_valid(bad)
    return valid, bad, "it.codicefiscale"


def gen_bsn() -> tuple[str, str, str]:
    while True:
        n = str(rng.randint(1, 9)) + digits(8)
        if bsn_checksum(n) == 0:
            break
    while True:
        bad = n[:-1] + other_char(n[-1], string.digits)
        if bsn_checksum(bad) != 0:
            break
    assert std_bsn.is_valid(n) and not std_bsn.is_valid(bad)
    return n, bad, "nl.bsn"


def gen_email() -> tuple[str, str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice(
        [f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{rng.randint(1, 99)}", f"{first}+news"]
    )
    local = local.lower().replace("é", "e").replace("í", "i").replace("'", "")
    domain = rng.choice(
        [
            "example.com",
            "mail.example.org",
            "acme.co.uk",
            "firma.de",
            "societe.fr",
            "uni-bonn.de",
            "startup.io",
        ]
    )
    valid = f"{local}@{domain}"
    bad = rng.choice(
        [f"{local}@", f"@{domain}", f"{local}@{domain.split('.')[0]}", f"{local} at {domain.split('.')[0]}"]
    )
    return valid, bad, "email"


PHONE_REGIONS_NATIONAL = ["US", "GB", "DE", "FR"]
PHONE_REGIONS_INTL = ["ES", "IT", "NL", "CH", "JP", "IN", "BR", "AU", "SE", "PL", "ZA", "MX"]


def random_valid_number(region: str) -> phonenumbers.PhoneNumber:
    kinds = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
    example = phonenumbers.example_number_for_type(region, rng.choice(kinds)) or phonenumbers.example_number(
        region
    )
    assert example is not None
    national = phonenumbers.national_significant_number(example)
    for _ in range(1000):
        keep = max(2, len(national) - 4)
        candidate = national[:keep] + digits(len(national) - keep)
        number = phonenumbers.parse("+" + str(example.country_code) + candidate, None)
        if phonenumbers.is_valid_number(number):
            return number
    raise AssertionError(region)


def gen_phone() -> tuple[str, str, str]:
    if rng.random() < 0.6:
        region = rng.choice(PHONE_REGIONS_NATIONAL)
        number = random_valid_number(region)
        fmt = rng.choice(
            [phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL]
        )
    else:
        region = rng.choice(PHONE_REGIONS_INTL)
        number = random_valid_number(region)
        fmt = phonenumbers.PhoneNumberFormat.INTERNATIONAL
    valid = phonenumbers.format_number(number, fmt)
    if rng.random() < 0.15 and fmt == phonenumbers.PhoneNumberFormat.INTERNATIONAL:
        valid = "00" + valid[1:]
    # invalid: cut short or with a changed leading digit, written internationally; cross-checked.
    national = phonenumbers.national_significant_number(number)
    for _ in range(1000):
        if rng.random() < 0.5:
            candidate = national[: -rng.randint(2, 4)]
        else:
            candidate = rng.choice("0123456789") + national[1:]
        bad = "+" + str(number.country_code) + " " + candidate
        parsed = phonenumbers.parse(bad, None)
        if not phonenumbers.is_valid_number(parsed) and len(candidate) >= 5:
            break
    else:
        raise AssertionError(valid)
    return valid, bad, region


def gen_ipv4() -> tuple[str, str, str]:
    while True:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global:
            break
    parts = str(address).split(".")
    parts[rng.randrange(4)] = str(rng.randint(256, 999))
    return str(address), ".".join(parts), "ipv4"


def gen_ipv6() -> tuple[str, str, str]:
    address = ipaddress.IPv6Address((0x2001 << 112) | (0x0DB8 << 96) | rng.getrandbits(64))
    valid = address.compressed if rng.random() < 0.5 else address.exploded
    bad = valid.replace(valid.split(":")[-1], "g" + valid.split(":")[-1][1:]) if ":" in valid else valid
    return valid, bad, "ipv6"


def rand_token(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    while True:
        token = "".join(rng.choice(alphabet) for _ in range(n))
        if any(c.isdigit() for c in token) and any(c.isupper() for c in token):
            return token


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def gen_secret() -> tuple[str, str, str]:
    kind = rng.choice(
        ["openai", "aws", "github", "slack", "jwt", "assignment", "password", "stripe", "google"]
    )
    if kind == "openai":
        return "sk-proj-" + rand_token(48), "sk-" + rand_token(8), "openai_key"
    if kind == "aws":
        return (
            "AKIA" + rand_token(16, string.ascii_uppercase + string.digits),
            "AKIA" + rand_token(9, string.ascii_uppercase + string.digits),
            "aws_access_key",
        )
    if kind == "github":
        return "ghp_" + rand_token(36), "ghp_" + rand_token(10), "github_token"
    if kind == "slack":
        return f"xoxb-{digits(11)}-{digits(12)}-{rand_token(24)}", "xoxb-", "slack_token"
    if kind == "stripe":
        return "sk_live_" + rand_token(24), "sk_live_", "stripe_key"
    if kind == "google":
        return (
            "AIza" + rand_token(35, string.ascii_letters + string.digits + "-_"),
            "AIza" + rand_token(10),
            "google_api_key",
        )
    if kind == "jwt":
        header = b64url(b'{"alg":"HS256","typ":"JWT"}')
        payload = b64url(json.dumps({"sub": digits(8), "name": person(), "iat": 1700000000}).encode())
        return f"{header}.{payload}.{b64url(rng.randbytes(32))}", f"{header}.notapayload", "jwt"
    if kind == "assignment":
        return rand_token(32), "YOUR_API_KEY_HERE", "assigned_secret"
    return rand_token(6) + "!" + rand_token(5), "********", "password"


def gen_pem() -> tuple[str, str, str]:
    body = base64.b64encode(rng.randbytes(300)).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    label = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    dashes = "-" * 5
    valid = f"{dashes}BEGIN {label}{dashes}\n{lines}\n{dashes}END {label}{dashes}"
    bad = f"{dashes}BEGIN PUBLIC KEY{dashes}\n{lines[:128]}\n{dashes}END PUBLIC KEY{dashes}"
    return valid, bad, "private_key"


# ---------------------------------------------------------------------------------------------
# prose

TEMPLATES: dict[str, list[str]] = {
    "card": [
        "Hi, I'm {p}. Please charge my card {v} for the annual plan.",
        "The customer read out the card number {v} over the phone, expiry 09/28.",
        "Refund to {v} failed twice, can you check what's wrong?",
        "Kartennummer: {v}, bitte belasten Sie den Betrag von 49,90 €.",
        "my cc is {v} exp 11/27 cvv on the back",
    ],
    "iban": [
        "Please wire the deposit to IBAN {v} (account holder {p}).",
        "Bitte überweisen Sie den Betrag auf {v}, Verwendungszweck Rechnung 2024-118.",
        "Veuillez effectuer le virement sur le compte {v} avant vendredi.",
        "New payout account for {p}: {v}. The old one is closed.",
    ],
    "national_id": [
        "Employee record: {p}, ID {v}, start date 2023-04-01.",
        "For the tax form I need to confirm my number {v}, is that the right format?",
        "The applicant ({p}) listed {v} as their identification number.",
        "Customer {p} — verified document number {v} at the counter.",
    ],
    "us.ssn": ["My SSN is {v}, please update the W-4.", "Social security number: {v} ({p})."],
    "gb.nino": ["My National Insurance number is {v}.", "NI number {v} for payroll, employee {p}."],
    "de.idnr": ["Meine Steuer-ID lautet {v}.", "Steuerliche Identifikationsnummer von {p}: {v}"],
    "nl.bsn": ["Mijn BSN is {v}, kunt u dat controleren?", "BSN van {p}: {v}"],
    "email": [
        "You can reach me at {v} any time after 5pm.",
        "Please cc {v} on the contract thread.",
        "Kontakt: {p} <{v}>",
        "Send the invoice to {v}, thanks!",
        "user {v} reported the bug in build 4.2.1",
    ],
    "phone": [
        "Call me on {v} if the delivery is late.",
        "You can reach {p} at {v} during office hours.",
        "Tel.: {v} (Mo–Fr 9–17 Uhr)",
        "My mobile is {v}, text me when you arrive.",
        "Rappelez-moi au {v}, merci.",
        "{p} | Sales | {v}",
    ],
    "ip": [
        "The failed logins all came from {v} last night.",
        "Please whitelist {v} on the firewall for {p}.",
        "Client IP {v} hit the rate limit 40 times.",
    ],
    "secret": [
        "Here's my key, can you tell me why it fails: {v}",
        "export OPENAI_API_KEY={v}",
        'config: token = "{v}"',
        "I accidentally pasted {v} in the public channel, how do I rotate it?",
    ],
    "assignment": ['api_key = "{v}"', "client_secret: {v}", '"access_token": "{v}"'],
    "password": ["password: {v}", "DB_PASSWORD={v}", "login with user admin, pwd={v}"],
    "private_key": ["Can you check this key file?\n{v}\nIt says invalid format.", "deploy key:\n{v}"],
}

NONE_TEXTS = [
    "Order #100234 shipped on 2024-03-15 and should arrive by 03/18/2024.",
    "Invoice total: €1,234.56, due in 30 days; the reference is INV-2024-00981.",
    "We upgraded from Python 3.11.4 to 3.12.1 and numpy 1.26.4.",
    "ISBN 978-3-16-148410-0 is the second edition.",
    "The tracking number is 1Z999AA10123456784.",
    "Meeting moved to 14:30 in room 1204, building 3.",
    "Flight LH 2034 departs 07:45 from gate B22.",
    "Postcode 10115 Berlin, Germany.",
    "Unix timestamp 1717171717 corresponds to May 2024.",
    "UUID 123e4567-e89b-12d3-a456-426614174000 identifies the job.",
    "Commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b fixed the regression.",
    "pi is roughly 3.14159265358979 and e is 2.71828182845904.",
    "Coordinates: 52.5200, 13.4050 (Berlin Mitte).",
    "The sprint has 21 story points across 8 tickets; velocity was 34 last time.",
    "Revenue grew from 1,250,000 to 1,487,300 USD year over year.",
    "Listen on 0.0.0.0:8080 and proxy to 127.0.0.1:9000.",
    "Set max_tokens=4096 and temperature=0.2 for the summarizer.",
    "The SKU 4006381333931 is out of stock in warehouse 7.",
    "Model gpt-4o-mini-2024-07-18 costs less than the previous one.",
    "Batch 2024-11-30T12:00:00Z processed 15234 records in 812 ms.",
    "The password field must be at least 12 characters long.",
    "Set api_key=YOUR_KEY_HERE in the config before running.",
    "Our token budget is 8000 per request and the secret sauce is caching.",
    "Use `sk-` as the prefix for OpenAI keys in the docs example.",
    "C++: std::vector<int> v; v.reserve(100); for (auto& x : v) {}",
    "Python slicing: a[1::2] takes every second element.",
    "MAC address 00:1A:2B:3C:4D:5E belongs to the printer.",
    "Version 10.0.19045.3803 of Windows is installed.",
    "Chapter 12.3.4.5 explains the retry policy.",
    "The patient is 34 years old and weighs 72.5 kg.",
    "Call the function get_token() to retrieve a fresh credential.",
    "Contact us via the form on our website.",
    "The building has 1200 desks across 14 floors, 2 cafés.",
    "Scores: 98.6, 87.25, 77.0 and 100.",
    "Range 1000-2000 is reserved; use 3000-3999 for tests.",
    "The wiring diagram shows pins 1 2 3 4 5 6 7 8 in order.",
    "The SHA-256 is e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.",
    "Ticket priority P1, SLA 4 hours, escalation after 2 breaches.",
    "We shipped 4,111 units in Q1 and 1,111 in Q2.",
    "The ratio was 16:9 at 1920x1080 resolution.",
]

GENERATORS: list[tuple[str, Callable[[], tuple[str, str, str]], int]] = [
    ("card", gen_card, 80),
    ("iban", gen_iban, 80),
    ("national_id", gen_ssn, 30),
    ("national_id", gen_nino, 30),
    ("national_id", gen_idnr, 30),
    ("national_id", gen_nir, 30),
    ("national_id", gen_dni, 30),
    ("national_id", gen_nie, 30),
    ("national_id", gen_cf, 30),
    ("national_id", gen_bsn, 30),
    ("email", gen_email, 60),
    ("phone", gen_phone, 120),
    ("ip", gen_ipv4, 40),
    ("ip", gen_ipv6, 30),
    ("secret", gen_secret, 90),
    ("secret", gen_pem, 10),
]


# A malformed key in a `KEY=value` line is still a secret (the assignment says so): lookalikes
# of provider keys are written in prose only.
SECRET_PROSE = [
    "Here's my key, can you tell me why it fails: {v}",
    "I accidentally pasted {v} in the public channel, how do I rotate it?",
]


def template_for(kind: str, detail: str) -> str:
    if kind == "national_id" and detail in TEMPLATES and rng.random() < 0.6:
        return rng.choice(TEMPLATES[detail])
    if kind == "national_id" and detail in ("nl.bsn",):
        return rng.choice(TEMPLATES[detail])  # BSN is only flagged next to its name
    if kind == "secret" and detail in ("assigned_secret", "password", "private_key"):
        key = {"assigned_secret": "assignment", "password": "password", "private_key": "private_key"}[detail]
        return rng.choice(TEMPLATES[key])
    return rng.choice(TEMPLATES[kind])


# Hand-written items: formats people actually type. (label, kind, value, text)
HAND: list[tuple[str, str, str, str]] = [
    ("valid", "phone", "+44 (0)20 7946 0958", "Ring me on +44 (0)20 7946 0958 after lunch."),
    ("valid", "phone", "+33 (0)1 23 45 67 89", "Notre standard : +33 (0)1 23 45 67 89."),
    ("valid", "phone", "0049 30 901820", "Telefon 0049 30 901820, Durchwahl bitte erfragen."),
    ("valid", "phone", "01.23.45.67.89", "Appelez-moi au 01.23.45.67.89 demain matin."),
    ("valid", "phone", "+1.415.555.0132", "Direct line +1.415.555.0132 (Pacific time)."),
    ("valid", "phone", "415.555.0132", "cell 415.555.0132 — text first please"),
    ("valid", "phone", "1-800-555-0199", "Call 1-800-555-0199 to reach billing."),
    ("valid", "phone", "(415)555-0132", "Office: (415)555-0132"),
    ("valid", "phone", "+1 (212) 555-0147", "NYC desk: +1 (212) 555-0147"),
    ("valid", "phone", "07700 900123", "My number is 07700 900123 if you need it."),
    ("valid", "phone", "+61 2 9374 4000", "Sydney office +61 2 9374 4000"),
    ("valid", "phone", "4155550132", "phone: 4155550132"),
    ("valid", "phone", "+91 98765 43210", "WhatsApp +91 98765 43210 for delivery updates"),
    ("valid", "phone", "030 901820", "Rufen Sie uns an: 030 901820"),
    ("valid", "phone", "+49 151 23456789", "Handy: +49 151 23456789"),
    ("valid", "iban", "DE89370400440532013000", "IBAN DE89370400440532013000, BIC COBADEFFXXX"),
    ("valid", "iban", "de89 3704 0044 0532 0130 00", "my iban is de89 3704 0044 0532 0130 00 thx"),
    ("valid", "iban", "GB29 NWBK 6016 1331 9268 19", "Pay GB29 NWBK 6016 1331 9268 19 by Friday."),
    ("valid", "iban", "FR14 2004 1010 0505 0001 3M02 606", "RIB: FR14 2004 1010 0505 0001 3M02 606"),
    (
        "valid",
        "card",
        "4111-1111-1111-1111",
        "Test card 4111-1111-1111-1111 works in staging, does it in prod?",
    ),
    ("valid", "card", "5500 0000 0000 0004", "Mastercard 5500 0000 0000 0004 exp 01/30"),
    ("valid", "card", "3782 822463 10005", "Amex 3782 822463 10005, CID 1234"),
    ("valid", "card", "6011111111111117", "Discover card 6011111111111117 declined"),
    (
        "valid",
        "ip",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "IPv6 of the box: 2001:0db8:85a3:0000:0000:8a2e:0370:7334",
    ),
    ("valid", "ip", "fe80::1ff:fe23:4567:890a", "link-local fe80::1ff:fe23:4567:890a%eth0 on the laptop"),
    ("valid", "ip", "192.168.1.23", "My router is at 192.168.1.23, it keeps rebooting."),
    ("valid", "ip", "10.20.30.40", "ssh into 10.20.30.40 and check the logs"),
    ("valid", "email", "First.Last+tag@sub.domain.co.uk", "Mail: First.Last+tag@sub.domain.co.uk."),
    ("valid", "email", "o'brien@example.ie", "Ask o'brien@example.ie about it"),
    ("valid", "email", "jean-luc.picard@starfleet.example", "cc jean-luc.picard@starfleet.example"),
    ("valid", "national_id", "536904399", "social security number 536904399"),
    ("valid", "national_id", "AB123456C", "NINO AB123456C on the P60"),
    ("valid", "national_id", "36574261809", "Steuer-ID 36574261809"),
    ("valid", "national_id", "2 95 10 99 126 111 93", "Numéro de sécu : 2 95 10 99 126 111 93"),
    ("valid", "national_id", "54362315-K", "DNI 54362315-K"),
    ("valid", "national_id", "X-2482300W", "NIE X-2482300W"),
    ("valid", "national_id", "RCCMNL83S18D969H", "Codice fiscale: RCCMNL83S18D969H"),
    ("valid", "national_id", "1112.22.333", "BSN 1112.22.333"),
    ("valid", "secret", "S3cretPass!", "postgres://admin:S3cretPass!@db.internal:5432/app"),
    ("valid", "secret", "abcDEF123456ghiJKL789", "Authorization: Bearer abcDEF123456ghiJKL789"),
    (
        "valid",
        "secret",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        "valid",
        "secret",
        "sk-" + "ant-api03-Xy7Zq9Wm2Lp4Nn6Rr8Tt0Vv1Bb3Dd5Ff7Hh9Jj",
        "ANTHROPIC_API_KEY is sk-" + "ant-api03-Xy7Zq9Wm2Lp4Nn6Rr8Tt0Vv1Bb3Dd5Ff7Hh9Jj",
    ),
    (
        "valid",
        "secret",
        "gl" + "pat-Ab3De5Gh7Jk9Mn1Pq3St",
        "gitlab token gl" + "pat-Ab3De5Gh7Jk9Mn1Pq3St leaked in CI logs",
    ),
    (
        "valid",
        "secret",
        "hf" + "_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "HF token hf" + "_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    ),
    ("invalid", "national_id", "078-05-1120", "The famous sample SSN 078-05-1120 was printed in wallets."),
    ("invalid", "national_id", "QQ 12 34 56 C", "HMRC's example NINO is QQ 12 34 56 C."),
    ("invalid", "card", "4111 1111 1111 1112", "Card 4111 1111 1111 1112 fails the check."),
    (
        "invalid",
        "iban",
        "DE89 3704 0044 0532 0130 01",
        "Wrong IBAN DE89 3704 0044 0532 0130 01 was rejected.",
    ),
    ("invalid", "ip", "999.10.10.10", "Bogus address 999.10.10.10 in the logs."),
    ("invalid", "ip", "127.0.0.1", "Bind to 127.0.0.1 only."),
    ("invalid", "phone", "+1 212 055 0123", "Number +1 212 055 0123 doesn't exist."),
    ("invalid", "email", "name@localhost", "Local mail to name@localhost stays on the box."),
    ("invalid", "secret", "sk-learn-is-great", "sk-learn-is-great for classic ML (a typo of sklearn)."),
    ("invalid", "secret", "hunter", "My password: hunter is a joke from IRC."),
]


def build() -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    for kind, generate, count in GENERATORS:
        for _ in range(count):
            valid, invalid, detail = generate()
            template = template_for(kind, detail)
            name = person()
            items.append(
                {
                    "label": "valid",
                    "kind": kind,
                    "detail": detail,
                    "value": valid,
                    "text": template.format(v=valid, p=name),
                }
            )
            if kind == "secret" and detail not in ("assigned_secret", "password", "private_key"):
                template = rng.choice(SECRET_PROSE)
            items.append(
                {
                    "label": "invalid",
                    "kind": kind,
                    "detail": detail,
                    "value": invalid,
                    "text": template.format(v=invalid, p=name),
                }
            )
    for label, kind, value, text in HAND:
        assert value in text
        items.append({"label": label, "kind": kind, "detail": "hand", "value": value, "text": text})
    for text in NONE_TEXTS:
        items.append({"label": "none", "kind": "", "detail": "", "value": "", "text": text})
    # A few multi-PII paragraphs: every value must be found in context with the others.
    for _ in range(20):
        parts = [gen_email(), gen_phone(), gen_card(), gen_iban()]
        text = (
            f"Hello, this is {person()}. Reach me at {parts[0][0]} or {parts[1][0]}. "
            f"Please refund card {parts[2][0]} or pay into {parts[3][0]}. Thanks!"
        )
        for (value, _bad, detail), kind in zip(parts, ["email", "phone", "card", "iban"], strict=True):
            items.append({"label": "valid", "kind": kind, "detail": detail, "value": value, "text": text})
    for i, item in enumerate(items):
        item["id"] = f"pii-{i:04d}"
    return items


def encode_secrets(item: dict[str, str]) -> dict[str, str]:
    """Secret rows are stored base64-encoded, so that secret scanners do not flag the corpus."""
    if item["kind"] != "secret":
        return item
    return {
        **item,
        "encoding": "base64",
        "value": base64.b64encode(item["value"].encode()).decode(),
        "text": base64.b64encode(item["text"].encode()).decode(),
    }


def main() -> None:
    items = build()
    with OUT.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(encode_secrets(item), ensure_ascii=False) + "\n")
    by_label: dict[str, int] = {}
    for item in items:
        by_label[item["label"]] = by_label.get(item["label"], 0) + 1
    print(f"wrote {len(items)} items {by_label} to {OUT}")


if __name__ == "__main__":
    main()
