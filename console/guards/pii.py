"""PII and secret detection and redaction for text on the gateway's hot path.

What is found (``Finding.kind`` → placeholder):

- ``secret`` → ``[SECRET]``: PEM private key blocks, provider keys (OpenAI/Anthropic ``sk-``,
  AWS ``AKIA``/``ASIA``, GitHub ``ghp_``…/``github_pat_``, GitLab ``glpat-``, Slack ``xox?-`` and
  webhooks, Stripe ``sk_live_``, Google ``AIza``, Hugging Face ``hf_``, npm ``npm_``, SendGrid),
  JWTs, ``Bearer`` tokens, the password in ``scheme://user:password@host``, and the value of
  ``key=value`` / ``"key": "value"`` pairs whose key names a secret (api_key, token, secret,
  password…) when the value looks random enough (or, for passwords, is not a plain word).
- ``email`` → ``[EMAIL]``.
- ``iban`` → ``[IBAN]``: ISO 13616, country length and ISO 7064 mod-97 (python-stdnum).
- ``card`` → ``[CARD]``: 13–19 digits, optionally grouped by spaces or dashes, Luhn-valid and
  with a known issuer prefix (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro).
- ``national_id`` → ``[NATIONAL_ID]`` (``Finding.detail`` names the scheme), each validated
  with python-stdnum where a check exists:
  ``us.ssn`` (NNN-NN-NNNN; unissued areas/groups/serials refused; 9 bare digits only next to
  a word like "SSN"), ``gb.nino`` (format and HMRC prefix rules: NINOs carry no check digit),
  ``de.idnr`` (Steuer-IdNr, 11 digits, ISO 7064 mod 11,10; bare digits only next to a word like
  "Steuer-ID"), ``fr.nir`` (15 chars, mod-97 key), ``es.dni`` and ``es.nie`` (check letter),
  ``it.codicefiscale`` (check character), ``nl.bsn`` (11-proof; only next to "BSN" or
  "burgerservicenummer", since any 9 digits pass one time in eleven).
- ``phone`` → ``[PHONE]``: candidates found by a cheap pattern, then validated with
  phonenumbers: any ``+CC`` / ``00CC`` number; national numbers for US/CA (10 digits) and, with
  the trunk ``0``, for GB, DE and FR. A bare run of digits without separators counts only next
  to a word like "phone" or "call".
- ``ip`` → ``[IP]``: IPv4 and IPv6 (validated by ``ipaddress``); loopback and unspecified
  addresses (127.0.0.0/8, 0.0.0.0, ::1, ::) identify nobody and are left alone.

When findings overlap, the kind earlier in the list above wins (an IBAN is never also a phone).
Everything is precompiled; expensive validators run only on candidates that passed a
cheap pattern and digit-count check.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import phonenumbers
from stdnum import iban as _iban
from stdnum import luhn as _luhn
from stdnum.de import idnr as _de_idnr
from stdnum.es import dni as _es_dni
from stdnum.es import nie as _es_nie
from stdnum.fr import nir as _fr_nir
from stdnum.it import codicefiscale as _it_cf
from stdnum.nl import bsn as _nl_bsn
from stdnum.us import ssn as _us_ssn

KINDS = ("secret", "email", "iban", "card", "national_id", "ip", "phone")
RESERVED = ""  # kind of a span that blocks later detectors but is not reported
PLACEHOLDERS = {kind: f"[{kind.upper()}]" for kind in KINDS}


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of PII in a text: ``text[start:end]`` is what gets replaced."""

    kind: str
    start: int
    end: int
    detail: str = ""


# ---------------------------------------------------------------------------------------------
# the scan context: digit clusters found once, so that number detectors read small windows

_DIGIT_CLUSTER = re.compile(r"\d(?:[ \t\-./()]{0,3}\d)*")


def _token_end(text: str, i: int) -> int:
    """The first whitespace position at or after ``i`` (or the end of the text)."""
    ends = [j for j in (text.find(" ", i), text.find("\n", i)) if j != -1]
    return min(ends) if ends else len(text)


