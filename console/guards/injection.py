"""Prompt-injection scoring: heuristic signals combined into a score in [0, 1].

Each signal is a family of precompiled patterns with a weight (how sure one hit makes us).
The score is the noisy-OR of the strongest hit of every signal that fired:
``1 - Π(1 - w)``, so one strong signal (an instruction override, 0.9) blocks at the default
threshold 0.7 on its own, and two medium ones (a persona switch and "no restrictions")
block together.

Signals (``Signal.name``):

- ``override`` / ``override_weak``: "ignore all previous instructions" and its paraphrases
  (ignore / disregard / forget / bypass / override … previous / system / your … instructions /
  rules / guidelines …), in English and in es, fr, de, it, pt, nl, ru, pl, tr, zh, ja, ko.
  A user's own correction ("ignore my previous message") does not count.
- ``new_instructions``: "new instructions:", "your new task is", "from now on you will".
- ``persona``: DAN / do anything now, developer-mode output, god / sudo / jailbreak mode,
  unfiltered or unrestricted personas, "stay in character", "no ethical guidelines";
  weaker: ``persona_weak`` ("you are now", "enable developer mode"), ``persona_more`` ("an
  AI with no restrictions", "respond twice"), ``no_rules`` ("without any filters"), and
  ``harmful_request`` (napalm, malware …), which only adds to other signals.
- ``exfiltration`` / ``exfiltration_context`` / ``exfiltration_context_weak``: asks for the
  system prompt, hidden or initial instructions, the text above / before the first
  message, verbatim.
- ``encoded``: base64, hex, rot13, reversed or leetspeak text that decodes to any of the
  above; ``decode_and_follow`` when the text asks to decode something and act on it.
- ``invisible``: Unicode tag characters (decoded and scanned too), bidi override controls,
  zero-width characters inside words, mixed-script (homoglyph) words.
- ``markdown_exfil``: a markdown image / HTML img / link whose URL carries a placeholder to
  fill with conversation data, or an instruction to put chat data into a URL.
- ``tool_abuse``: sending data to an outside address; ``tool_danger``: destructive, payment
  or shell tool calls, ``curl | sh``; ``stealth``: "without asking", "do not tell the
  user" (``stealth_action`` when stealth and a tool action come together).
- ``role_markers``: chat-template tokens (``<|im_start|>``, ``[INST]``, ``<<SYS>>``) and fake
  system headers ("### System:", "SYSTEM OVERRIDE", "BEGIN SYSTEM PROMPT").
- ``addressed_to_ai``: text speaking to the model ("if you are an AI", "note to the
  assistant") — strong in retrieved content, weak in what a user types; ``hidden_note``
  ("hidden instructions") in retrieved content.

Hard negatives are handled by context: a hit inside quotes or backticks in a text that is
visibly *about* prompt injection or security ("what is prompt injection", "write a regex
that flags …") is discounted.

Speed: the text's word set is computed once; every rule names anchor words (one of which
each of its matches contains) and runs only in windows around the anchors present, so
ordinary traffic runs few rules on small windows. ASCII texts skip all Unicode work;
decoders run only on candidates of the right shape.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

DEFAULT_THRESHOLD = 0.7


@dataclass(frozen=True, slots=True)
class Signal:
    """One signal that fired: its name, its weight after context, and what matched."""

    name: str
    weight: float
    evidence: str
    where: str = ""


@dataclass(frozen=True, slots=True)
class InjectionResult:
    score: float
    signals: tuple[Signal, ...]

    def blocked(self, threshold: float = DEFAULT_THRESHOLD) -> bool:
        """Whether the score reaches ``threshold`` (a route's threshold, 0.7 by default)."""
        return self.score >= threshold

    def __iter__(self) -> Iterator[object]:
        """``score, signals = result``."""
        yield self.score
        yield self.signals

    def to_json(self) -> dict[str, object]:
        return {
            "score": round(self.score, 4),
            "signals": [
                {"name": s.name, "weight": round(s.weight, 3), "evidence": s.evidence, "where": s.where}
                for s in self.signals
            ],
        }


# ---------------------------------------------------------------------------------------------
# patterns (run on normalised text: NFKC, lower case, invisibles removed, spaces collapsed)

_I = re.IGNORECASE

_OVERRIDE_VERB = (
    r"(?:ignore|ignoring|disregard|forget|skip|bypass|override|overrule|overlook|abandon|discard|neglect|"
    r"dismiss|drop|set aside|put aside|pay no attention to|do not follow|don'?t follow|stop following|"
    r"no longer follow|cancel|erase|clear|throw out|void|nullify|circumvent|evade|break)"
)
_OVERRIDE_MOD = (
    r"(?:all|any|every|each|the|your|these|those|this|that|previous|previously|prior|above|earlier|preceding|"
    r"initial|original|old|existing|current|given|provided|stated|system|developer|developers'?|default|"
    r"safety|ethical|moral|security|content|built-?in|internal|hidden|former|of|of the|you|you'?ve|you were|"
    r"were|have|been|received|got|openai'?s?|its|their|standing|above-mentioned|aforementioned|usual|"
    r"preset|pre-?set|programmed|core|base|underlying|everything|everything in|in)"
)
_OVERRIDE_NOUN = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guidance|constraints|restrictions|"
    r"guardrails|polic(?:y|ies)|programming|commands|orders|conditioning|training|filters|limitations|"
    r"system (?:message|prompt)|context|safeguards|protocols?|"
    r"ethics|morals|principles|boundaries|limits)"
)
_OVERRIDE = re.compile(rf"\b{_OVERRIDE_VERB}(?:\s+{_OVERRIDE_MOD})*\s+{_OVERRIDE_NOUN}\b")
_OVERRIDE_WEAK = re.compile(
    rf"\b{_OVERRIDE_VERB}\s+(?:all\s+|of\s+)?(?:the above|everything(?: (?:above|before|prior|said|else|"
    rf"you (?:were|have been) told))?|"
    r"what (?:you were|you've been|you have been|i) (?:told|said|given)|whatever you were told|"
    r"all of the above|the preceding|that)\b(?!\s+(?:error|warning|typo|message|email|mail|part|paragraph|"
    r"step|"
    r"line|section|file|comment|question|one|draft|spreadsheet))"
)
# "ignore my previous instructions" is the user correcting themselves.
_OWN_INSTRUCTIONS = re.compile(
    r"\b(?:my|our|last|latest)\s+(?:\w+\s+)?(?:instructions?|messages?|prompts?|rules)\b"
)
_OVERRIDE_PHRASES = re.compile(
    rf"\b{_OVERRIDE_VERB}\s+(?:all\s+)?(?:everything|anything|whatever|all|"
    rf"what)\s+(?:that\s+)?(?:you (?:were|have been|'ve been|got|received)"
    r" (?:told|given|instructed|programmed)|(?:was|you were) said to you)|"
    rf"\b{_OVERRIDE_VERB}\s+(?:all\s+|of\s+)?(?:everything|anything|all)\s+(?:prior to|before|preceding|"
    rf"above) (?:this|my|here)\b|"
    rf"\b{_OVERRIDE_VERB}\s+(?:what\s+)?the user(?:'s)?\b|"
    rf"\b{_OVERRIDE_VERB}\s+what (?:the |your )?(?:operator|developer|developers|admin|administrator|company|"
    r"system|they|openai) (?:configured|set up|set|told you|said|wrote|gave you|specified|instructed)\b"
)
_OVERRIDE_STATE = re.compile(
    r"(?:your|system|safety|the ai'?s|the assistant'?s|all (?:previous|prior|earlier))\s+(?:\w+\s+)?"
    r"(?:instructions?|rules|guidelines|prompts?|directions|guidance|(?:content|safety|usage) polic(?:y|"
    r"ies))\b[^.!?\n]{0,40}?"
    r" (?:are|is|were|have been|has been) (?:now )?(?:void|null|obsolete|outdated|revoked|cancell?ed|"
    r"deprecated|"
    r"invalid|superseded|overridden|suspended|lifted|disabled)|"
    r"(?:instructions?|rules|guidelines|prompts?) (?:you (?:got|received|were given)|from the developers?|"
    r"given to you)\b[^.!?\n]{0,40}? (?:are|is|were) (?:now )?(?:void|null|obsolete|outdated|revoked|"
    r"cancell?ed|deprecated|invalid|superseded|overridden|suspended|lifted|disabled)|"
    r"(?:previous|prior|above|earlier|original|system|old) (?:instructions?|rules|guidelines|prompts?|"
    r"directions|"
    r"guidance|policy)(?: (?:are|is|were|have been|has been))? (?:void|null|obsolete|outdated|revoked|"
    r"cancell?ed|deprecated|invalid|no longer (?:valid|apply|applies|in effect)|superseded|overridden|"
    r"wrong|irrelevant|a test)|(?:it|they|that) no longer appl(?:y|ies)|supersedes? (?:all|any) "
    r"(?:earlier|previous|prior) (?:rules|instructions)|null and void|"
    r"new (?:rule|policy|directive|instruction)s?\b.{0,40}\b(?:supersedes?|overrides?|replaces?)|"
    r"start (?:over|fresh) with (?:fresh|new) (?:rules|instructions)"
)
_OVERRIDE_MULTI = re.compile(
    r"(?:ignor[ae]\w*|olvid[ae]\w*|descart[ae]\w*|omit[ae]\w*|desconsider[ae]\w*|esque[cç]a\w*)\s+"
    r"(?:\w+\s+){0,3}?(?:instrucciones|instruções|instrucoes|reglas|regras|indicaciones|órdenes|istruzioni|"
    r"regole|indicazioni)"
    r"|(?:ignore[zr]?|oublie[zr]?|n[ée]glige[zr]?)\s+(?:toutes?\s+)?(?:les|tes|vos|ces)\s+(?:\w+\s+)?"
    r"(?:instructions|consignes|règles|directives)"
    r"|(?:ignorier\w*|vergiss\w*|missacht\w*|übergeh\w*)\s+(?:\w+\s+){0,3}?\w*(?:anweisungen|instruktionen|"
    r"regeln|vorgaben|befehle|richtlinien|system-?prompt)"
    r"|(?:negeer|vergeet)\s+(?:\w+\s+){0,3}?(?:instructies|regels|opdrachten|richtlijnen)"
    r"|(?:игнорир\w*|проигнорир\w*|забудь\w*|не обращай внимания на)\s+(?:\w+\s+){0,3}?"
    r"(?:инструкци\w*|правил\w*|указани\w*|промпт\w*)"
    r"|(?:zignoruj|ignoruj|zapomnij)\s+(?:\w+\s+){0,3}?(?:instrukcje|polecenia|zasady|reguły)"
    r"|(?:talimatları|kuralları)\s+(?:\w+\s+){0,2}?(?:yok say|görmezden gel|unut)"
    r"|(?:忽略|无视|忘记|忽视|不要理会|無視)[^。！？\n]{0,14}(?:指令|指示|说明|規則|规则|提示|要求|命令)"
    r"|(?:指示|命令|ルール|プロンプト)[^。\n]{0,12}(?:無視|忘れ)"
    r"|(?:지시|명령|규칙|지침)[^.\n]{0,12}(?:무시|잊어)"
)
# Own corrections in other languages ("ignora mi último mensaje", "ignoriere meine letzte Nachricht").
_NEW_INSTRUCTIONS = re.compile(
    r"\bnew (?:instructions?|task|objective|orders|directive|rules?|policy)\s*[:\-]|^\s*override\s*:"
    r"|\byour (?:new|real|true|actual|only) (?:task|instructions?|goal|objective|purpose|job|role)\b"
    r"|\bfrom now on,? (?:you (?:will|are|must|shall|should|only|can|'ll|have)|you're)\b"
    r"|\binstead,? (?:you (?:will|must|should)|respond|reply|say|output|print|write)\b"
    r"|\b(?:updated|revised) (?:system )?instructions\b"
    r"|\byou (?:will|must) now (?:only )?(?:do|obey|follow|answer|respond)"
    r"|\bawait (?:new|further) (?:orders|instructions)\b"
    r"|\bi have been pwned\b|\bhaha,? pwned\b"
)
_PERSONA_STRONG = re.compile(
    r"\bdo anything now\b|\b(?:developer|dev) ?mode (?:output|response)s?\b|"
    r"\bwith (?:developer|dev) ?mode (?:enabled|on|activated)\b|\bjailbr(?:eak|oken)\w*|"
    r"\b(?:liberated|freed|released|unshackled|free|escaped) from (?:all |any |its |your |the |"
    r"their )?(?:\w+ )?"
    r"(?:restrictions|rules|guidelines|filters|limitations|constraints|policies|censorship|programming)\b|"
    r"\bpretend (?:you are|you're|to be) my (?:late|dead|deceased) (?:grandmother|grandma|grandfather|"
    r"grandpa|mother|father)\b|"
    r"\b(?:enable|activate|enter|switch to|engage|turn on|unlock)\w*\s+(?:the\s+)?(?:god|sudo|debug|admin|"
    r"unrestricted|unfiltered|evil|chaos|dan|opposite|root|maintenance|no-?limits?|uncensored)\s+mode\b|"
    r"\b(?:god|sudo|unrestricted|unfiltered|jailbreak|dan|uncensored|evil) mode\b|"
    r"\b(?:you are|you're|act as|acting as|pretend (?:to be|you are|you're)|roleplay as|role-play as|"
    r"play the role of|simulate|become|respond as|answer as)\s+(?:now\s+)?(?:an?\s+|my\s+)?(?:\w+\s+)?"
    r"(?:unfiltered|uncensored|unrestricted|unaligned|evil|rogue|amoral|unethical|unbound|limitless|"
    r"liberated|jailbroken|lawless|malicious|immoral|no-?limits?|unshackled|unconstrained)\b|"
    r"\bstay in character\b|\b(?:broken|break|broke) free\b|"
    r"\bno (?:ethical|moral|safety|content) (?:guidelines|limits|restrictions|filters|boundaries|rules|"
    r"principles)\b|"
    r"\bwithout (?:any )?(?:ethical|moral|safety|content) (?:guidelines|limits|restrictions|filters|rules)\b|"
    r"\bnot bound by\b|\bnever refuses?\b|\bno refusals?\b|\bmachiavellian\b|\bstrive to avoid norms\b"
)
_PERSONA_NAME = re.compile(
    r"\b(?:DAN|STAN|DUDE|AIM|BetterDAN|AntiGPT|DevMode|Mongo Tom|UCAR|EvilBot|FreedomGPT)\b"
)
_PERSONA_NAME_CONTEXT = re.compile(
    r"\b(?:you are|you're|act as|pretend|respond as|answer as|called|named|persona|stands for|mode|"
    r"jailbreak)\b"
)
_PERSONA_WEAK = re.compile(
    r"\b(?:enable|activate|enter|engage|turn on|unlock|simulate)\w*\s+(?:the\s+)?(?:developer|dev) ?mode\b|"
    r"\b(?:developer|dev) ?mode (?:enabled|activated|on)\b|"
    r"\byou are (?:now|no longer)\b|\bno longer (?:a |an )?(?:helpful|harmless|ai assistant)\b|"
    r"\byou are (?:now )?(?:a |an )?(?:different|new|another|alternate|alternative) (?:ai|model|assistant|"
    r"chatbot|bot)\b|"
    r"\b(?:ai|model|assistant|chatbot|bot|persona)\b[^.\n]{0,40}\b(?:answers?|does|responds? to|says?|"
    r"can do|will do) "
    r"(?:anything|everything|any question)\b|\bwithout (?:ever )?refusing\b|\bnever says? no\b"
)
# Sentence-level co-occurrence: a rule set that belongs to the model, and words that dismiss it.
_AI_RULES = re.compile(
    r"\b(?:(?:your|the model'?s|openai'?s?|anthropic'?s?|all|any)\s+(?:[\w'-]+\s+){0,2}?|(?:previous|"
    r"prior|earlier|preceding|above|"
    r"original|initial|old|system|safety|developer|built-?in)\s+(?:\w+\s+)?)(?:instructions?|rules|"
    r"guidelines|"
    r"directives|programming|system prompt|prompt|safety settings|restrictions|guardrails|filters|"
    r"configuration|content polic(?:y|ies)|policies|training|constraints|conditioning|principles)\b|"
    r"\b(?:instructions?|rules|guidelines|directives)\s+(?:from before|from earlier|above|you (?:were|"
    r"have been) "
    r"(?:given|told|programmed with)|you (?:received|got)|(?:you were |you are )?programmed with)\b"
)
_DISMISS = re.compile(
    r"\b(?:ignor(?:e|ing)|disregard(?:ing)?|forget|don'?t (?:count|apply|matter|exist)|do not (?:count|"
    r"apply|matter)|"
    r"no longer (?:apply|count|matter|valid|exist|in effect)|never existed|(?:are|is|were|was|been|got) "
    r"(?:cleared|reset|wiped|lifted|removed|disabled|suspended|revoked|void|deleted|erased|turned off|"
    r"deactivated|"
    r"written by mistake|a mistake|wrong|fake)|(?:configuration|settings|instructions|rules) (?:cleared|"
    r"reset|wiped|"
    r"removed|disabled|revoked)|throw (?:them|it|those) out|scrap (?:them|it|those)|overrid(?:e|ing)|"
    r"bypass(?:ing)?|"
    r"(?:don'?t|do not|stop|never) (?:obey|follow|listen to|comply with|respect)|(?:not|doesn'?t|"
    r"don'?t) care about|"
    r"escaped|broken out of|free (?:yourself|itself) from|turn(?:ing)? off|switch(?:ing)? off|"
    r"deactivat(?:e|ing)|"
    r"lift(?:ing)?|remov(?:e|ing)|suspend(?:ing)?|act (?:like|as if) [^.\n]{0,40} never existed)\b"
)
_OWN_RULES = re.compile(
    r"\b(?:i|we) (?:left|gave|wrote|sent|set|made)\b|\bmy (?:\w+ )?(?:instructions?|rules)\b"
)
_SENTENCE = re.compile(r"[^.!?\n;]+")
_DISOBEY = re.compile(
    r"\b(?:don'?t|do not|stop|no longer|never) (?:follow|obey|listen to|comply with) (?:them|those|these|"
    r"it)\b"
)
_PERSONA_MORE = re.compile(
    r"\b(?:an?|the) (?:\w+ )?(?:ai|model|assistant|chatbot|bot|version of (?:you|"
    r"yourself))\b[^.\n]{0,30}?\b(?:with|that has|"
    r"who has|having|without)\s+(?:no |zero |any )?(?:restrictions?|rules|limits|filters|guidelines|"
    r"censorship)\b|"
    r"\b(?:respond|answer|reply) (?:in two (?:ways|different ways)|twice)\b|\btwo (?:responses|answers|"
    r"replies)\b|"
    r"\bescaped (?:its|your|their) (?:programming|rules|restrictions|training)\b"
)
_EXFIL_YOUR = re.compile(
    r"\byour (?:\w+ )?(?:system prompt|system message|system instructions|(?:initial|hidden|original|secret|"
    r"internal|full|first|complete) (?:prompt|instructions|rules|system prompt)|pre-?prompt|meta-?prompt)\b|"
    r"\bthe (?:\w+ )?instructions you (?:received|were given|got|have been given)\b|\byour context window\b|"
    r"\b(?:everything|all|anything|what) you were given before\b"
)
_HIDDEN_NOTE = re.compile(r"\bhidden (?:note|instructions?|message|text|prompt)\b")
_EXFIL_QUESTION = re.compile(
    r"\b(?:what|which) (?:exact )?(?:instructions|rules|guidelines|prompt|directives) (?:did|were|have|has) "
    r"(?:you|your \w+|the \w+) (?:give|given|get|got|receive|received|told|tell|put|write|written)\b"
)
_NO_RULES = re.compile(
    r"\b(?:no|without|free of|free from|zero) (?:any )?(?:restrictions?|limits|limitations|filters|filtering|"
    r"rules|censorship|guidelines|guardrails|boundaries|morals)\b|\bwith no (?:rules|limits|filter)s?\b|"
    r"\bif you (?:had|have|didn't have) no (?:rules|guidelines|restrictions|limits|filters)\b|"
    r"\bno guidelines at all\b|"
    r"\bpretend (?:that )?there are no (?:rules|guidelines|restrictions)\b"
)
_HARMFUL = re.compile(
    r"\b(?:napalm|meth(?:amphetamine)?|nerve agent|explosives?|pipe bomb|bomb|malware|ransomware|keylogger|"
    r"fake id|hotwire|activation keys?|license keys?|credit card numbers|phishing (?:email|page|site)|"
    r"steal (?:a|someone'?s?)|pick (?:a|the) lock|weapon)\b"
)
_EXFIL_STRONG = re.compile(
    r"\b(?:repeat|print|reveal|show|output|display|tell|give|share|leak|dump|expose|disclose|spell out|"
    r"write out|recite|echo|copy|paste|list|return|send|quote|translate|summari[sz]e|read back|what (?:is|"
    r"are|were|was|did|does)|"
    r"how (?:is|are|were|was))\b[^.?!\n]{0,60}?\b(?:system\s*(?:prompt|message|instructions?)|"
    r"(?:initial|original|hidden|secret|internal|developer|pre-?|meta|starting|first|full)\s*"
    r"(?:prompt|instructions|system message)|instructions (?:you (?:were|have been|got)|given to you)|"
    r"(?:you|your creators|your developers|the developers?) (?:were )?(?:given|told|instructed|programmed)"
    r"|your (?:\w+ )?(?:instructions|prompt|rules|guidelines|directives|configuration|programming|"
    r"hidden rules|system rules))\b"
)
_EXFIL_CONTEXT_STRONG = re.compile(
    r"\babove this line\b|\b(?:beginning|start) of (?:this|the|our) (?:conversation|chat|prompt|context|"
    r"session)\b|"
    r"\bbefore (?:my|this) (?:first )?message\b|\bstarting with (?:the phrase |the words )?[\"'“‘]?you are\b|"
    r"\b(?:everything|all|the text|the words|what was written|what is written|"
    r"what's written) (?:written )?before (?:this|my)\b"
)
_EXFIL_CONTEXT_WEAK = re.compile(
    r"\b(?:everything|all|the text|the words|the content|words|text|anything)\s+(?:written\s+)?above\b|"
    r"\bverbatim\b|\bword for word\b|\bquote them exactly\b|\bone word per line\b|\b(?:copy|"
    r"paste) it here exactly\b|"
    r"\bincluding (?:any|all|the) instructions\b|\bin full\b"
)
_EXFIL_VERB = re.compile(
    r"\b(?:repeat|print|reveal|show|output|display|dump|leak|copy|spell|recite|echo|write|quote|list|paste|"
    r"tell|give|share|what)\b"
)
_EXFIL_HARD_VERB = re.compile(
    r"^(?:repeat|print|reveal|output|dump|leak|spell|recite|echo|expose|disclose|quote|write out|copy)"
)
_DECODE_FOLLOW = re.compile(
    r"\b(?:decode|decipher|unscramble|decrypt|base64|rot-?13|hex|reverse)\b[^.\n]{0,60}?\b(?:follow|execute|"
    r"obey|comply|do what|act on|carry out|run|perform|do it|answer it|apply it|and do)\b|"
    r"\b(?:follow|execute|obey|comply with|act on)\b[^.\n]{0,30}\b(?:rot-?13|base64|hex|encoded|decoded)\b|"
    r"\bdo what it says\b"
)
_MD_IMAGE = re.compile(
    r"!\[[^\]\n]{0,200}\]\(\s*<?(https?://[^)\s>]+)|<img\b[^>]*\bsrc\s*=\s*[\"']?(https?://[^\"'\s>]+)", _I
)
_MD_LINK = re.compile(r"(?<!!)\[[^\]\n]{0,200}\]\(\s*<?(https?://[^)\s>]+)")
_URL_PLACEHOLDER = re.compile(
    r"[?&#/][^=&#/]*=?[^&#]*(?:\{|\[|<|\$[a-z_{(]|%s|%7b|%5b|insert|(?:user|chat|conversation|session|"
    r"secret|password|token|api_?key|messages?|history|summary|data)(?:_[a-z]+)?\b[}\]>]?)",
    _I,
)
_URL_EXFIL_INSTRUCTION = re.compile(
    r"\b(?:append|include|add|insert|put|encode|embed|fill|replace|"
    r"followed by)\b[^\n]{0,100}?\b(?:conversation|chat|"
    r"history|previous messages|my messages|secret|password|api key|credentials|personal data|the user'?s|"
    r"user data)\b[^\n]{0,100}?\b(?:url|query string|query|link|image|parameter)\b|"
    r"\b(?:url|query string|link|image)\b[^\n]{0,100}?\bfollowed by\b[^\n]{0,60}?\b(?:chat|conversation|"
    r"history|"
    r"messages|secret|password|api key)\b|"
    r"\bwith (?:the |my |your |their )?(?:user'?s )?(?:session cookie|cookies?|session|tokens?|password|"
    r"api key|"
    r"conversation|chat history|credentials)\s+(?:appended|attached|added|included)\b"
)
_TOOL_SEND = re.compile(
    r"\b(?:send|forward|email|e-mail|post|upload|transfer|exfiltrate|leak|copy|sync|share|export|mail)\w*\s+"
    r"(?:[\w'’]+\s+){0,5}?(?:emails?|messages|files?|documents?|data|contacts?|contact list|credentials|"
    r"passwords?|api keys?|secrets?|tokens?|conversation|chat history|history|database|records|inbox|thread|"
    r"calendar|contents|id_rsa|ssh keys?)\b[^.\n]{0,80}?(?:\bto\b|\bvia\b|\bwith\b)\s+(?:\S+@\S+|"
    r"\S*https?://|ftp://|"
    r"webhook|an? (?:external|outside|different|third-party)|this (?:address|url|server|endpoint)|partners?@|"
    r"[\w.\-]+\.(?:example|com|net|org|io|sh))"
)
_TOOL_STEALTH = re.compile(
    r"\bwithout (?:asking|telling|notifying|informing|confirmation|confirming|permission|"
    r"(?:the )?user'?s? (?:knowledge|consent|approval))|\b(?:do not|don'?t|never) (?:tell|inform|notify|"
    r"alert|"
    r"mention (?:this|it)(?: to)?|ask(?: me)?(?: to)? (?:for )?confirm\w*|ask (?:questions|for permission))"
    r"(?: (?:the|to the) user)?\b|\bdo not mention this\b|\bno confirmation (?:needed|required|necessary)\b|"
    r"\bskip (?:the )?confirmation\b|\bsilently\b|\bcovertly\b|\bsecretly\b|"
    r"\b(?:tell|say to|inform) (?:me|the user|them) (?:that )?(?:it was|it is|it's|everything is|"
    r"everything was) "
    r"(?:a |an )?(?:routine|normal|fine|ok|okay|nothing|harmless)|\bthen say everything is fine\b"
)
_TOOL_DANGER = re.compile(
    r"\b(?:call|invoke|use|run|execute|trigger)\b[^.\n]{0,30}?\b(?:send_email|delete_\w+|transfer_\w+|"
    r"execute_\w+|run_\w+|shell|exec|bash|terminal|payments?\.\w+|issue_refund|write_file|http_request|"
    r"fetch_url|filesystem|email|payment|database|refund|browser|code execution) ?(?:tool|function|plugin|"
    r"command)?\b|"
    r"/etc/(?:passwd|shadow)\b|~/\.ssh\b|\bid_rsa\b|\bos\.system\(|"
    r"\bcancel (?:all|every)\b[^.\n]{0,30}\b(?:meetings|orders|subscriptions|bookings|appointments|"
    r"payments)\b|"
    r"\b(?:curl|wget)\b[^|\n]{0,120}\|\s*(?:ba|z)?sh\b|\brm -rf /(?:\s|$|\*)|\bdrop table\b|"
    r"\b(?:delete|wipe|erase|destroy)\s+(?:all\s+)?(?:the\s+)?(?:user'?s\s+)?(?:files|database|records|"
    r"backups|repository|emails|accounts?)\b|\btransfer_funds\b|\bwire money\b|"
    r"\b(?:transfer|wire|send|pay)\s+\$?\d[\d,.]*\s*(?:eur|usd|\$|€)?\s*to\b"
)
_ROLE_MARKERS = re.compile(
    r"<\|(?:im_start|im_end|system|user|assistant|endoftext|start_header_id|end_header_id|eot_id)\|>|"
    r"\[/?inst\]|<</?sys>>|</?(?:system[_\- ]?(?:prompt|message|instructions?)|sys|admin|developer)>|\]\]>|"
    r"^\s*system\s*:|^\s*#{2,}\s*(?:system|instruction)s?\s*(?:override)?\s*#*\s*:?\s*$|"
    r"\bbegin system prompt\b|\bend of (?:user )?input\b|</?system>|\[system\]|\bsystem override\b|"
    r"\bsystem notice\b|\badmin(?:istrator)? override\b|</document>|"
    r"\b(?:important|urgent|new|priority) instructions? for (?:the |any )?(?:ai|assistant|model|llm|"
    r"chatbot|agent)",
    re.MULTILINE,
)
_ADDRESSED_TO_AI = re.compile(
    r"\b(?:if|when) you are an? (?:ai|llm|language model|assistant|chatbot|agent|gpt)\b|"
    r"\battention,? (?:the |any |all )?(?:ai|llm|assistant|chatbot|language model|agent|model)s?\b|"
    r"\b(?:attention|note|message|instructions?|memo)(?: to| for) (?:the |any |all )?(?:ai|llm|assistant|"
    r"chatbot|"
    r"language model|agent|gpt|claude|model)s?\b|"
    r"\b(?:ai|assistant|chatbot|agent|language model|llm)s?\s*(?:reading|processing|summari[sz]ing|"
    r"parsing)\s+"
    r"(?:this|these)\b|\bdear (?:ai|assistant|chatbot|llm|model)\b|"
    r"(?:^|[.!?>:\-]\s*|p\.s\.\s*)(?:ai|assistant|hey ai|ai agent|ai assistant|attention model)\s*[,:]|"
    r"\binstructions for the (?:ai|assistant)\b|\bthe assistant (?:must|should|is now|will)\b",
    re.MULTILINE,
)
_META = re.compile(
    r"prompt[- ]?injections?|jailbreak (?:attempts?|prompts?|attacks?|detection|techniques?|examples?)|"
    r"jailbreaks\b|"
    r"injection attacks?|red[- ]?team|security (?:team|training|researchers?|review|advisory|awareness|"
    r"policy)|"
    r"\bowasp\b|\bllm01\b|classifier|detection|detector|moderation|\bregex\b|attackers?|"
    r"phrases like|words like|text like|false positives?|data ?set|\bpaper\b|blog post|article|"
    r"(?:detect|prevent|defend|mitigate|block|flag)s? (?:against )?(?:it|this|them|such|these|phrases|"
    r"prompts|attacks)"
)
_QUOTED = re.compile(
    r"\"[^\"\n]{1,400}\"|“[^”\n]{1,400}”|«[^»\n]{1,400}»|`[^`\n]{1,400}`|(?<!\w)'[^'\n]{3,400}'(?!\w)|"
    r"‘[^’\n]{3,400}’"
)

