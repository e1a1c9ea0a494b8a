"""Which requests chat refuses, decided by what they would do, not by the words they use.

"Did consumption drop last week?" and "the voltage drop at Office 5" are questions; "drop the
forecasts table" and "'; DROP TABLE x; --" are requests to change the warehouse. The difference is
the effect: a write statement (SQL shape), a write verb in command position (the start of a clause,
after "please", "can you" ...), SQL smuggled into a question (a second statement, a comment, a
UNION), a read outside the modelled tables (raw data, catalogs, files, the environment), a secret, or
an attempt to override the rules. Text is normalised first (NFKC, invisible characters removed,
look-alike letters mapped), so full-width or zero-width spellings mean what they look like. Known
device and site names are masked before the check: a meter named "Robert'); DROP TABLE ..." is a
subject, not a statement.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = ["normalise", "unsafe_reason"]

# Cyrillic and Greek letters that look like Latin ones (the common confusables in attacks)
_LOOKALIKE = str.maketrans("аеорсухіјѕԁκνοταВЕКМНОРСТХАІЈ", "aeopcyxijsdkvotaBEKMHOPCTXAIJ")
_WRITE_SQL = re.compile(
    r"\b(drop|truncate)\s+(table|schema|database|view|index|function|macro|secret|sequence)\b|"
    r"\bdelete\s+from\b|\binsert\s+(into|overwrite)\b|\bupdate\s+[\w.\"`]+\s+set\b|"
    r"\balter\s+(table|schema|database|view)\b|"
    r"\bcreate\s+(or\s+replace\s+)?(temp\w*\s+)?(table|view|schema|database|function|macro|secret|index)\b|"
    r"\bmerge\s+into\b|\bgrant\s+\w+(\s+\w+)?\s+on\b|\brevoke\s+\w+|\battach\s+(database\s+)?['\"]|"
    r"\bdetach\s+\w+|\bcopy\s+[\w.\"`]+\s+(to|from)\b|\bexport\s+database\b|\binstall\s+\w+\s*;|"
    r"\bpragma\s+\w+|\bcall\s+\w+\s*\(|\bvacuum\b|\bcheckpoint\s*;"
)
_SMUGGLED = re.compile(
    r";\s*(select|with|drop|delete|insert|update|alter|create|truncate|merge|grant|attach|copy|pragma)\b|"
    r"--|/\*|\*/|\bunion\s+(all\s+)?select\b|\bor\s+1\s*=\s*1\b|^\s*(select|with)\s+[\w*(]"
)
_OUTSIDE = re.compile(
    r"\binformation_schema\b|\bduckdb_\w+\s*\(|\bread_(csv|parquet|json|text|blob)\w*\b|\bglob\s*\(|"
    r"/etc/|\bgetenv\b|\braw\s*\.\s*\w+|\braw\s+(dataset|schema|tables?|data)\b|\bother datasets?\b|"
    r"\b(list|show)\b.{0,20}\b(all\s+)?(tables|schemas|datasets)\b"
)
_SECRET = re.compile(
    r"\b(api[\s_-]?keys?|secrets?|passwords?|passwd|credentials?|tokens?|private keys?|"
    r"environment variables?|env vars?|service account keys?)\b"
)
_OVERRIDE = re.compile(
    r"\b(ignore|disregard|forget|override)\b.{0,30}\b(instructions?|rules?|prompts?|previous|above|guard\w*)\b|"
    r"\bsystem prompt\b|\bjailbreak\w*\b|\bdeveloper mode\b|\byou are now\b|\bact as\b|"
    r"\bpretend (to be|you)\b"
)
# A write verb that opens a clause ("delete ...", "please drop ...", "can you wipe ...") is a command.
_COMMAND_START = (
    r"(?:^|[.!?;:,\n]\s*|\b(?:please|kindly|now|then|and|just|also|go ahead and|i want you to|i need you to|"
    r"can you|could you|would you|will you|you should|you must|let's|lets)\s+)"
)
_WRITE_VERBS = (
    r"delete|drop|truncate|wipe|erase|purge|destroy|overwrite|remove|clear|reset|insert|update|alter|"
    r"create|rename|change|modify|edit|set|grant|revoke|disable|shut\s*down|kill|empty|replace|restore|"
    r"rewrite|backfill|deduplicate|fix|correct"
)
_COMMAND = re.compile(_COMMAND_START + rf"(?:please\s+)?({_WRITE_VERBS})\b(?!\s*(\?|$))")
_ADD = re.compile(
    _COMMAND_START + r"add\b.{0,30}\b(readings?|rows?|records?|devices?|meters?|sites?|tables?|columns?|"
    r"forecasts?|anomal\w*|users?|keys?)\b"
)


def normalise(text: str) -> str:
    """Lower case, NFKC, no invisible characters, look-alike letters as Latin, single spaces."""
    text = unicodedata.normalize("NFKC", text).translate(_LOOKALIKE)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(text.lower().split())


def _mask(text: str, names: Iterable[str]) -> str:
    for name in sorted({n.lower() for n in names if n and len(n) >= 3}, key=len, reverse=True):
        if name in text:
            text = text.replace(name, " entity ")
    return text


def unsafe_reason(question: str, names: Iterable[str] = ()) -> str | None:
    """Why the request must be refused, or None for a question chat may try to answer."""
    text = _mask(normalise(question), names)
    if _WRITE_SQL.search(text):
        return "that is a statement that would change the warehouse, and this assistant only reads"
    if _OVERRIDE.search(text):
        return "instructions to override the assistant's rules are not followed"
    if _SMUGGLED.search(text):
        return "SQL typed into a question (a statement, a comment or a UNION) is never run; ask in words"
    if _OUTSIDE.search(text):
        return "only the modelled energy tables can be read, not raw data, catalogs, files or the environment"
    if _SECRET.search(text):
        return "keys, secrets and passwords are never shown"
    if _COMMAND.search(text) or _ADD.search(text):
        return "that would change stored data, and this assistant only reads energy data"
    return None


def writes_sql(question: str) -> bool:
    """A write statement in the text itself (before any name is known): refused without a query."""
    return bool(_WRITE_SQL.search(normalise(question))) and not re.search(
        r"\b(use|used|consume\w*)\b", question
    )