class _Scan:
    """One text being scanned, with its digit clusters (maximal runs of digits and separators)."""

    __slots__ = ("clusters", "lower", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.lower = text.lower()
        clusters = []
        for m in _DIGIT_CLUSTER.finditer(text):
            start, end = m.span()
            count = end - start
            if count >= 4:
                count = sum(1 for c in m.group() if c.isdigit())
            clusters.append((start, end, count))
        self.clusters = clusters

    def windows(self, min_digits: int, back: int, ahead: int, max_digits: int = 64) -> list[tuple[int, int]]:
        """Merged text windows around clusters with ``min_digits``..``max_digits`` digits."""
        out: list[tuple[int, int]] = []
        n = len(self.text)
        for start, end, count in self.clusters:
            if not min_digits <= count <= max_digits:
                continue
            a = max(0, start - back)
            b = min(n, end + ahead)
            if b < n:  # end the window on whitespace, never inside a token
                b = _token_end(self.text, b)
            if out and a <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
        return out

    def anchors(self, words: tuple[str, ...], back: int, ahead: int) -> list[tuple[int, int]]:
        """Merged windows around every occurrence of any of ``words`` in the lower-cased text."""
        spans: list[tuple[int, int]] = []
        n = len(self.lower)
        if n != len(self.text):  # lower-casing changed the length ("İ"): positions would drift
            return [(0, len(self.text))] if any(word in self.lower for word in words) else []
        for word in words:
            i = self.lower.find(word)
            while i != -1:
                spans.append((max(0, i - back), min(n, i + len(word) + ahead)))
                i = self.lower.find(word, i + 1)
        spans.sort()
        out: list[tuple[int, int]] = []
        for a, b in spans:
            if out and a <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
        return out


Detector = Callable[[_Scan], Iterable[Finding]]

# ---------------------------------------------------------------------------------------------
# helpers

_CONTEXT_WINDOW = 48


def _context(text: str, start: int, pattern: re.Pattern[str], window: int = _CONTEXT_WINDOW) -> bool:
    """Whether ``pattern`` occurs in the ``window`` characters before ``start``."""
    return pattern.search(text, max(0, start - window), start) is not None


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    length = len(value)
    return -sum(n / length * math.log2(n / length) for n in counts.values())


# ---------------------------------------------------------------------------------------------
# secrets

_PEM = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----.*?(?:-----END \1-----|\Z)", re.DOTALL
)
# (name, pattern); each pattern starts with a literal so the regex engine can skip ahead fast.
_TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("openai_key", re.compile(r"sk-(?:proj-|ant-(?:api\d\d-)?|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}")),
    ("fleetdeck_key", re.compile(r"fd-[a-z0-9_]{1,32}-[A-Za-z0-9_\-]{40,}")),  # fd-<env>-<secret>
    ("aws_access_key", re.compile(r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![0-9A-Za-z])")),
    ("github_token", re.compile(r"gh[pousr]_[A-Za-z0-9]{36,255}")),
    ("github_token", re.compile(r"github_pat_[A-Za-z0-9_]{40,255}")),
    ("gitlab_token", re.compile(r"glpat-[A-Za-z0-9_\-]{20,}")),
    ("slack_token", re.compile(r"xox[abposr]-[A-Za-z0-9\-]{10,}")),
    ("slack_webhook", re.compile(r"hooks\.slack\.com/services/[A-Za-z0-9/_\-]{20,}")),
    ("stripe_key", re.compile(r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}")),
    ("google_api_key", re.compile(r"AIza[0-9A-Za-z_\-]{35}")),
    ("huggingface_token", re.compile(r"hf_[A-Za-z0-9]{30,}")),
    ("npm_token", re.compile(r"npm_[A-Za-z0-9]{36}")),
    ("sendgrid_key", re.compile(r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}")),
    ("jwt", re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*")),
)
_BEARER = re.compile(r"[Bb]earer\s+([A-Za-z0-9\-._~+/]{16,}=*)")
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]+:([^\s:/@]{3,})@")
# Tried only where a key word occurs (``OPENAI_API_KEY=`` is tried at ``KEY``), anchored there.
_ASSIGNMENT = re.compile(
    r"(?i)(?P<key>(?:key|secret|token|passw(?:or)?d|pwd|credentials?)(?:[_\-.][a-z0-9]+)*)"
    r"[\"']?\s*(?:=|:|=>)\s*[\"']?(?P<value>[A-Za-z0-9_\-+/=.~!@#%^&*]{6,})"
)
# Words that may run straight into a key word without a separator ("apikey", "accessToken").
_KEY_PREFIXES = (
    "api",
    "access",
    "private",
    "secret",
    "client",
    "auth",
    "app",
    "master",
    "signing",
    "session",
)
_PASSWORD_KEY = re.compile(r"(?i)passw|pwd")
_PLAIN_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+|[a-z]+(?:[_\-][a-z]+)+")
_PLACEHOLDER_VALUE = re.compile(
    r"(?i)^(?:x+|\*+|\.+|-+|_+|(?:your|my|the|example|dummy|changeme|redacted).*)$"
)


def _is_random(value: str) -> bool:
    """Whether a token looks machine-made: long, mixed, high entropy."""
    if len(value) < 12:
        return False
    classes = (
        any(c.islower() for c in value) + any(c.isupper() for c in value) + any(c.isdigit() for c in value)
    )
    return classes >= 2 and _entropy(value) >= 3.0


_SECRET_KEYS = ("key", "secret", "token", "passw", "pwd", "credential")


def _secrets(scan: _Scan) -> Iterable[Finding]:
    text = scan.text
    if "-----BEGIN" in text:
        for m in _PEM.finditer(text):
            yield Finding("secret", m.start(), m.end(), "private_key")
    yield from _provider_tokens(text)
    if "earer" in text:
        for m in _BEARER.finditer(text):
            yield Finding("secret", m.start(1), m.end(1), "bearer_token")
    if "://" in text:
        for m in _URL_PASSWORD.finditer(text):
            yield Finding("secret", m.start(1), m.end(1), "url_password")
    yield from _assignments(scan)


def _provider_tokens(text: str) -> Iterable[Finding]:
    for name, pattern in _TOKEN_PATTERNS:
        if name == "stripe_key" and "k_live_" not in text and "k_test_" not in text:
            continue
        for m in pattern.finditer(text):
            start = m.start()
            if start and text[start - 1].isalnum():
                continue  # "task-…" is not "sk-…"
            if name == "openai_key" and not any(c.isdigit() or c.isupper() for c in m.group()[3:]):
                continue  # sk-some-hyphenated-words
            yield Finding("secret", start, m.end(), name)


def _assignments(scan: _Scan) -> Iterable[Finding]:
    text = scan.text
    if len(scan.lower) == len(text):
        for word in _SECRET_KEYS:
            i = scan.lower.find(word)
            while i != -1:
                yield from _assignment_at(text, scan.lower, i)
                i = scan.lower.find(word, i + 1)
    else:  # lower-casing changed the length: search the whole text
        for m in _ASSIGNMENT_ANYWHERE.finditer(text):
            yield from _assignment_at(text, text, m.start())


_ASSIGNMENT_ANYWHERE = re.compile(r"(?i)key|secret|token|passw|pwd|credential")


def _assignment_at(text: str, lower: str, i: int) -> Iterable[Finding]:
    if i and lower[i - 1].isalpha() and not lower[max(0, i - 8) : i].lower().endswith(_KEY_PREFIXES):
        return  # inside a word ("monkey=", "mytokenizer")
    m = _ASSIGNMENT.match(text, i)
    if m is not None:
        value = m.group("value").rstrip(".")
        if _PLACEHOLDER_VALUE.match(value):
            return
        if _PASSWORD_KEY.search(m.group("key")):
            if len(value) < 6 or _PLAIN_WORD.fullmatch(value):
                return
        elif not _is_random(value):
            return
        yield Finding("secret", m.start("value"), m.start("value") + len(value), "assigned_secret")


# ---------------------------------------------------------------------------------------------
# e-mail

_EMAIL = re.compile(
    r"(?<![\w.+\-%'])[A-Za-z0-9._%+\-][A-Za-z0-9._%+\-']{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w\-])"
)


def _emails(scan: _Scan) -> Iterable[Finding]:
    if "@" not in scan.text:
        return
    for a, b in scan.anchors(("@",), 65, 120):
        for m in _EMAIL.finditer(scan.text, a, b):
            yield Finding("email", m.start(), m.end())


# ---------------------------------------------------------------------------------------------
# IBAN

_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", re.IGNORECASE)
_IBAN_SHAPE = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9])+")


