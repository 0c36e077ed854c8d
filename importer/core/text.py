"""What a person may type in a name, a description or a tag: no invisible characters."""

from __future__ import annotations

import unicodedata

from django import forms

# Unicode categories that have no business in a name: controls, format characters (bidi
# overrides, zero-width joiners used for spoofing), surrogates, private use, unassigned,
# line and paragraph separators.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def refuse_invisible_characters(value: str, *, field: str, allow_newlines: bool = False) -> None:
    """Raises a form's ValidationError naming the first invisible or control character."""
    for char in value:
        if allow_newlines and char in "\n\t":
            continue
        if unicodedata.category(char) in FORBIDDEN_CATEGORIES:
            raise forms.ValidationError(
                f"The {field} contains an invisible or control character "
                f"(U+{ord(char):04X}); retype it without that character.",
                code="control_character",
            )