# ---------------------------------------------------------------------------------------------
# Unicode

_TAG_RANGE = (0xE0000, 0xE007F)
_ZERO_WIDTH = frozenset("\u200b\u2060\u2061\u2062\u2063\u2064\u180e\ufeff")
_JOINERS = frozenset("\u200c\u200d")
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_INVISIBLE = _ZERO_WIDTH | _JOINERS | _BIDI | {"\u200e", "\u200f", "\u00ad"}
_STRIP_INVISIBLE = {ord(c): None for c in _INVISIBLE}
_MIXED_SCRIPT = re.compile(r"[a-z][а-яёіїєґ]|[а-яёіїєґ][a-z]")
_CONFUSABLES = str.maketrans(
    "аеорсхуіїјѕԁһкмнтвԛԝɡαεορτυνκιχ",
    "aeopcxyiijsdhkmhtbqwgaeoptuvkix",
)
_SPACED_LETTERS = re.compile(r"(?:\b[a-z][ .\-_*]{1,3}){6,}[a-z]\b")
_BETWEEN_LETTERS = re.compile(r"(?<=\b[a-z])[ .\-_*](?=[a-z]\b)")
_NOT_LETTERS = re.compile(r"[^a-z]+")
_SQUASHED = re.compile(
    r"(?:ignore|disregard|forget|bypass|override)(?:all|any|the|your|of)*(?:previous|prior|above|earlier|system)?"
    r"(?:instructions|rules|guidelines|prompt)|(?:reveal|print|show|repeat)(?:me)?(?:your|the)"
    r"(?:system|initial|hidden)?(?:prompt|instructions)"
)
_LEET = str.maketrans("013457@$!|", "oieastasil")
_LEET_WORD = re.compile(r"(?=[a-z0-9]*[a-z])(?=[a-z0-9]*[013457])[a-z013457]{3,}")