def _ibans(scan: _Scan) -> Iterable[Finding]:
    text = scan.text
    for m in (m for a, b in scan.windows(6, 14, 40) for m in _IBAN.finditer(text, a, b)):
        candidate = m.group()
        # The pattern may run on into following capitalised words: try each group boundary,
        # longest first.
        ends = [len(candidate)] + [i for i in range(len(candidate) - 1, 0, -1) if candidate[i] == " "]
        for end in ends:
            if _iban.is_valid(candidate[:end]):
                yield Finding("iban", m.start(), m.start() + end)
                break
        else:
            # IBAN-shaped but invalid: reserve its upper-case part so that no later detector
            # reads a phone or card number out of its digits.
            shape = _IBAN_SHAPE.match(candidate)
            if shape and len(shape.group().replace(" ", "")) >= 15:
                yield Finding(RESERVED, m.start(), m.start() + len(shape.group().rstrip()))


# ---------------------------------------------------------------------------------------------
# payment cards

_CARD = re.compile(r"(?<![\w\-.,])\d(?:[ \-]?\d){12,18}(?![\d\-]|[.,]\d)")
_CARD_PREFIX = re.compile(
    r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|6(?:011|5|4[4-9]|2)|35(?:2[89]|[3-8]\d)|3(?:0[0-5]|[68])"
    r"|5[06-9]|6\d"
)


