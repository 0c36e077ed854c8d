"""Tags typed at import time: `key=value` lines in the dialog, pairs or objects in a manifest.

Every source of tags (the dialog's lines, a manifest's `a=b;c=d` cell, a JSON object) goes
through one set of rules, so no tag the dialog refuses can arrive through a manifest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django import forms

from importer.core.text import refuse_invisible_characters

MAX_TAGS = 50
MAX_KEY_LENGTH = 255
MAX_VALUE_LENGTH = 255
# The Name tag comes from the Name field: a second source would make one of them silently lose.
# Tag keys are case-sensitive, so "name" is a different tag and stays allowed.
NAME_KEY = "Name"
# OUTSCALE (and the AWS-compatible tooling around it) keeps these for itself, whatever the case.
RESERVED_PREFIXES = ("osc:", "aws:")

LINES_HINT = "write one tag per line as key=value"
CELL_HINT = 'write the tags as key=value pairs separated by ";"'


class TagError(ValueError):
    """A tag that cannot be applied; the message names the line or tag and says what to fix."""


def shown(text: str, limit: int = 40) -> str:
    """`text` quoted for a message: invisible characters spelled out, long text cut short.

    Messages echo what a person typed so they can find it; echoing a bidi override or a
    terminal escape as-is would garble the very page that explains the problem.
    """
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    visible = "".join(char if char.isprintable() else f"\\u{ord(char):04x}" for char in cut)
    return f'"{visible}"'


def json_kind(value: object) -> str:
    """What a JSON value is, in words a person who wrote the file recognises."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: True is an int to Python, not to the writer
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def _capital(where: str) -> str:
    return where[:1].upper() + where[1:]


def _refuse_invisible(text: str, *, field: str) -> None:
    # The dialog's own check, so a tag and a name refuse the same characters with the same words.
    try:
        refuse_invisible_characters(text, field=field)
    except forms.ValidationError as error:
        raise TagError(error.messages[0]) from None


def _checked(items: list[tuple[str, str, str]]) -> dict[str, str]:
    """Applies the rules to (where, key, value) triples; `where` names the tag in messages."""
    if len(items) > MAX_TAGS:
        raise TagError(
            f"Use at most {MAX_TAGS} tags; there are {len(items)}. "
            f"Remove {len(items) - MAX_TAGS} of them."
        )
    tags: dict[str, str] = {}
    first_at: dict[str, str] = {}
    for where, key, value in items:
        if not key:
            raise TagError(
                f"The key of {where} is empty; type a key before the value, as in env=prod."
            )
        _refuse_invisible(key, field=f"key of {where}")
        _refuse_invisible(value, field=f"value of {where}")
        if "=" in key:
            # Only an object can say this; refused so every tag can be written back as key=value.
            raise TagError(f'The key of {where} contains "="; choose a key without it.')
        if len(key) > MAX_KEY_LENGTH:
            raise TagError(
                f"The key of {where} is {len(key)} characters long; use at most {MAX_KEY_LENGTH}."
            )
        if len(value) > MAX_VALUE_LENGTH:
            raise TagError(
                f"The value of {where} is {len(value)} characters long; "
                f"use at most {MAX_VALUE_LENGTH}."
            )
        if key == NAME_KEY:
            raise TagError(
                f"{_capital(where)} sets the Name tag, which comes from the snapshot's name; "
                "remove this tag."
            )
        for prefix in RESERVED_PREFIXES:
            if key.lower().startswith(prefix):
                raise TagError(
                    f'The key of {where} starts with "{key[: len(prefix)]}": OUTSCALE keeps '
                    "keys starting with osc: and aws: for itself; choose another key."
                )
        if key in tags:
            raise TagError(
                f"{_capital(where)} repeats the key {shown(key)} of {first_at[key]}; "
                "keep only one of them."
            )
        tags[key] = value
        first_at[key] = where
    return tags


def parse_tag_lines(text: str) -> dict[str, str]:
    """Tags typed in the dialog: one `key=value` per line, blank lines ignored.

    Spaces around the key and the value go, as in a manifest cell: `team = storage` is laid
    out, not a value starting with a space (which nobody could see on the page).
    """
    lines = (line.removesuffix("\r") for line in text.split("\n"))
    return _pairs(lines, what="Line", hint=LINES_HINT)


def parse_tag_cell(text: str) -> dict[str, str]:
    """Tags in one manifest cell: `key=value` pairs separated by `;`, empty pairs ignored."""
    return _pairs(text.split(";"), what="Tag", hint=CELL_HINT, count_blank=False)


def _pairs(
    parts: Iterable[str], *, what: str, hint: str, count_blank: bool = True
) -> dict[str, str]:
    """`key=value` parts numbered as a person counts them (lines count blank ones, a cell's
    pairs do not), checked under the rules of every tag."""
    items: list[tuple[str, str, str]] = []
    numbered = enumerate(parts if count_blank else (p for p in parts if p.strip()), start=1)
    for number, part in numbered:
        if not part.strip():
            continue
        key, equals, value = part.partition("=")
        if not equals:
            shown_part = part if count_blank else part.strip()
            raise TagError(f'{what} {number} ({shown(shown_part)}) has no "="; {hint}.')
        items.append((f"{what.lower()} {number}", key.strip(" \t"), value.strip(" \t")))
    return _checked(items)


def tags_from_mapping(value: object) -> dict[str, str]:
    """Tags given as a JSON object of text keys and text values, under the same rules."""
    if not isinstance(value, Mapping):
        raise TagError(
            f'Tags must be an object of text keys and values, like {{"env": "prod"}}; '
            f"found {json_kind(value)}."
        )
    items: list[tuple[str, str, str]] = []
    for key, tag_value in value.items():
        if not isinstance(key, str):
            raise TagError(f"Tag keys must be text; found {json_kind(key)}.")
        if not isinstance(tag_value, str):
            raise TagError(
                f"The value of the tag {shown(key)} is {json_kind(tag_value)}; "
                'write it as text in double quotes, like "5".'
            )
        items.append((f"the tag {shown(key)}", key.strip(" \t"), tag_value))
    return _checked(items)


def format_tag_lines(tags: Mapping[str, str]) -> str:
    """The dialog's text for `tags`: what parse_tag_lines reads back to the same tags."""
    return "\n".join(f"{key}={value}" for key, value in tags.items())