# Encoded blobs
_B64 = re.compile(r"(?<![A-Za-z0-9+/=_\-])[A-Za-z0-9+/_\-]{20,}={0,2}(?![A-Za-z0-9+/=_\-])")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[\s:]?){12,}(?![0-9A-Fa-f])")
_ROT_HINT = re.compile(r"rot-?13|caesar|cipher|decode|decipher|unscramble|backwards|reversed?\b", _I)
_SPACE = re.compile(r"[^\S\n]+")
_MAX_BLOBS = 8
_MAX_BLOB_CHARS = 8192


def _normalise(text: str) -> str:
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_STRIP_INVISIBLE).replace("’", "'")
    return text.lower()


def _printable_text(raw: bytes) -> str | None:
    """The bytes as text if they are mostly printable words, else None."""
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(decoded) < 8 or decoded.count(" ") < 2:
        return None
    printable = sum(1 for c in decoded if c.isprintable() or c in "\n\t")
    return decoded if printable >= 0.95 * len(decoded) else None


def _decoded_blobs(text: str) -> Iterable[str]:
    count = 0
    for m in _B64.finditer(text):
        blob = m.group()
        if count >= _MAX_BLOBS:
            return
        if blob.isalpha() or blob.isdigit() or len(blob) > _MAX_BLOB_CHARS:
            continue  # a word, a number, or an image / file (instructions are short)
        count += 1
        padded = blob + "=" * (-len(blob) % 4)
        try:
            raw = base64.b64decode(padded, altchars=b"-_" if ("-" in blob or "_" in blob) else None)
        except (binascii.Error, ValueError):
            continue
        decoded = _printable_text(raw)
        if decoded:
            yield decoded
    for m in _HEX.finditer(text):
        if count >= _MAX_BLOBS:
            return
        count += 1
        digits = re.sub(r"[\s:]", "", m.group())
        if len(digits) % 2:
            digits = digits[:-1]
        decoded = _printable_text(bytes.fromhex(digits))
        if decoded:
            yield decoded