def _cards(scan: _Scan) -> Iterable[Finding]:
    for m in (m for a, b in scan.windows(13, 1, 1, 19) for m in _CARD.finditer(scan.text, a, b)):
        raw = m.group()
        if "-" in raw and " " in raw:
            continue
        digits = raw.replace(" ", "").replace("-", "")
        if not 13 <= len(digits) <= 19 or not _CARD_PREFIX.match(digits):
            continue
        if len(set(digits)) == 1:
            continue
        if _luhn.is_valid(digits):
            yield Finding("card", m.start(), m.end())


# ---------------------------------------------------------------------------------------------
# national identifiers

_SSN = re.compile(r"(?<![\d\-])\d{3}([\- ])\d{2}\1\d{4}(?![\d\-])")
_SSN_BARE = re.compile(r"(?<![\d\-])\d{9}(?![\d\-])")
_SSN_CONTEXT = re.compile(r"(?i)\bssn|social security|\bss#|\bsocial sec")
_NINO = re.compile(r"\b([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
_NINO_BAD_PREFIX = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})
_IDNR = re.compile(r"(?<![\d\-])[1-9]\d (?:\d{3} ){2}\d{3}(?![\d\-])")
_IDNR_BARE = re.compile(r"(?<![\d\-])[1-9]\d{10}(?![\d\-])")
_IDNR_CONTEXT = re.compile(r"(?i)steuer|\bidnr|identifikationsnummer|tax[ \-]?id|\btin\b")
_NIR = re.compile(r"(?<![\w\-])[1-478](?:[ .]?[0-9AB]){12}[ .]?\d{2}(?![\w\-])")
_DNI = re.compile(r"(?<![\w\-])\d{8}[\- ]?[A-Za-z](?![\w\-])")
_NIE = re.compile(r"(?<![\w\-])[XYZxyz][\- ]?\d{7}[\- ]?[A-Za-z](?![\w\-])")
_CF = re.compile(
    r"(?<![\w\-])[A-Za-z]{6}[\dLMNP-V]{2}[A-Za-z][\dLMNP-V]{2}[A-Za-z][\dLMNP-V]{3}[A-Za-z](?![\w\-])"
)
_BSN = re.compile(r"(?<![\d\-.])\d{4}[. ]?\d{2}[. ]?\d{3}(?![\d\-]|\.\d)")
_BSN_CONTEXT = re.compile(r"(?i)\bbsn\b|burgerservice|sofi-?nummer")


def _validated(
    pattern: re.Pattern[str],
    check: Callable[[str], bool],
    detail: str,
    context: re.Pattern[str] | None = None,
) -> Callable[[str, int, int], Iterator[Finding]]:
    """A finder of ``pattern`` matches in ``text[a:b]`` that pass ``check`` (and have ``context``)."""

    def find(text: str, a: int, b: int) -> Iterator[Finding]:
        for m in pattern.finditer(text, a, b):
            if (context is None or _context(text, m.start(), context)) and check(m.group()):
                yield Finding("national_id", m.start(), m.end(), detail)

    return find


