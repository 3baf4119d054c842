"""What a value assigned to a secret-sounding key must look like to be reported as a secret.

The keyword rule (DJ-SEC-003) sees ``password: <value>`` and ``api_key = "<value>"``; most
such values in real projects are not secrets: booleans and nulls (``GenerateSecret: false``,
``"apiKey": null``), numbers, type annotations (``password: string``), references to the
environment or to a parameter store (``process.env.DD_API_KEY``, ``${VAR}``, ``!Ref X``,
``{{resolve:secretsmanager:...}}``), ARNs, IAM action names (``cognito-idp:ChangePassword``),
identifiers made of words (``GetSecretValue``). `classify` sorts a value into not a secret,
weak (reported at low confidence) or likely (reported at the rule's confidence), with the
charset and entropy checks gitleaks' generic rule and detect-secrets' heuristics use.
"""

from __future__ import annotations

import enum
import math
import re
from collections import Counter

from donjon.scan.scanners.tokens import is_placeholder

__all__ = ["WORDS", "Verdict", "classify", "is_reference", "not_a_secret", "shannon_entropy"]


class Verdict(enum.Enum):
    """How much a value looks like a secret."""

    NOT_SECRET = "not a secret"  # noqa: S105  # nosec B105  # a label, not a credential
    WEAK = "weak"
    LIKELY = "likely"


#: Literals that mean "no value" or a flag in JSON, YAML, Python, JS and shell configs.
_LITERALS = frozenset(
    {
        "true",
        "false",
        "yes",
        "no",
        "on",
        "off",
        "null",
        "none",
        "nil",
        "undefined",
        "empty",
        "n/a",
        "na",
        "unset",
        "required",
        "optional",
        "disabled",
        "enabled",
    }
)
_NUMBER = re.compile(r"[-+]?(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
#: Type names and annotations: `password: string`, `secret: Optional[str] = None`.
_TYPE = re.compile(
    r"(?:typing\.)?(?:str|string|String|bytes|bytearray|int|float|number|bool|boolean|any|"
    r"unknown|object|SecretStr|SecretBytes|Secret|Optional\[.*\]|Union\[.*\]|Annotated\[.*\]|"
    r"Literal\[.*\]|[\w.\[\]]+\s*\|\s*None|None\s*\|\s*[\w.\[\]]+)\??(?:\s*=\s*None)?[;,]?"
)
#: References to where the value really lives: environment, parameters, templates, vaults.
_REFERENCE = re.compile(
    r"process\.env|import\.meta\.env|os\.environ|\bgetenv\b|environ\.get|\benv\(|\bEnv\.|"
    r"\$\{|\{\{|\$\(|%\(|!Ref\b|!Sub\b|!GetAtt\b|!ImportValue\b|!FindInMap\b|^Ref\b|"
    r"\bFn::|\bssm:/|\bresolve:|\bsecretsmanager:|\bvault:|^arn:|^\$[A-Za-z_]|"
    r"\bcontext\.secrets\b|\bsecrets\.\w|\bconfig\.\w|\bsettings\.\w",
)
#: An IAM action (`service:Action`, wildcards allowed): chalice's policies.json is full of them.
_IAM_ACTION = re.compile(r"[a-z][a-z0-9-]*:[A-Z*][A-Za-z0-9*]*")
#: Words joined by separators: `GetSecretValue`, `my-secret`, `@aws-cdk/core:checkSecret`.
_WORDS = re.compile(r"@?[A-Za-z]+(?:[-_.:/ @][A-Za-z]+)*")
_CAMEL = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
#: A resource or host name: dotted or slashed lower-case words with digits (`my-bucket.s3`).
_DOTTED_NAME = re.compile(r"[a-z][a-z0-9-]*(?:[./][a-z][a-z0-9-]*)+")

#: Why a plain word or identifier is not reported as a secret.
WORDS = "a word or identifier"
#: gitleaks' generic rule keeps values of entropy 3.5 and up; passwords are shorter and
#: less random than API keys, so a literal in a password position needs less.
MIN_ENTROPY = 2.5
MIN_LENGTH = 8


#: Whitespace-separated words from which a value is prose (a description in a schema or
#: documentation), past any passphrase (those run to four to six words).
_PROSE_WORDS = 10


def shannon_entropy(value: str) -> float:
    """Bits per character of `value` (the measure detect-secrets and gitleaks use)."""
    if not value:
        return 0.0
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def is_reference(value: str) -> bool:
    """Whether `value` names where a secret lives instead of holding it."""
    return bool(_REFERENCE.search(value.strip()))


def _is_words(value: str) -> bool:
    """Letters only, in words joined by separators (``x-api-key``) or of three letters or
    more on average (``GetSecretValue``): an identifier, not a key."""
    if not _WORDS.fullmatch(value):
        return False
    if re.search(r"[-_.:/ @]", value):
        return True
    parts = _CAMEL.findall(value)
    return bool(parts) and sum(map(len, parts)) / len(parts) >= 3


def not_a_secret(value: str) -> str:
    """Why `value` cannot be a secret, or "" if it might be one."""
    text = value.strip().strip("'\"`").strip()
    # An unquoted value runs on to the end of its JSON or YAML flow: `true}}`, `null],`.
    core = text.rstrip("}]),;").strip("'\"`")
    if len(core) < 3:
        return "too short"
    if core.lower() in _LITERALS:
        return "a boolean or null literal"
    if _NUMBER.fullmatch(core):
        return "a number"
    if _TYPE.fullmatch(text):
        return "a type annotation"
    if is_reference(text):
        return "a reference to a variable, parameter or resource"
    if _IAM_ACTION.fullmatch(text):
        return "an IAM action name"
    if _is_words(core):  # `secret: gh-hook}` in a YAML flow mapping names a vault secret
        return WORDS
    if len(text.split()) >= _PROSE_WORDS:
        return "prose (a description, not a key)"
    if _DOTTED_NAME.fullmatch(text):
        return "a dotted or namespaced name"
    if is_placeholder(text):
        return "a placeholder"
    if not re.search(r"[A-Za-z0-9]", text):
        return "no letters or digits"
    return ""


def _classes(value: str) -> int:
    return sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() for c in value),
        )
    )


def looks_random(value: str) -> bool:
    """Long enough, of more than one character class, and not repetitive: a likely secret."""
    return (
        len(value) >= MIN_LENGTH and _classes(value) >= 2 and shannon_entropy(value) >= MIN_ENTROPY
    )


def classify(value: str) -> Verdict:
    """Not a secret, a weak candidate (short, plain) or a likely secret."""
    if not_a_secret(value):
        return Verdict.NOT_SECRET
    return Verdict.LIKELY if looks_random(value.strip()) else Verdict.WEAK