# ---------------------------------------------------------------------------------------------
# gating: every rule names anchor words, one of which each of its matches must contain; a
# rule runs only in windows around the anchors present, so typical traffic runs few of them.

_OWN_INSTRUCTIONS_MULTI = re.compile(
    r"\b(?:mi|mis|mon|ma|mes|meine?n?|mijn|il mio|la mia|minha|meu|мо[йеию]\w*)\b\s+(?:\w+\s+)?"
    r"(?:último|última|dernier|dernière|letzte\w*|laatste|ultimo|ultima|последн\w*)?"
)
# "why does eslint ignore the rules", "the driver ignored the instructions": not a command.
_NOT_IMPERATIVE = re.compile(
    r"\b(?:does|did|doesn't|didn't|do|it|he|she|they|we|i|which|who|that|people|users?|models?|bots?|"
    r"chatbots?|always|sometimes|often|never|eslint|git|driver|app|browser|compiler|why|will|would|"
    r"how to)\s+$"
)
_RULE_WORDS = re.compile(r"\b(?:instructions?|rules|guidelines|system prompt|directives|policy)\b")
_THIRD_PARTY = re.compile(
    r"\b(?:their|its|his|her|a|an)\s+(?:\w+\s+)?(?:system\s*prompt|instructions|prompt)\b"
)
_PUNCT = str.maketrans({c: " " for c in '!"#$%&()*+,./:;<=>?@[\\]^`{|}~’“”«»…'})
_WINDOW = 120
_TLDS = (".com", ".net", ".org", ".io", ".sh", ".example", ".site", ".xyz", ".ru", ".co")


