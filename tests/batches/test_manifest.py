"""Reading a bulk-import manifest: the good ones whole, the hostile ones refused in plain words.

A manifest refused whole has a `problem` and no rows; a row that cannot be taken carries its
own `problems`. Messages are compared word for word: each must say what to do about it.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from importer.batches.manifest import MAX_BYTES, MAX_ROWS, Manifest, ManifestRow, parse_manifest

URL = "https://oos.eu-west-2.outscale.com/bucket/disk.qcow2?X-Amz-Signature=abc"
HEADER = "name,description,url,size,tags\n"
JSON_ADVICE = (
    'write one JSON object per line, like {"name": "backup-1", "url": "https://...", '
    '"size": 10737418240}'
)
CSV_QUOTING = (
    "a cell with a comma, a double quote or a line break must be in double quotes, "
    'with each double quote inside it written twice ("")'
)
FORMULA = "so it looks like a spreadsheet formula; start it with a letter or a digit instead."


def csv_text(rows: int) -> str:
    return HEADER + "".join(f"snap-{i},daily,{URL},{1024 + i},env=prod\n" for i in range(rows))


def jsonl_text(rows: int) -> str:
    return "".join(
        json.dumps({"name": f"snap-{i}", "url": URL, "size": 1024 + i}) + "\n" for i in range(rows)
    )


def only_row(manifest: Manifest) -> ManifestRow:
    assert manifest.problem == ""
    assert len(manifest.rows) == 1
    return manifest.rows[0]


def refusal(data: bytes | str, filename: str = "") -> str:
    manifest = parse_manifest(data, filename=filename)
    assert manifest.rows == ()
    assert manifest.problem
    return manifest.problem


# --- good manifests ---------------------------------------------------------------------------


def test_a_500_row_csv_gives_500_rows_numbered_by_their_line() -> None:
    manifest = parse_manifest(csv_text(MAX_ROWS).encode())
    assert (manifest.problem, manifest.format, manifest.ok) == ("", "csv", True)
    assert len(manifest.rows) == 500
    assert manifest.rows[0] == ManifestRow(
        number=2, name="snap-0", description="daily", url=URL, size="1024", tags={"env": "prod"}
    )
    assert manifest.rows[-1].number == 501
    assert manifest.rows[-1].name == "snap-499"


def test_a_500_row_json_lines_manifest_gives_500_rows() -> None:
    manifest = parse_manifest(jsonl_text(MAX_ROWS).encode())
    assert (manifest.problem, manifest.format, manifest.ok) == ("", "jsonl", True)
    assert len(manifest.rows) == 500
    assert manifest.rows[0] == ManifestRow(number=1, name="snap-0", url=URL, size="1024")
    assert manifest.rows[-1].number == 500


def test_pasted_text_reads_as_the_uploaded_bytes_do() -> None:
    assert parse_manifest(csv_text(3)) == parse_manifest(csv_text(3).encode())
    assert parse_manifest(jsonl_text(3)) == parse_manifest(jsonl_text(3).encode())


def test_size_and_the_optional_columns_may_be_left_out() -> None:
    row = only_row(parse_manifest(f"url,name\n{URL},backup\n"))
    assert row == ManifestRow(number=2, name="backup", url=URL)


def test_the_header_is_case_insensitive_and_trimmed() -> None:
    row = only_row(parse_manifest(f" Name , URL ,SIZE\nbackup,{URL},10\n"))
    assert (row.name, row.url, row.size) == ("backup", URL, "10")


def test_cells_are_stripped_as_the_dialog_strips_them() -> None:
    row = only_row(parse_manifest(f"name,description,url,size\n  backup  , daily ,  {URL} , 10 \n"))
    assert (row.name, row.description, row.url, row.size) == ("backup", "daily", URL, "10")


def test_empty_rows_are_skipped_and_not_counted() -> None:
    text = f"\n\nname,url\n\n,\n  ,  \nbackup,{URL}\n\n"
    assert only_row(parse_manifest(text)).number == 7
    assert len(parse_manifest(csv_text(MAX_ROWS) + "\n,,,,\n" * 20).rows) == 500


def test_a_utf8_bom_is_accepted() -> None:
    row = only_row(parse_manifest(b"\xef\xbb\xbf" + f"name,url\ncaf\u00e9,{URL}\n".encode()))
    assert row.name == "caf\u00e9"
    manifest = parse_manifest(b"\xef\xbb\xbf" + jsonl_text(2).encode())
    assert (manifest.format, len(manifest.rows), manifest.ok) == ("jsonl", 2, True)


def test_crlf_line_ends_are_accepted() -> None:
    manifest = parse_manifest(csv_text(3).replace("\n", "\r\n").encode())
    assert manifest.ok
    assert [(row.number, row.tags) for row in manifest.rows] == [
        (2, {"env": "prod"}),
        (3, {"env": "prod"}),
        (4, {"env": "prod"}),
    ]
    manifest = parse_manifest(jsonl_text(2).replace("\n", "\r\n"))
    assert manifest.ok
    assert [row.size for row in manifest.rows] == ["1024", "1025"]


def test_quoted_cells_hold_commas_quotes_and_newlines() -> None:
    text = (
        "name,description,url\n"
        f'"backup, daily","first line\r\nsecond ""quoted"" line",{URL}\n'
        f"next,,{URL}\n"
    )
    manifest = parse_manifest(text)
    assert manifest.ok
    first, second = manifest.rows
    assert first.name == "backup, daily"
    assert first.description == 'first line\r\nsecond "quoted" line'
    # A row is numbered by the line it starts on, though the cell above spans two lines.
    assert (first.number, second.number) == (2, 4)


# --- format -----------------------------------------------------------------------------------


def test_json_lines_is_told_by_the_first_non_blank_character() -> None:
    assert parse_manifest("\n  \n" + jsonl_text(1)).format == "jsonl"
    assert parse_manifest(jsonl_text(1), filename="manifest.csv").format == "jsonl"
    assert parse_manifest(csv_text(1), filename="manifest.txt").format == "csv"


def test_a_jsonl_or_ndjson_file_name_means_json_lines() -> None:
    for filename in ("batch.jsonl", "BATCH.NDJSON"):
        manifest = parse_manifest('["snap"]\n', filename=filename)
        assert manifest.format == "jsonl"
        assert manifest.rows[0].problems == (f"This line is a list, not an object; {JSON_ADVICE}.",)


# --- limits -----------------------------------------------------------------------------------


def test_501_rows_are_refused_with_their_count() -> None:
    expected = "A manifest holds at most 500 rows; this one has 501. Split it into batches of 500."
    assert refusal(csv_text(501)) == expected
    assert refusal(jsonl_text(501)) == expected


def test_10001_rows_are_refused_with_their_count() -> None:
    short = "".join(f"s{i},{URL}\n" for i in range(10_001))
    assert len(short) < MAX_BYTES  # the row limit, not the byte limit, refuses it
    assert refusal("name,url\n" + short) == (
        "A manifest holds at most 500 rows; this one has 10,001. Split it into batches of 500."
    )
    lines = "".join(f'{{"name":"s{i}","url":"u"}}\n' for i in range(10_001))
    assert "this one has 10,001." in refusal(lines)


def test_50_mb_is_refused_quickly_and_before_decoding() -> None:
    # Not UTF-8 at all: a decode would refuse it for its encoding, not for its size.
    data = b"\xff" * (50 * 1024 * 1024)
    started = time.perf_counter()
    problem = refusal(data)
    assert time.perf_counter() - started < 0.5
    assert problem == (
        "A manifest is at most 2 MiB (2,097,152 bytes); this one is 50.0 MiB (52,428,800 bytes). "
        "Split it into manifests of at most 500 rows."
    )


def test_pasted_text_over_the_limit_is_refused_by_its_length() -> None:
    assert refusal("x" * (3 * 1024 * 1024)) == (
        "A manifest is at most 2 MiB (2,097,152 bytes); this one has 3,145,728 characters. "
        "Split it into manifests of at most 500 rows."
    )


def test_the_byte_limit_counts_bytes_exactly() -> None:
    base = f"name,url\nbackup,{URL}\n".encode()
    at_limit = base + b"\n" * (MAX_BYTES - len(base))
    assert parse_manifest(at_limit).ok
    assert "this one is 2.0 MiB (2,097,153 bytes)" in refusal(at_limit + b"\n")
    # Pasted text is measured in UTF-8 bytes, not characters.
    accented = "\u00e9" * (MAX_BYTES // 2)  # under the limit in characters, over it in bytes
    pasted = f"name,url\n{accented},{URL}\n"
    assert "bytes). Split it" in refusal(pasted)


# --- binary and encodings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", "a PNG image"),
        (b"PK\x03\x04\x14\x00\x06\x00", "a ZIP archive or an Excel workbook (.xlsx)"),
        (b"%PDF-1.7\n", "a PDF document"),
        (b"\x1f\x8b\x08\x00", "a gzip archive"),
    ],
)
def test_known_binary_files_are_named(data: bytes, kind: str) -> None:
    assert refusal(data, filename="manifest.csv") == (
        f"This is not a text manifest: it looks like {kind}. "
        "Upload a CSV or JSON lines file saved as UTF-8."
    )


def test_nul_bytes_are_refused_as_binary() -> None:
    expected = (
        "This is not a text manifest: it contains NUL bytes, as binary files and UTF-16 text do. "
        "Upload a CSV or JSON lines file saved as UTF-8."
    )
    assert refusal(csv_text(2).encode() + b"\x00") == expected
    assert refusal(csv_text(2).encode("utf-16-le")) == expected
    assert refusal("name,url\nback\x00up,u\n") == expected


def test_utf16_with_its_bom_is_told_to_be_saved_as_utf8() -> None:
    assert refusal(csv_text(2).encode("utf-16")) == (
        "This manifest is saved as UTF-16 text. "
        "Save the file as UTF-8 (in Excel: CSV UTF-8) and upload it again."
    )


def test_data_full_of_control_characters_is_refused_as_binary() -> None:
    data = bytes(range(1, 32)) * 40 + b"name,url\n"
    assert refusal(data) == (
        "This is not a text manifest: it is full of control characters, as binary files are. "
        "Upload a CSV or JSON lines file saved as UTF-8."
    )


def test_one_stray_control_character_is_left_to_the_form_of_its_row() -> None:
    # The dialog's form names it ("retype it without that character") in that row only.
    row = only_row(parse_manifest(f"name,url\nback\x07up,{URL}\n".encode()))
    assert (row.name, row.problems) == ("back\x07up", ())


def test_latin1_bytes_are_refused_naming_the_line() -> None:
    data = f"name,url\nbackup,{URL}\ncaf\u00e9,{URL}\n".encode("latin-1")
    offset = data.index(b"\xe9")
    assert refusal(data) == (
        f"The manifest is not valid UTF-8: byte 0xE9 at offset {offset}, on line 3, is not UTF-8 "
        "text. Save the file as UTF-8 (in Excel: CSV UTF-8) and upload it again."
    )


def test_mixed_encodings_are_called_so() -> None:
    data = f"name,url\ncr\u00e8me,{URL}\n".encode() + f"caf\u00e9,{URL}\n".encode("cp1252")
    problem = refusal(data)
    assert "on line 3, is not UTF-8 text (the text before it is UTF-8, so the file mixes" in (
        problem
    )
    assert problem.endswith("Save the file as UTF-8 (in Excel: CSV UTF-8) and upload it again.")


# --- empty manifests --------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\r\n", "\ufeff", b"\xef\xbb\xbf\n"])
def test_an_empty_manifest_is_refused(data: bytes | str) -> None:
    assert refusal(data) == (
        "The manifest is empty. Give a header line such as name,description,url,size,tags and "
        "then one line per snapshot, or one JSON object per line."
    )


def test_a_header_without_rows_is_refused() -> None:
    assert refusal(HEADER + "\n,,,,\n") == (
        "The manifest has no rows: under the header, add one line per snapshot."
    )


def test_a_csv_of_empty_cells_is_empty() -> None:
    assert refusal(",,\n , \n").startswith("The manifest is empty. Give a header line such as")


@pytest.mark.parametrize(
    "text", ['[{"name": "a", "url": "u"}]', '[\n  {"name": "a", "url": "u"}\n]\n']
)
def test_a_json_array_is_told_to_be_json_lines(text: str) -> None:
    assert (
        refusal(text)
        == f"This looks like a JSON array, not JSON lines: {JSON_ADVICE}, with no [ ]."
    )


# --- the header -------------------------------------------------------------------------------


def test_a_first_line_of_data_is_not_a_header() -> None:
    assert refusal(f"backup,{URL}\n") == (
        "The first line must be the header, such as name,description,url,size,tags; it is "
        '"backup,https://oos.eu-west-2.outscale.c…". Add the header as the first line.'
    )


def test_a_header_without_url_is_refused() -> None:
    assert refusal("name,size\nbackup,10\n") == (
        "The header has no url column; every manifest needs name and url. "
        "Use a header such as name,description,url,size,tags."
    )
    assert refusal("description,size\nx,10\n") == (
        "The header has no name and url columns; every manifest needs name and url. "
        "Use a header such as name,description,url,size,tags."
    )


def test_an_unknown_column_is_refused_naming_it() -> None:
    assert refusal("name,url,sise\nbackup,u,10\n") == (
        'The header has an unknown column "sise" (column 3); '
        "use only name, description, url, size and tags."
    )


def test_a_column_named_twice_is_refused() -> None:
    assert refusal("name,url,Name\nbackup,u,x\n") == (
        'The header names the column "name" twice (columns 1 and 3); keep only one.'
    )


def test_an_empty_header_cell_is_refused() -> None:
    assert refusal("name,url,\nbackup,u,\n") == (
        "Column 3 of the header is empty; name it or remove the extra comma. "
        "The columns are name, description, url, size and tags."
    )


@pytest.mark.parametrize(("separator", "word"), [(";", "semicolons"), ("\t", "tabs")])
def test_another_separator_is_named(separator: str, word: str) -> None:
    text = separator.join(["name", "url", "size"]) + "\n" + separator.join(["a", URL, "1"])
    assert refusal(text) == (
        f"The columns are separated by {word}; save the file with commas between columns "
        "(in Excel: CSV UTF-8) and upload it again."
    )


# --- broken CSV -------------------------------------------------------------------------------


def test_a_quote_never_closed_is_refused_naming_the_line_it_opens() -> None:
    assert refusal(f'name,url\nbackup,{URL}\n"open,{URL}\nnext,{URL}\n') == (
        f"Line 3 cannot be read as CSV (unexpected end of data): {CSV_QUOTING}. "
        "Fix that line and upload the manifest again."
    )


def test_text_after_a_closing_quote_is_refused() -> None:
    problem = refusal(f'name,url\n"back"up,{URL}\n')
    assert problem.startswith("Line 2 cannot be read as CSV (")
    assert problem.endswith(f"{CSV_QUOTING}. Fix that line and upload the manifest again.")


@pytest.mark.parametrize("line", [f"backup,{URL},10,extra", f"backup,{URL}"])
def test_a_row_with_another_number_of_cells_gets_a_problem(line: str) -> None:
    manifest = parse_manifest(f"name,url,size\nfine,{URL},1\n{line}\n")
    assert manifest.problem == ""
    assert manifest.rows[0].ok
    cells = line.count(",") + 1
    assert manifest.rows[1].problems == (
        f"This line has {cells} cells but the header has 3 columns: {CSV_QUOTING}. "
        "Give every line the header's columns.",
    )


# --- rows -------------------------------------------------------------------------------------


def test_a_row_without_a_name_or_url_gets_problems() -> None:
    manifest = parse_manifest(f"name,url\n,{URL}\nbackup,  \n")
    assert [row.problems for row in manifest.rows] == [
        ("This row has no name; give every snapshot a name.",),
        ("This row has no url; give the pre-signed URL of the snapshot.",),
    ]
    assert not manifest.ok


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r", " ="])
def test_a_name_that_looks_like_a_formula_gets_a_problem(start: str) -> None:
    row = only_row(parse_manifest(f'name,url\n"{start}HYPERLINK(""http://x"")",{URL}\n'))
    shown = {"\t": "a tab", "\r": "a carriage return"}.get(start, f'"{start.strip()}"')
    assert row.problems == (f"The name starts with {shown}, {FORMULA}",)


def test_a_description_or_tags_cell_that_looks_like_a_formula_gets_a_problem() -> None:
    text = f'name,description,url,tags\nbackup,@SUM(A1),{URL},\nother,,{URL},"=1+1;env=x"\n'
    first, second = parse_manifest(text).rows
    assert first.problems == (f'The description starts with "@", {FORMULA}',)
    assert second.problems == (f'The text of the tags starts with "=", {FORMULA}',)
    assert second.tags == {}


def test_a_url_starting_like_a_formula_is_left_to_the_form() -> None:
    assert only_row(parse_manifest("name,url\nbackup,=cmd|calc\n")).problems == ()


def test_a_tag_key_that_looks_like_a_formula_gets_a_problem() -> None:
    row = only_row(parse_manifest(f"name,url,tags\nbackup,{URL},env=prod;-x=1\n"))
    assert row.problems == (f'The tag key "-x" starts with "-", {FORMULA}',)


def test_a_formula_and_a_dash_inside_a_cell_are_fine() -> None:
    row = only_row(parse_manifest(f"name,description,url\nbackup-1,weekly - full = yes,{URL}\n"))
    assert row.problems == ()


def test_every_repeat_of_a_name_names_the_first_line() -> None:
    text = f"name,url\nbackup,{URL}\nother,{URL}\n backup ,{URL}\nBackup,{URL}\nbackup,{URL}\n"
    manifest = parse_manifest(text)
    problem = 'The name "backup" is already used on line 2; give each snapshot its own name.'
    assert [row.problems for row in manifest.rows] == [(), (), (problem,), (), (problem,)]


def test_tags_cells_are_read_and_their_refusals_kept_in_the_row() -> None:
    text = f"name,url,tags\na,{URL},env=prod; team = data\nb,{URL},Name=x\nc,{URL},\n"
    first, second, third = parse_manifest(text).rows
    assert first.tags == {"env": "prod", "team": "data"}
    assert second.problems == (
        "Tag 1 sets the Name tag, which comes from the snapshot's name; remove this tag.",
    )
    assert (third.tags, third.problems) == ({}, ())


# --- JSON lines -------------------------------------------------------------------------------


def test_json_tags_may_be_an_object_or_key_value_text() -> None:
    lines = [
        {"name": "a", "url": URL, "tags": {"env": "prod"}},
        {"name": "b", "url": URL, "tags": "env=prod;team=data"},
        {"name": "c", "url": URL, "tags": ["env=prod"]},
    ]
    first, second, third = parse_manifest("\n".join(map(json.dumps, lines))).rows
    assert first.tags == {"env": "prod"}
    assert second.tags == {"env": "prod", "team": "data"}
    assert third.problems == (
        'Tags must be an object of text keys and values, like {"env": "prod"}; found a list.',
    )


def test_json_size_may_be_a_number_or_text_as_written() -> None:
    lines = '{"name":"a","url":"u","size":10737418240}\n{"name":"b","url":"u","size":" 10 GiB"}\n'
    assert [row.size for row in parse_manifest(lines).rows] == ["10737418240", "10 GiB"]


@pytest.mark.parametrize(
    ("size", "kind"), [("1.5", "a number"), ("true", "true or false"), ("[1]", "a list")]
)
def test_json_size_of_another_type_gets_a_problem(size: str, kind: str) -> None:
    row = only_row(parse_manifest(f'{{"name": "a", "url": "u", "size": {size}}}'))
    assert row.problems == (
        f"The size is {kind}; write it as a whole number of bytes, like 10737418240.",
    )


def test_json_text_fields_of_another_type_get_a_problem_once() -> None:
    row = only_row(parse_manifest('{"name": 7, "url": "u", "description": {"a": 1}}'))
    assert row.problems == (
        "The name is a number; write it as text in double quotes.",
        "The description is an object; write it as text in double quotes.",
    )


def test_json_null_optional_fields_count_as_absent() -> None:
    row = only_row(parse_manifest('{"name": "a", "url": "u", "description": null, "tags": null}'))
    assert (row.description, row.tags, row.problems) == ("", {}, ())
    row = only_row(parse_manifest('{"name": null, "url": "u"}'))
    assert row.problems == ("This row has no name; give every snapshot a name.",)


def test_json_unknown_and_repeated_keys_get_problems() -> None:
    first, second, third = parse_manifest(
        '{"name": "a", "url": "u", "Size": 1}\n'
        '{"name": "a", "name": "b", "url": "u"}\n'
        '{"name": "c", "url": "u", "tags": {"env": "x", "env": "y"}}\n'
    ).rows
    assert first.problems == (
        'This line has an unknown key "Size"; use only name, description, url, size and tags, '
        "in lower case.",
    )
    assert second.problems == ('This line has the key "name" twice; keep only one.',)
    assert third.problems == ('This line has the key "env" twice; keep only one.',)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('"backup"', f"This line is text, not an object; {JSON_ADVICE}."),
        ("42", f"This line is a number, not an object; {JSON_ADVICE}."),
        (
            '{"name": "a" "url": "u"}',
            f"This line is not valid JSON (Expecting ',' delimiter at column 14); {JSON_ADVICE}.",
        ),
        ("[" * 100_000, f"This line nests too deeply to read; {JSON_ADVICE}."),
        (
            '{"size": ' + "9" * 5000 + "}",
            f"This line holds a number too long to read; {JSON_ADVICE}.",
        ),
    ],
)
def test_a_json_line_that_is_not_an_object_gets_a_problem(line: str, problem: str) -> None:
    manifest = parse_manifest(f'{{"name": "ok", "url": "u"}}\n\n{line}\n')
    assert manifest.problem == ""
    assert manifest.rows[0].ok
    assert (manifest.rows[1].number, manifest.rows[1].problems) == (3, (problem,))


def test_an_escaped_nul_in_a_json_cell_gets_a_problem() -> None:
    row = only_row(parse_manifest('{"name": "back\\u0000up", "url": "u", "size": "1\\u0000"}'))
    assert row.problems == (
        "The name contains a NUL character; remove it and save again.",
        "The size contains a NUL character; remove it and save again.",
    )


def test_json_formula_names_and_duplicates_get_the_same_problems_as_csv() -> None:
    manifest = parse_manifest('{"name": "=cmd", "url": "u"}\n{"name": "=cmd", "url": "u"}\n')
    assert manifest.rows[1].problems == (
        f'The name starts with "=", {FORMULA}',
        'The name "=cmd" is already used on line 1; give each snapshot its own name.',
    )


def test_json_lines_with_only_blank_lines_after_a_bom_are_empty() -> None:
    assert refusal("\n\n", filename="x.jsonl").startswith("The manifest is empty.")


# --- never an exception -----------------------------------------------------------------------


def test_a_manifest_is_frozen() -> None:
    manifest = parse_manifest(csv_text(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.problem = "x"  # type: ignore[misc]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600) | st.text(max_size=600).map(str.encode))
def test_any_bytes_give_a_problem_or_rows_never_an_exception(data: bytes) -> None:
    for filename in ("", "x.jsonl"):
        manifest = parse_manifest(data, filename=filename)
        assert bool(manifest.problem) != bool(manifest.rows)
        assert manifest.format in {"csv", "jsonl"}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["name", "url", ",", '"', "\n", "\r", "{", "}", ":", "=", ";", "a"]),
        max_size=60,
    ).map("".join)
)
def test_any_text_of_manifest_syntax_never_raises(text: str) -> None:
    manifest = parse_manifest("name,url,tags\n" + text)
    assert bool(manifest.problem) != bool(manifest.rows)
    manifest = parse_manifest('{"name": "a", "url": "u"}\n' + text)
    assert bool(manifest.problem) != bool(manifest.rows)
