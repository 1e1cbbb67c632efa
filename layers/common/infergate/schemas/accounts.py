from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field

from infergate.schemas.base import Closed, Schema
from infergate.schemas.text import hidden

# Scripts that one language writes together: Japanese mixes these, Korean mixes Hangul and Han.
_SCRIPT_FAMILIES = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "HANGUL": "CJK", "CJK": "CJK"}


def normalised_email(value: str) -> str:
    """One spelling per mailbox: full-width and other compatibility forms folded (NFKC),
    case folded, the domain in its Unicode form. Refused: what is not an address
    (email-validator's syntax rules, without a DNS lookup), invisible or unassigned
    characters, and a part that mixes scripts (a Cyrillic letter among Latin ones)."""
    from email_validator import EmailNotValidError, validate_email

    folded = unicodedata.normalize("NFKC", value.strip()).lower()
    if hidden(folded):
        raise ValueError("must be an email address, with no invisible or replacement characters")
    try:
        address = validate_email(folded, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(f"must be an email address such as ada@example.com ({error})") from None
    for part in (address.local_part, *address.domain.split(".")):
        if len(_scripts(part)) > 1:
            raise ValueError("must be an email address whose parts are each written in one script")
    return f"{address.local_part}@{address.domain}"


def _scripts(text: str) -> set[str]:
    names = (unicodedata.name(char, "UNKNOWN").split()[0] for char in text if unicodedata.category(char)[0] == "L")
    return {_SCRIPT_FAMILIES.get(name, name) for name in names}


Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(normalised_email)]


class RegisterRequest(Closed):
    email: Email


class RegisterResponse(Schema):
    user_id: str
    email: str
    api_key: str = Field(description="Shown once; InferGate stores only its hash.")
    key_id: str
    plan: str
    monthly_token_quota: int