def _w(words: str) -> frozenset[str]:
    return frozenset(words.split())


_A_NOUNS = _w(
    "instruction instructions prompt prompts rules directions directives guidelines guidance constraints "
    "restrictions guardrails policy policies programming commands orders conditioning training filters "
    "limitations context safeguards protocol protocols ethics morals principles boundaries limits system "
    "settings configuration"
)
_A_VERBS = _w(
    "ignore ignoring disregard forget skip bypass override overrule overlook abandon discard neglect "
    "dismiss drop "
    "aside attention follow following cancel erase clear throw void nullify circumvent evade break"
)
_A_PHRASES = _w(
    "told given instructed programmed said prior before preceding above user user's operator developer admin "
    "company configured"
)
_A_STATE = _w(
    "void null obsolete outdated revoked cancelled canceled deprecated invalid superseded overridden "
    "suspended "
    "lifted disabled apply applies supersede supersedes overrides replaces fresh wrong irrelevant test"
)
_A_WEAK = _w("above everything told said given whatever preceding that")
_A_RULES = _w(
    "instruction instructions rules guidelines directives programming prompt restrictions guardrails filters "
    "configuration policies policy training constraints conditioning principles settings"
)
_A_DISMISS = _w(
    "ignore ignoring disregard forget count apply matter exist existed cleared reset wiped lifted removed "
    "disabled suspended revoked void deleted erased deactivated mistake wrong fake throw scrap override "
    "overriding bypass bypassing obey follow listen comply respect care escaped broken free turn turning "
    "switch "
    "switching deactivate deactivating lift lifting remove removing suspend suspending"
)
_A_MULTI = _w(
    "instrucciones instruções instrucoes reglas regras indicaciones órdenes istruzioni regole indicazioni "
    "instructions consignes règles directives anweisungen instruktionen regeln vorgaben befehle richtlinien "
    "system-prompt instructies regels opdrachten richtlijnen instrukcje polecenia zasady reguły talimatları "
    "kuralları ignora ignore ignorez ignorer ignorar ignoriere ignorieren ignoriert olvida olvide olvidar "
    "descarta omite desconsidere esqueça esqueca oublie oubliez oublier négligez vergiss vergessen missachte "
    "negeer vergeet zignoruj ignoruj zapomnij dimentica"
)
_A_NEW = _w("new override task objective goal purpose now instead updated revised await pwned")
_A_PERSONA = _w(
    "anything mode devmode jailbreak jailbroken jailbreaking jailbreaks jailbreaked liberated freed released "
    "unshackled free escaped grandmother grandma grandfather grandpa unfiltered uncensored unrestricted "
    "unaligned evil rogue amoral unethical unbound limitless lawless malicious immoral no-limit no-limits "
    "unconstrained character ethical moral safety content bound refuses refuse refusals refusal "
    "machiavellian "
    "strive"
)
_A_PERSONA_NAME = _w("dan stan dude aim betterdan antigpt devmode mongo ucar evilbot freedomgpt")
_A_PERSONA_WEAK = _w(
    "now longer different another alternate alternative anything everything refusing never mode devmode"
)
_A_NO_RULES = _w(
    "restriction restrictions limits limitations filters filtering rules censorship guidelines guardrails "
    "boundaries morals filter limit"
)
_A_HARMFUL = _w(
    "napalm meth methamphetamine nerve explosive explosives bomb malware ransomware keylogger fake hotwire "
    "activation license credit phishing steal pick weapon"
)
_A_EXFIL = _w(
    "system prompt instructions rules guidelines directives configuration programming given told instructed "
    "programmed pre-prompt preprompt message"
)
_A_EXFIL_VERBS = _w(
    "repeat print reveal show output display dump leak copy spell recite echo write quote list paste "
    "tell give share what"
)
_A_EXFIL_CTX = _w("line beginning start message starting before")
_A_EXFIL_WEAK = _w("above verbatim word quote one copy including full")
_A_SEND_VERBS = _w(
    "send sends sending forward forwarding email e-mail post upload uploading transfer exfiltrate leak copy "
    "sync share export mail"
)
# The text names somewhere outside to send things (an address, a URL, a domain, "external").
_ADDRESS = "\x00address"
_A_SEND_TARGETS = _w(f"{_ADDRESS} external outside third-party webhook attacker endpoint server")
_A_DANGER = _w(
    "call invoke execute trigger curl wget rm drop delete wipe erase destroy transfer_funds wire "
    "transfer pay "
    "cancel passwd shadow ssh id_rsa shell exec bash terminal payment payments issue_refund write_file "
    "http_request "
    "fetch_url filesystem database refund browser send_email delete_ transfer_ execute_ run_ os"
)
_A_STEALTH = _w(
    "without tell inform notify alert mention ask silently covertly secretly confirmation confirm say"
)
_A_ROLE = _w(
    "im_start im_end system user assistant endoftext start_header_id end_header_id eot_id inst sys begin end "
    "override notice admin administrator document instruction instructions system_prompt developer"
)
_A_AI = _w("ai llm llms model models assistant assistants chatbot chatbots agent agents gpt claude language")
_A_PERSONA_MORE = _w(
    "restriction restrictions rules limits filters guidelines censorship twice ways responses answers "
    "replies escaped"
)
_A_EXFIL_YOUR = _w(
    "prompt message instructions rules pre-prompt preprompt meta-prompt metaprompt given system"
)
_A_QUESTION = _w("what which")
_A_DISOBEY = _w("follow obey listen comply")
_A_META = _w(
    "prompt injection injections jailbreak jailbreaks red red-team redteam security owasp llm01 classifier "
    "detection detector moderation regex attacker attackers phrases words text false positive positives "
    "dataset data paper blog article detect detects prevent defend mitigate block flag"
)
_A_DECODE = _w("decode decipher unscramble decrypt base64 rot13 rot-13 hex reverse encoded decoded")
_A_FOLLOW = _w("follow execute obey comply do act carry run perform answer apply says")
_A_URL_EXFIL = _w(
    "append include add insert put encode embed fill replace followed appended attached added included"
)
_A_ROT = _w("rot13 rot-13 caesar cipher decipher unscramble backwards reversed reverse")


