"""Tags typed at import time: the dialog's key=value lines, a manifest cell, a JSON object.

Every refusal is checked word for word: the message must name the line or tag and say what to
type instead, since the person reads it next to what they typed.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from importer.imports.tags import (
    MAX_KEY_LENGTH,
    MAX_TAGS,
    MAX_VALUE_LENGTH,
    TagError,
    format_tag_lines,
    json_kind,
    parse_tag_cell,
    parse_tag_lines,
    shown,
    tags_from_mapping,
)


def refusal(text: str) -> str:
    with pytest.raises(TagError) as caught:
        parse_tag_lines(text)
    return str(caught.value)


def mapping_refusal(value: object) -> str:
    with pytest.raises(TagError) as caught:
        tags_from_mapping(value)
    return str(caught.value)


# --- the dialog's lines -----------------------------------------------------------------------


def test_it_reads_one_tag_per_line() -> None:
    assert parse_tag_lines("env=prod\nteam=data") == {"env": "prod", "team": "data"}


def test_it_strips_the_spaces_laid_around_the_key_and_the_value() -> None:
    assert parse_tag_lines("  team \t= data  ") == {"team": "data"}
    assert parse_tag_lines("note=two  words") == {"note": "two  words"}


def test_it_reads_crlf_lines() -> None:
    assert parse_tag_lines("env=prod \r\nteam=data\r\n") == {"env": "prod", "team": "data"}


def test_it_ignores_blank_lines() -> None:
    assert parse_tag_lines("\n  \nenv=prod\n\r\n\t\n") == {"env": "prod"}
    assert parse_tag_lines("") == {}


def test_it_splits_at_the_first_equals_sign() -> None:
    assert parse_tag_lines("query=a=b") == {"query": "a=b"}


def test_it_takes_an_empty_value() -> None:
    assert parse_tag_lines("archived=") == {"archived": ""}


def test_it_refuses_a_line_without_equals_naming_it() -> None:
    assert refusal("env=prod\nteam data") == (
        'Line 2 ("team data") has no "="; write one tag per line as key=value.'
    )


def test_it_refuses_an_empty_key() -> None:
    assert refusal("env=prod\n  =data") == (
        "The key of line 2 is empty; type a key before the value, as in env=prod."
    )


def test_it_takes_keys_and_values_up_to_255_characters() -> None:
    key, value = "k" * MAX_KEY_LENGTH, "v" * MAX_VALUE_LENGTH
    assert parse_tag_lines(f"{key}={value}") == {key: value}


def test_it_refuses_a_key_of_256_characters() -> None:
    assert refusal(f"env=prod\n{'k' * 256}=v") == (
        "The key of line 2 is 256 characters long; use at most 255."
    )


def test_it_refuses_a_value_of_256_characters() -> None:
    assert refusal(f"env={'v' * 256}") == (
        "The value of line 1 is 256 characters long; use at most 255."
    )


def test_it_takes_50_tags_and_refuses_51() -> None:
    fifty = "\n".join(f"key{i}=v" for i in range(MAX_TAGS))
    assert len(parse_tag_lines(fifty)) == 50
    assert refusal(fifty + "\n\nextra=v\nmore=v") == (
        "Use at most 50 tags; there are 52. Remove 2 of them."
    )


def test_it_refuses_a_key_given_twice_naming_both_lines() -> None:
    assert refusal("env=prod\nteam=data\n env =test") == (
        'Line 3 repeats the key "env" of line 1; keep only one of them.'
    )


def test_it_refuses_the_name_tag_since_the_name_field_sets_it() -> None:
    assert refusal("env=prod\nName=backup") == (
        "Line 2 sets the Name tag, which comes from the snapshot's name; remove this tag."
    )


def test_tag_keys_are_case_sensitive_so_lowercase_name_is_another_tag() -> None:
    assert parse_tag_lines("name=x") == {"name": "x"}


@pytest.mark.parametrize("key", ["osc:owner", "aws:owner", "OSC:owner", "Aws:x"])
def test_it_refuses_the_reserved_prefixes_in_any_case(key: str) -> None:
    assert refusal(f"{key}=v") == (
        f'The key of line 1 starts with "{key[:4]}": OUTSCALE keeps keys starting with osc: '
        "and aws: for itself; choose another key."
    )


def test_a_prefix_needs_its_colon_to_be_reserved() -> None:
    assert parse_tag_lines("oscar=1\naws=2\nteam:osc:x=3") == {
        "oscar": "1",
        "aws": "2",
        "team:osc:x": "3",
    }


@pytest.mark.parametrize(
    ("line", "part", "code"),
    [
        ("en\x07v=prod", "key", "U+0007"),
        ("env=pr\x00od", "value", "U+0000"),
        ("env=prod\x1b[31m", "value", "U+001B"),
        ("env=\u202eprod", "value", "U+202E"),  # a bidi override, to spoof what is shown
        ("e\u200bnv=prod", "key", "U+200B"),  # a zero-width space
        ("env=a\tb", "value", "U+0009"),
        ("env=a\u2028b", "value", "U+2028"),
    ],
)
def test_it_refuses_control_and_invisible_characters(line: str, part: str, code: str) -> None:
    assert refusal(f"team=data\n{line}") == (
        f"The {part} of line 2 contains an invisible or control character ({code}); "
        "retype it without that character."
    )


def test_tag_error_is_a_value_error() -> None:
    assert issubclass(TagError, ValueError)


# --- a manifest cell --------------------------------------------------------------------------


def test_a_cell_holds_pairs_separated_by_semicolons_trimmed() -> None:
    assert parse_tag_cell(" env = prod ; team=data;; ") == {"env": "prod", "team": "data"}
    assert parse_tag_cell("") == {}


def test_a_cell_pair_without_equals_is_refused_naming_it() -> None:
    with pytest.raises(TagError) as caught:
        parse_tag_cell("env=prod;team")
    assert str(caught.value) == (
        'Tag 2 ("team") has no "="; write the tags as key=value pairs separated by ";".'
    )


def test_a_cell_gets_the_same_rules_as_lines() -> None:
    with pytest.raises(TagError) as caught:
        parse_tag_cell("env=prod;Name=x")
    assert str(caught.value) == (
        "Tag 2 sets the Name tag, which comes from the snapshot's name; remove this tag."
    )
    with pytest.raises(TagError) as caught:
        parse_tag_cell(";".join(f"k{i}=v" for i in range(51)))
    assert str(caught.value) == "Use at most 50 tags; there are 51. Remove 1 of them."


# --- a JSON object ----------------------------------------------------------------------------


def test_a_mapping_of_text_is_taken_as_is() -> None:
    assert tags_from_mapping({"env": "prod", "note": " spaced "}) == {
        "env": "prod",
        "note": " spaced ",
    }
    assert tags_from_mapping({}) == {}


@pytest.mark.parametrize(
    ("value", "kind"),
    [(["env=prod"], "a list"), ("env=prod", "text"), (None, "null"), (3, "a number")],
)
def test_anything_but_an_object_is_refused(value: object, kind: str) -> None:
    assert mapping_refusal(value) == (
        f'Tags must be an object of text keys and values, like {{"env": "prod"}}; found {kind}.'
    )


@pytest.mark.parametrize(
    ("value", "kind"), [(5, "a number"), (True, "true or false"), (None, "null"), ([], "a list")]
)
def test_a_value_that_is_not_text_is_refused(value: object, kind: str) -> None:
    assert mapping_refusal({"cost": value}) == (
        f'The value of the tag "cost" is {kind}; write it as text in double quotes, like "5".'
    )


def test_a_key_that_is_not_text_is_refused() -> None:
    assert mapping_refusal({1: "x"}) == "Tag keys must be text; found a number."


def test_a_mapping_gets_the_same_rules_as_lines() -> None:
    assert mapping_refusal({"aws:x": "1"}) == (
        'The key of the tag "aws:x" starts with "aws:": OUTSCALE keeps keys starting with '
        "osc: and aws: for itself; choose another key."
    )
    assert mapping_refusal({"env": "a", " env ": "b"}) == (
        'The tag " env " repeats the key "env" of the tag "env"; keep only one of them.'
    )
    assert mapping_refusal({"env": "\x00"}) == (
        'The value of the tag "env" contains an invisible or control character (U+0000); '
        "retype it without that character."
    )
    assert mapping_refusal({f"k{i}": "v" for i in range(60)}) == (
        "Use at most 50 tags; there are 60. Remove 10 of them."
    )


def test_a_mapping_key_with_equals_is_refused_since_no_line_could_say_it() -> None:
    assert mapping_refusal({"a=b": "c"}) == (
        'The key of the tag "a=b" contains "="; choose a key without it.'
    )


# --- writing them back ------------------------------------------------------------------------


def test_format_writes_one_line_per_tag() -> None:
    assert format_tag_lines({"env": "prod", "note": " a=b "}) == "env=prod\nnote= a=b "
    assert format_tag_lines({}) == ""


_KEY_CHARS = string.ascii_letters + string.digits + "-_.:/ éü"
_VALUE_CHARS = _KEY_CHARS + "=;"


@given(
    st.dictionaries(
        st.text(_KEY_CHARS, min_size=1, max_size=30)
        .map(lambda key: key.strip(" "))
        .filter(lambda key: key and key != "Name" and not key.lower().startswith(("osc:", "aws:"))),
        # Lines cannot carry a value's surrounding spaces (they are layout), nor can the tags read.
        st.text(_VALUE_CHARS, max_size=30).map(lambda value: value.strip(" ")),
        max_size=MAX_TAGS,
    )
)
def test_format_and_parse_give_back_the_same_tags(tags: dict[str, str]) -> None:
    assert parse_tag_lines(format_tag_lines(tags)) == tags


# --- the helpers messages use -----------------------------------------------------------------


def test_shown_spells_out_invisible_characters_and_cuts_long_text() -> None:
    assert shown("a\u202eb\x1b") == '"a\\u202eb\\u001b"'
    assert shown("x" * 100) == '"' + "x" * 39 + '…"'


def test_json_kind_tells_true_from_a_number() -> None:
    assert json_kind(True) == "true or false"
    assert json_kind(1.5) == "a number"
    assert json_kind({}) == "an object"