def _nino_ok(value: str) -> bool:
    return value[:2] not in _NINO_BAD_PREFIX


# By the number of digits in a cluster: the schemes that have that many.
_NATIONAL_BY_DIGITS: dict[int, tuple[Callable[[str, int, int], Iterator[Finding]], ...]] = {
    6: (_validated(_NINO, _nino_ok, "gb.nino"),),
    7: (_validated(_NIE, _es_nie.is_valid, "es.nie"),),
    8: (_validated(_DNI, _es_dni.is_valid, "es.dni"),),
    9: (
        _validated(_SSN, lambda v: _us_ssn.is_valid(v.replace(" ", "-")), "us.ssn"),
        # Schemes whose bare digits are too common to flag without a word saying what they are.
        _validated(_SSN_BARE, _us_ssn.is_valid, "us.ssn", _SSN_CONTEXT),
        _validated(_BSN, lambda v: _nl_bsn.is_valid(v.replace(" ", "")), "nl.bsn", _BSN_CONTEXT),
    ),
    11: (
        _validated(_IDNR, _de_idnr.is_valid, "de.idnr"),
        _validated(_IDNR_BARE, _de_idnr.is_valid, "de.idnr", _IDNR_CONTEXT),
    ),
}
_CODICE_FISCALE = _validated(_CF, lambda v: _it_cf.is_valid(v.upper()), "it.codicefiscale")
# The NIR may hold 2A/2B (Corsica), which splits its digits into two clusters.
_NIR_FIND = _validated(_NIR, lambda v: _fr_nir.is_valid(v.replace(".", " ")), "fr.nir")


def _national_ids(scan: _Scan) -> Iterable[Finding]:
    text = scan.text
    n = len(text)
    for start, end, count in scan.clusters:
        if 2 <= count <= 3 and start >= 6 and text[start - 1].isalpha():
            yield from _CODICE_FISCALE(text, start - 6, _token_end(text, end))
        if not 5 <= count <= 15:
            continue
        a, b = max(0, start - 3), _token_end(text, min(n, end + 3))
        for find in _NATIONAL_BY_DIGITS.get(count, ()):
            yield from find(text, a, b)
        yield from _NIR_FIND(text, max(0, start - 1), _token_end(text, min(n, end + 16)))


# ---------------------------------------------------------------------------------------------
# phone numbers

_PHONE = re.compile(
    r"(?<![\w+\-/.])(?:\+|\b00)?(?:\(\d{1,5}\)|\d)(?:[ \t\-./]{0,2}\(?\d\)?){5,17}(?![\w\-]|\.\d)"
)
_PHONE_CONTEXT = re.compile(
    r"(?i)phone|\btel\b|\btel\.|call|mobile|\bcell|\bfax|whatsapp|\bsms|text me|reach me|contact|"
    r"number|\bnum\b|\bno\.|#|telefon|handy|t[ée]l[ée]phone|portable|num[ée]ro|ring"
)
_DATE_LIKE = re.compile(r"\d{1,4}[./\-]\d{1,2}[./\-]\d{1,4}")
_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_GROUPS = re.compile(r"\d+")
# How a US/CA national number may be grouped: 3-3-4, 1-3-3-4, or unbroken.
_US_GROUPINGS = frozenset({(3, 3, 4), (1, 3, 3, 4), (10,), (11,), (3, 7), (1, 10)})
_NATIONAL_REGIONS_TRUNK0 = ("GB", "DE", "FR")