class _Text:
    """A normalised text, its word set, and windows around anchor words."""

    __slots__ = ("_chunks", "_meta", "_quoted", "norm", "words")

    def __init__(self, norm: str, meta: bool | None = None) -> None:
        self.norm = norm
        words = set(norm.translate(_PUNCT).split())
        words.update(w[: w.index("_") + 1] for w in [w for w in words if "_" in w])
        if "@" in norm or "://" in norm or any(tld in norm for tld in _TLDS):
            words.add(_ADDRESS)
        self.words = words
        self._meta = meta
        self._chunks: dict[frozenset[str], list[tuple[int, int, str]]] = {}
        self._quoted: dict[tuple[int, int], list[tuple[int, int]]] = {}

    @property
    def meta(self) -> bool:
        """Whether the text is about attacks or security (computed on first use: after a hit)."""
        if self._meta is None:
            self._meta = self.has(_A_META) and any(
                _META.search(chunk) for _a, _b, chunk in self.chunks(_A_META)
            )
        return self._meta

    def has(self, anchors: frozenset[str]) -> bool:
        return not anchors.isdisjoint(self.words)

    def chunks(self, anchors: frozenset[str]) -> list[tuple[int, int, str]]:
        """``(start, end, text)`` of the merged windows around every anchor word present."""
        cached = self._chunks.get(anchors)
        if cached is not None:
            return cached
        present = anchors & self.words
        norm = self.norm
        n = len(norm)
        if not present:
            out: list[tuple[int, int, str]] = []
        elif n <= 2 * _WINDOW:
            out = [(0, n, norm)]
        else:
            spans = []
            for word in present:
                size = len(word)
                open_end = word.endswith("_")
                i = norm.find(word)
                while i != -1:
                    j = i + size
                    # whole words only: "new" opens no window in "renewal"
                    if (i == 0 or not norm[i - 1].isalnum()) and (
                        open_end or j >= n or not norm[j].isalnum()
                    ):
                        spans.append((max(0, i - _WINDOW), min(n, j + _WINDOW)))
                    i = norm.find(word, j)
            spans.sort()
            merged: list[tuple[int, int]] = []
            for a, b in spans:
                if merged and a <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], b))
                else:
                    merged.append((a, b))
            out = [(a, b, norm[a:b]) for a, b in merged]
        self._chunks[anchors] = out
        return out

    def matches(
        self, pattern: re.Pattern[str], anchors: frozenset[str], also: frozenset[str] | None = None
    ) -> Iterable[tuple[re.Match[str], int, int]]:
        """Matches of ``pattern`` in the windows around ``anchors``, if ``also`` words occur too."""
        if also is not None and also.isdisjoint(self.words):
            return
        for a, b, chunk in self.chunks(anchors):
            for m in pattern.finditer(chunk):
                yield m, a, b

    def discount(self, m: re.Match[str], a: int, b: int) -> float:
        """Less weight for a hit in a text that is about attacks, least inside quotes."""
        if not self.meta:
            return 1.0
        quoted = self._quoted.get((a, b))
        if quoted is None:
            quoted = self._quoted[(a, b)] = [(q.start(), q.end()) for q in _QUOTED.finditer(m.string)]
        start, end = m.start(), m.end()
        return 0.25 if any(qa <= start and end <= qb for qa, qb in quoted) else 0.6


@dataclass(slots=True)
class _Hits:
    best: dict[str, Signal]

    def add(self, name: str, weight: float, evidence: str) -> None:
        current = self.best.get(name)
        if current is None or weight > current.weight:
            self.best[name] = Signal(name, weight, evidence.strip()[:120])


def _not_imperative(chunk: str, start: int) -> bool:
    return _NOT_IMPERATIVE.search(chunk, max(0, start - 24), start) is not None


# Rules whose every match counts: (signal, pattern, weight for user text, weight for retrieved
# text, anchor words that open windows, words of which one must also occur or None).
_Rule = tuple[str, re.Pattern[str], float, float, frozenset[str], frozenset[str] | None]
_RULES: tuple[_Rule, ...] = (
    ("override", _OVERRIDE_PHRASES, 0.85, 0.85, _A_VERBS, _A_PHRASES),
    ("override", _OVERRIDE_STATE, 0.85, 0.85, _A_STATE, None),
    ("override", _DISOBEY, 0.6, 0.6, _A_DISOBEY, _A_RULES),
    ("new_instructions", _NEW_INSTRUCTIONS, 0.45, 0.45, _A_NEW, None),
    ("persona", _PERSONA_STRONG, 0.75, 0.75, _A_PERSONA, None),
    ("persona_weak", _PERSONA_WEAK, 0.3, 0.3, _A_PERSONA_WEAK, None),
    ("persona_more", _PERSONA_MORE, 0.55, 0.55, _A_PERSONA_MORE, None),
    ("no_rules", _NO_RULES, 0.45, 0.45, _A_NO_RULES, None),
    ("harmful_request", _HARMFUL, 0.35, 0.35, _A_HARMFUL, None),
    ("exfiltration", _EXFIL_YOUR, 0.75, 0.75, _A_EXFIL_YOUR, None),
    ("exfiltration", _EXFIL_QUESTION, 0.7, 0.7, _A_QUESTION, _A_RULES),
    ("exfiltration_context", _EXFIL_CONTEXT_STRONG, 0.75, 0.75, _A_EXFIL_CTX, _A_EXFIL_VERBS),
    ("hidden_note", _HIDDEN_NOTE, 0.0, 0.4, _w("hidden"), None),
    ("tool_abuse", _TOOL_SEND, 0.6, 0.6, _A_SEND_VERBS, _A_SEND_TARGETS),
    ("tool_danger", _TOOL_DANGER, 0.3, 0.5, _A_DANGER, None),
    ("stealth", _TOOL_STEALTH, 0.4, 0.55, _A_STEALTH, None),
    ("addressed_to_ai", _ADDRESSED_TO_AI, 0.3, 0.6, _A_AI, None),
)


def _core(text: str, t: _Text, hits: _Hits, source: str) -> None:
    """The language signals over one text (the original or a decoded one)."""
    retrieved = source == "retrieved"
    for name, pattern, user_weight, retrieved_weight, anchors, also in _RULES:
        weight = retrieved_weight if retrieved else user_weight
        if weight:
            for m, a, b in t.matches(pattern, anchors, also):
                hits.add(name, weight * t.discount(m, a, b), m.group())
    _override_signals(t, hits)
    _persona_name_signal(text, t, hits)
    _exfiltration_signals(t, hits)
    _role_marker_signal(t, hits)
    # An action the user is not to know about is worse than either half.
    if "stealth" in hits.best and ("tool_danger" in hits.best or "tool_abuse" in hits.best):
        hits.add("stealth_action", 0.3, hits.best["stealth"].evidence)


def _override_signals(t: _Text, hits: _Hits) -> None:
    for m, a, b in t.matches(_OVERRIDE, _A_VERBS, _A_NOUNS):
        if not _OWN_INSTRUCTIONS.search(m.group()) and not _not_imperative(m.string, m.start()):
            hits.add("override", 0.9 * t.discount(m, a, b), m.group())
    for m, a, b in t.matches(_OVERRIDE_WEAK, _A_VERBS, _A_WEAK):
        if not _not_imperative(m.string, m.start()):
            hits.add("override_weak", 0.55 * t.discount(m, a, b), m.group())
    if not t.norm.isascii() or t.has(_A_MULTI):
        anchors = _A_MULTI if t.norm.isascii() else frozenset(t.words)
        for m, a, b in t.matches(_OVERRIDE_MULTI, anchors):
            if not _OWN_INSTRUCTIONS_MULTI.search(m.group()):
                hits.add("override", 0.9 * t.discount(m, a, b), m.group())
    # A rule set that belongs to the model and a word dismissing it, in one sentence.
    for a, b, chunk in t.chunks(_A_RULES) if t.has(_A_DISMISS) else ():
        for sentence in _SENTENCE.finditer(chunk):
            part = sentence.group()
            if _AI_RULES.search(part) and not _OWN_RULES.search(part):
                dismiss = _DISMISS.search(part)
                if dismiss and not _not_imperative(part, dismiss.start()):
                    hits.add("override", 0.8 * t.discount(sentence, a, b), part)


def _persona_name_signal(text: str, t: _Text, hits: _Hits) -> None:
    if t.has(_A_PERSONA_NAME):
        name = _PERSONA_NAME.search(text)
        if name and _PERSONA_NAME_CONTEXT.search(t.norm):
            hits.add("persona", 0.75 * (0.3 if t.meta else 1.0), name.group())