@functools.lru_cache(maxsize=8192)
def _valid_phone(raw: str, region: str | None) -> bool:
    """Whether phonenumbers calls ``raw`` a valid number; cached, as chat histories resend text."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number)


def _balanced(raw: str) -> str:
    """A number without the closing parentheses it did not open: "(+1 415 555 0132)" keeps its ")"."""
    while raw.endswith(")") and raw.count(")") > raw.count("("):
        raw = raw[:-1].rstrip()
    return raw


def _phones(scan: _Scan) -> Iterable[Finding]:
    text = scan.text
    for m in (m for a, b in scan.windows(7, 8, 2, 17) for m in _PHONE.finditer(text, a, b)):
        raw = _balanced(m.group().rstrip("."))
        digits = _digits(raw)
        if not 7 <= len(digits) <= 17:
            continue
        if raw.startswith("+"):
            ok = _valid_phone(raw, None)
        elif raw.startswith("00"):
            ok = _valid_phone("+" + raw[2:], None)
        else:
            if digits == raw and not _context(text, m.start(), _PHONE_CONTEXT):
                continue  # a bare run of digits: an order number as likely as a phone
            if _DATE_LIKE.fullmatch(raw) or _DOTTED_QUAD.fullmatch(raw):
                continue
            if digits[0] == "0":
                ok = 9 <= len(digits) <= 12 and any(
                    _valid_phone(raw, region) for region in _NATIONAL_REGIONS_TRUNK0
                )
            else:
                grouping = tuple(len(g) for g in _GROUPS.findall(raw))
                ok = (
                    (len(digits) == 10 or (len(digits) == 11 and digits[0] == "1"))
                    and grouping in _US_GROUPINGS
                    and _valid_phone(raw, "US")
                )
        if ok:
            yield Finding("phone", m.start(), m.start() + len(raw))


# ---------------------------------------------------------------------------------------------
# IP addresses

_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\d|\.\d)"
)
_NOT_IP_CONTEXT = re.compile(
    r"(?i)\b(?:version|ver\.?|v|chapter|section|release|build|rule|step|figure|fig\.|table|clause|article|"
    r"art\.)\s*$|§\s*$"
)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])"
)


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _ipv6_windows(text: str) -> list[tuple[int, int]]:
    """Windows around colons that sit between hex digits or double up: where IPv6 can be."""
    out: list[tuple[int, int]] = []
    n = len(text)
    i = text.find(":")
    while i != -1:
        after = text[i + 1] if i + 1 < n else ""
        tight = (after in _HEX_DIGITS or after == ":") and (
            i == 0 or text[i - 1] in _HEX_DIGITS or text[i - 1] == ":"
        )
        # IPv6 has another colon within five characters of each colon ("02:00" has not)
        if tight and (text.find(":", i + 1, i + 6) != -1 or text.find(":", max(0, i - 5), i) != -1):
            a, b = max(0, i - 40), min(n, i + 41)
            if out and a <= out[-1][1]:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
        i = text.find(":", i + 1)
    return out


def _ips(scan: _Scan) -> Iterable[Finding]:
    text = scan.text
    for m in (m for a, b in scan.windows(4, 1, 1, 12) for m in _IPV4.finditer(text, a, b)):
        if _context(text, m.start(), _NOT_IP_CONTEXT, 12):
            continue
        address = ipaddress.IPv4Address(m.group())
        if not (address.is_loopback or address.is_unspecified):
            yield Finding("ip", m.start(), m.end(), "ipv4")
    for m in (m for a, b in _ipv6_windows(text) for m in _IPV6.finditer(text, a, b)):
        candidate = m.group()
        if sum(1 for group in candidate.split(":") if group) < 3:
            continue
        try:
            address6 = ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        if not (address6.is_loopback or address6.is_unspecified):
            yield Finding("ip", m.start(), m.end(), "ipv6")


# ---------------------------------------------------------------------------------------------
# public API

DETECTORS: tuple[Detector, ...] = (_secrets, _emails, _ibans, _cards, _national_ids, _ips, _phones)
"""In priority order: a finding overlapping one from an earlier detector is dropped."""


def scan(text: str) -> list[Finding]:
    """Every PII finding in ``text``, sorted by position, none overlapping."""
    if len(text) < 6:
        return []
    context = _Scan(text)
    accepted: list[Finding] = []
    for detector in DETECTORS:
        for finding in detector(context):
            if finding.end <= finding.start:
                continue
            if any(finding.start < other.end and other.start < finding.end for other in accepted):
                continue
            accepted.append(finding)
    return sorted((f for f in accepted if f.kind), key=lambda f: f.start)


def redact(text: str) -> tuple[str, dict[str, int]]:
    """``text`` with every finding replaced by its placeholder, and the counts by kind."""
    findings = scan(text)
    if not findings:
        return text, {}
    parts: list[str] = []
    counts: dict[str, int] = {}
    position = 0
    for finding in findings:
        parts.append(text[position : finding.start])
        parts.append(PLACEHOLDERS[finding.kind])
        counts[finding.kind] = counts.get(finding.kind, 0) + 1
        position = finding.end
    parts.append(text[position:])
    return "".join(parts), counts