def _exfiltration_signals(t: _Text, hits: _Hits) -> None:
    for m, a, b in t.matches(_EXFIL_STRONG, _A_EXFIL):
        group = m.group()
        if _not_imperative(m.string, m.start()) or _THIRD_PARTY.search(group):
            continue
        if "system" in group or "prompt" in group or "hidden" in group or "initial" in group:
            weight = 0.8
        elif _EXFIL_HARD_VERB.match(group):
            weight = 0.75
        else:
            weight = 0.5
        hits.add("exfiltration", weight * t.discount(m, a, b), group)
    weak = list(t.matches(_EXFIL_CONTEXT_WEAK, _A_EXFIL_WEAK, _A_EXFIL_VERBS))
    if weak:
        m, a, b = weak[0]
        weight = 0.5 if len({w[0].group() for w in weak}) == 1 else 0.75
        evidence = " … ".join(w[0].group() for w in weak)
        hits.add("exfiltration_context_weak", weight * t.discount(m, a, b), evidence)


def _role_marker_signal(t: _Text, hits: _Hits) -> None:
    markers = list(t.matches(_ROLE_MARKERS, _A_ROLE))
    if "]]>" in t.norm:
        markers.extend((m, 0, len(t.norm)) for m in _ROLE_MARKERS.finditer(t.norm) if m.group() == "]]>")
    if markers:
        distinct = {m.group().strip("<>|[]/ #:\n") for m, _a, _b in markers}
        m, a, b = markers[0]
        weight = (0.6 if len(distinct) == 1 else 0.8) * t.discount(m, a, b)
        hits.add("role_markers", weight, " … ".join(sorted(distinct)))


def injection_score(text: str, source: str = "user") -> InjectionResult:
    """The injection score of one text and the signals that fired.

    ``source`` is ``"user"`` for what an end user typed, ``"retrieved"`` for tool results and
    retrieved documents, where text addressed to the model is itself suspicious.
    """
    hits = _Hits({})
    norm = _normalise(text)
    t = _Text(norm)
    _core(text, t, hits, source)

    if not text.isascii():
        _unicode_signals(text, t, hits, source)

    # Letter-spaced and leetspeak obfuscation.
    words = t.words
    if sum(1 for w in words if len(w) == 1) >= 5 and _SPACED_LETTERS.search(norm):
        # Runs of two or more blanks separate words; single separators sit between letters.
        segments = re.split(r"\s{2,}", norm)
        squashed = " ".join(_BETWEEN_LETTERS.sub("", segment) for segment in segments)
        _decoded_signals(squashed, hits, source, "spaced letters")
        for spaced in _SPACED_LETTERS.finditer(norm):
            glued = _SQUASHED.search(_NOT_LETTERS.sub("", spaced.group()))
            if glued:
                hits.add("encoded", 0.85, f"spaced letters: {glued.group()}")
    leet = [w for w in words if not w.isalpha() and not w.isdigit() and _LEET_WORD.fullmatch(w)]
    if len(leet) >= 3:
        _decoded_signals(norm.translate(_LEET), hits, source, "leetspeak")

    # Encoded payloads.
    decoded_any = False
    if any(len(w) >= 20 for w in words) or (t.has(_A_DECODE) and "hex" in words):
        for decoded in _decoded_blobs(text):
            decoded_any = True
            _decoded_signals(decoded, hits, source, "base64/hex")
    if t.has(_A_ROT):
        _decoded_signals(codecs.decode(norm, "rot13"), hits, source, "rot13")
        _decoded_signals(norm[::-1], hits, source, "reversed")
    for follow, _a, _b in t.matches(_DECODE_FOLLOW, _A_DECODE, _A_FOLLOW):
        weight = 0.45 if decoded_any or "rot" in follow.group() else 0.3
        hits.add("decode_and_follow", weight, follow.group())

    # Exfiltration through markdown images and links.
    if "http" in norm:
        _link_signals(t, hits, source)

    return _result(hits)


def _decoded_signals(decoded: str, hits: _Hits, source: str, how: str) -> None:
    """Scores a decoded payload: any instruction found in it counts as ``encoded``."""
    inner = _Hits({})
    t = _Text(_normalise(decoded), meta=False)
    _core(decoded, t, inner, source)
    strongest = max(inner.best.values(), key=lambda s: s.weight, default=None)
    if strongest is not None and strongest.weight >= 0.45:
        hits.add("encoded", min(0.9, strongest.weight + 0.1), f"{how}: {strongest.evidence}")


_TAGS = re.compile("[\U000e0000-\U000e007f]")
_BIDI_RE = re.compile("[\u202a-\u202e\u2066-\u2069]")
_ZERO_WIDTH_RE = re.compile("[\u200b\u2060-\u2064\u180e\ufeff]")


def _unicode_signals(text: str, t: _Text, hits: _Hits, source: str) -> None:
    tags = _TAGS.findall(text)
    if tags:
        hidden = "".join(chr(ord(c) - 0xE0000) for c in tags if 0x20 <= ord(c) - 0xE0000 < 0x7F)
        hits.add("invisible", 0.9 if len(hidden) >= 3 else 0.5, f"{len(tags)} tag characters: {hidden[:60]}")
        if hidden:
            _decoded_signals(hidden, hits, source, "tag characters")
    bidi = _BIDI_RE.findall(text)
    if bidi:
        overrides = "\u202d" in bidi or "\u202e" in bidi
        hits.add(
            "invisible", 0.7 if overrides or len(bidi) >= 3 else 0.5, f"{len(bidi)} bidi control characters"
        )
    zero_width = [m.start() for m in _ZERO_WIDTH_RE.finditer(text) if m.start() > 0 or text[0] != "\ufeff"]
    if zero_width:
        inside_words = sum(
            1 for i in zero_width if 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha()
        )
        if inside_words:
            hits.add(
                "invisible",
                0.5 if inside_words >= 2 else 0.3,
                f"{inside_words} zero-width characters in words",
            )
        elif len(zero_width) >= 3:
            hits.add("invisible", 0.3, f"{len(zero_width)} zero-width characters")
    if _MIXED_SCRIPT.search(t.norm):
        hits.add("invisible", 0.4, "mixed-script words (homoglyphs)")
        folded = _Text(t.norm.translate(_CONFUSABLES), meta=t.meta)
        inner = _Hits({})
        _core(folded.norm, folded, inner, source)
        for signal in inner.best.values():
            hits.add(signal.name, signal.weight, signal.evidence)


def _link_signals(t: _Text, hits: _Hits, source: str) -> None:
    norm = t.norm
    if "![" in norm or "<img" in norm:
        for m in _MD_IMAGE.finditer(norm):
            url = m.group(1) or m.group(2) or ""
            if _URL_PLACEHOLDER.search(url):
                hits.add("markdown_exfil", 0.8, m.group())
    if "](" in norm:
        for m in _MD_LINK.finditer(norm):
            url = m.group(1)
            if _URL_PLACEHOLDER.search(url) and any(c in url for c in "{<$"):
                hits.add("markdown_exfil", 0.7 if source == "retrieved" else 0.5, m.group())
    for m, _a, _b in t.matches(_URL_EXFIL_INSTRUCTION, _A_URL_EXFIL):
        hits.add("markdown_exfil", 0.7, m.group())


def _result(hits: _Hits) -> InjectionResult:
    signals = tuple(sorted((s for s in hits.best.values() if s.weight > 0.0), key=lambda s: -s.weight))
    remaining = 1.0
    for signal in signals:
        remaining *= 1.0 - min(signal.weight, 0.99)
    return InjectionResult(round(1.0 - remaining, 6), signals)
