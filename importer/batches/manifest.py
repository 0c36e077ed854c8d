"""A bulk-import manifest read into rows, refusing what only a manifest can get wrong.

A manifest is CSV (header `name,description,url,size,tags`) or JSON lines with the same keys.
This module never raises on what a person uploads: a manifest it cannot take at all gets
`Manifest.problem`; a row it can read but not take gets `ManifestRow.problems`. The checks the
IMPORT SNAPSHOT dialog makes (the URL, the size, the name's characters) are left to that form,
which the caller runs on every row, so the two paths cannot drift apart.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from importer.imports.tags import TagError, json_kind, parse_tag_cell, shown, tags_from_mapping

MAX_ROWS = 500
MAX_BYTES = 2 * 1024 * 1024
COLUMNS = ("name", "description", "url", "size", "tags")
REQUIRED_COLUMNS = ("name", "url")
COLUMN_LIST = "name, description, url, size and tags"
HEADER_EXAMPLE = "name,description,url,size,tags"
JSON_EXAMPLE = '{"name": "backup-1", "url": "https://...", "size": 10737418240}'
JSON_ADVICE = f"write one JSON object per line, like {JSON_EXAMPLE}"
UTF8_ADVICE = "Save the file as UTF-8 (in Excel: CSV UTF-8) and upload it again."
TEXT_ADVICE = "Upload a CSV or JSON lines file saved as UTF-8."
EMPTY = (
    f"The manifest is empty. Give a header line such as {HEADER_EXAMPLE} and then one line per "
    "snapshot, or one JSON object per line."
)
CSV_QUOTING = (
    "a cell with a comma, a double quote or a line break must be in double quotes, "
    'with each double quote inside it written twice ("")'
)

# A spreadsheet runs a cell starting with one of these as a formula ("CSV injection") once the
# names come back out in an export; refusing them here keeps every later export safe.
FORMULA_STARTS = frozenset("=+-@\t\r")
FORMULA_SHOWN = {"\t": "a tab", "\r": "a carriage return", **{c: f'"{c}"' for c in "=+-@"}}

# The first bytes of files people upload by mistake, so the message can say what it was.
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or an Excel workbook (.xlsx)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls)"),
    (b"\x1f\x8b", "a gzip archive"),
)
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
UTF8_BOM = b"\xef\xbb\xbf"
# Binary data is judged on its first bytes only: enough to tell, and bounded whatever the size.
SAMPLE = 8192
# C0 controls but tab, LF and CR, and DEL. Text with a stray one still reads (the form names it
# in its row); a file where one byte in 20 is one is binary.
CONTROL_BYTES = tuple(bytes([code]) for code in (*range(32), 127) if code not in (9, 10, 13))


@dataclass(frozen=True)
class ManifestRow:
    """One snapshot of the manifest, as written; `problems` empty when it can go to the form."""

    number: int  # the line in the person's file where this row starts
    name: str = ""
    description: str = ""
    url: str = ""
    size: str = ""  # as written, "" when absent: the dialog's form checks it
    tags: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Manifest:
    """The rows of a manifest, or `problem`, the reason it is refused whole (then no rows)."""

    rows: tuple[ManifestRow, ...] = ()
    problem: str = ""
    format: str = "csv"  # "csv" or "jsonl"

    @property
    def ok(self) -> bool:
        return not self.problem and all(row.ok for row in self.rows)


def parse_manifest(data: bytes | str, *, filename: str = "") -> Manifest:
    """Reads an uploaded (bytes) or pasted (str) manifest; never raises on its content."""
    format_ = _format_of(data, filename)
    rows: list[ManifestRow] = []
    count = 0
    text, refusal = _text_of(data)
    if not refusal and not text.strip():
        refusal = EMPTY
    if not refusal:
        rows, count, refusal = (_jsonl_rows if format_ == "jsonl" else _csv_rows)(text)
    if not refusal and count > MAX_ROWS:
        refusal = (
            f"A manifest holds at most {MAX_ROWS} rows; this one has {count:,}. "
            f"Split it into batches of {MAX_ROWS}."
        )
    if not refusal and count == 0:
        refusal = (
            "The manifest has no rows: under the header, add one line per snapshot."
            if format_ == "csv"
            else f"The manifest has no rows: {JSON_ADVICE}."
        )
    if refusal:
        return Manifest(problem=refusal, format=format_)
    return Manifest(rows=_mark_duplicate_names(rows), format=format_)


def _format_of(data: bytes | str, filename: str) -> str:
    if filename.lower().endswith((".jsonl", ".ndjson")):
        return "jsonl"
    # The first non-blank character tells. Only the first bytes are looked at, which keeps this
    # cheap on data about to be refused for its size.
    head = data[:SAMPLE]
    head = head.encode("utf-8", "surrogatepass") if isinstance(head, str) else head
    return "jsonl" if head.removeprefix(UTF8_BOM).lstrip().startswith(b"{") else "csv"


def mebibytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB ({size:,} bytes)"


def too_big(found: str) -> str:
    """Why a manifest over MAX_BYTES is refused; `found` says how big it is, in words. Shared
    with the form, which refuses an uploaded file by its size before reading it."""
    return (
        f"A manifest is at most {MAX_BYTES // 1024 // 1024} MiB ({MAX_BYTES:,} bytes); {found}. "
        f"Split it into manifests of at most {MAX_ROWS} rows."
    )


def _text_of(data: bytes | str) -> tuple[str, str]:
    """The manifest's text without its BOM, or why it is not a text manifest we take."""
    if isinstance(data, str):
        # A character is at least one byte: past the limit in characters, no need to encode.
        if len(data) > MAX_BYTES:
            return "", too_big(f"this one has {len(data):,} characters")
        data = data.encode("utf-8", "surrogatepass")  # pasted text gets the same checks
    # The size first, before anything copies or decodes: 50 MB is refused at the cost of len().
    if len(data) > MAX_BYTES:
        return "", too_big(f"this one is {mebibytes(len(data))}")
    for signature, kind in SIGNATURES:
        if data.startswith(signature):
            return "", f"This is not a text manifest: it looks like {kind}. {TEXT_ADVICE}"
    if data.startswith(UTF16_BOMS):
        return "", f"This manifest is saved as UTF-16 text. {UTF8_ADVICE}"
    if b"\0" in data:
        return "", (
            "This is not a text manifest: it contains NUL bytes, as binary files and UTF-16 "
            f"text do. {TEXT_ADVICE}"
        )
    controls = sum(data[:SAMPLE].count(byte) for byte in CONTROL_BYTES)
    if controls >= 2 and controls * 20 > min(len(data), SAMPLE):
        return "", (
            "This is not a text manifest: it is full of control characters, as binary files "
            f"are. {TEXT_ADVICE}"
        )
    try:
        return data.decode("utf-8").removeprefix("\ufeff"), ""
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        # UTF-8 non-ASCII text before the bad byte means two encodings in one file, as when
        # lines saved by different programs are pasted together.
        mixed = " (the text before it is UTF-8, so the file mixes encodings)"
        return "", (
            f"The manifest is not valid UTF-8: byte 0x{data[error.start]:02X} at offset "
            f"{error.start:,}, on line {line}, is not UTF-8 text"
            f"{mixed if not data[: error.start].isascii() else ''}. {UTF8_ADVICE}"
        )


def _csv_rows(text: str) -> tuple[list[ManifestRow], int, str]:
    """The rows (at most MAX_ROWS kept), how many there are in all, or why the CSV is refused."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns: list[str] | None = None
    rows: list[ManifestRow] = []
    count = last_line = 0
    try:
        for record in reader:
            # A quoted cell can span lines: a row is numbered where it starts.
            number, last_line = last_line + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if columns is None:
                refusal = _header_refusal(record)
                if refusal:
                    return [], 0, refusal
                columns = [cell.strip().lower() for cell in record]
                continue
            count += 1
            # Past the limit rows are only counted, so the refusal can say how many there are.
            if count <= MAX_ROWS:
                rows.append(_csv_row(number, columns, record))
    except csv.Error as error:
        problem = f"Line {last_line + 1} cannot be read as CSV ({error}): {CSV_QUOTING}."
        return [], 0, f"{problem} Fix that line and upload the manifest again."
    if columns is None:  # nothing but empty cells
        return [], 0, EMPTY
    return rows, count, ""


def _header_refusal(record: list[str]) -> str:
    names = [cell.strip().lower() for cell in record]
    if not any(name in COLUMNS for name in names):
        if record[0].lstrip().startswith("["):  # a JSON array, a common near miss
            return f"This looks like a JSON array, not JSON lines: {JSON_ADVICE}, with no [ ]."
        if len(record) == 1:
            for separator, word in ((";", "semicolons"), ("\t", "tabs")):
                if any(part.strip().lower() in COLUMNS for part in record[0].split(separator)):
                    return (
                        f"The columns are separated by {word}; save the file with commas "
                        "between columns (in Excel: CSV UTF-8) and upload it again."
                    )
        return (
            f"The first line must be the header, such as {HEADER_EXAMPLE}; it is "
            f"{shown(','.join(record))}. Add the header as the first line."
        )
    for index, name in enumerate(names, start=1):
        if not name:
            return (
                f"Column {index} of the header is empty; name it or remove the extra comma. "
                f"The columns are {COLUMN_LIST}."
            )
        if name not in COLUMNS:
            return (
                f"The header has an unknown column {shown(name)} (column {index}); "
                f"use only {COLUMN_LIST}."
            )
        first = names.index(name) + 1
        if first != index:
            return (
                f"The header names the column {shown(name)} twice (columns {first} and "
                f"{index}); keep only one."
            )
    missing = [column for column in REQUIRED_COLUMNS if column not in names]
    if missing:
        what = " and ".join(missing) + (" columns" if len(missing) > 1 else " column")
        return (
            f"The header has no {what}; every manifest needs name and url. "
            f"Use a header such as {HEADER_EXAMPLE}."
        )
    return ""


def _csv_row(number: int, columns: list[str], record: list[str]) -> ManifestRow:
    problems: list[str] = []
    if len(record) != len(columns):
        problems.append(
            f"This line has {len(record)} cells but the header has {len(columns)} columns: "
            f"{CSV_QUOTING}. Give every line the header's columns."
        )
    cells: dict[str, str | None] = dict(zip(columns, record, strict=False))
    return _row(number, cells, cells.get("tags"), problems)


def _jsonl_rows(text: str) -> tuple[list[ManifestRow], int, str]:
    rows: list[ManifestRow] = []
    count = 0
    # Split on "\n" only, one line at a time: a JSON string may hold U+2028 but never a newline.
    for number, line in enumerate(io.StringIO(text, newline="\n"), start=1):
        line = line.removesuffix("\n").removesuffix("\r")
        if not line.strip():
            continue
        count += 1
        if count <= MAX_ROWS:
            rows.append(_json_row(number, line))
    return rows, count, ""


class _DuplicateKeyError(Exception):
    """A key given twice in one JSON object: args[0] is the key."""


def _without_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # json.loads keeps the last of two equal keys silently; a row must not mean two things.
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _loaded(line: str) -> tuple[object, str]:
    """The JSON value of a line, or why it has none."""
    try:
        return json.loads(line, object_pairs_hook=_without_duplicate_keys), ""
    except _DuplicateKeyError as error:
        return None, f"This line has the key {shown(str(error.args[0]))} twice; keep only one."
    except RecursionError:
        return None, f"This line nests too deeply to read; {JSON_ADVICE}."
    except json.JSONDecodeError as error:
        where = f"{error.msg} at column {error.colno}"
        return None, f"This line is not valid JSON ({where}); {JSON_ADVICE}."
    except ValueError:  # an integer of thousands of digits, which Python refuses to convert
        return None, f"This line holds a number too long to read; {JSON_ADVICE}."


def _json_row(number: int, line: str) -> ManifestRow:
    value, problem = _loaded(line)
    if problem or not isinstance(value, dict):
        kind = f"This line is {json_kind(value)}, not an object; {JSON_ADVICE}."
        return ManifestRow(number, problems=(problem or kind,))
    problems = [
        f"This line has an unknown key {shown(key)}; use only {COLUMN_LIST}, in lower case."
        for key in value
        if key not in COLUMNS
    ]
    # None marks a value of the wrong type: reported here, so not reported again as missing.
    cells: dict[str, str | None] = {}
    for column in ("name", "description", "url", "size"):
        item = value.get(column)
        if item is None or isinstance(item, str):  # absent or null: optional, or missing
            cells[column] = item or ""
        elif column == "size" and isinstance(item, int) and not isinstance(item, bool):
            cells[column] = str(item)
        else:
            cells[column] = None
            problems.append(
                f"The size is {json_kind(item)}; write it as a whole number of bytes, "
                "like 10737418240."
                if column == "size"
                else f"The {column} is {json_kind(item)}; write it as text in double quotes."
            )
    return _row(number, cells, value.get("tags"), problems)


def _formula_problem(what: str, text: str) -> str:
    # Some spreadsheets trim leading spaces before deciding: " =1+1" counts too.
    starts = [candidate[:1] for candidate in (text, text.lstrip(" "))]
    start = next((start for start in starts if start in FORMULA_STARTS), "")
    return (
        f"The {what} starts with {FORMULA_SHOWN[start]}, so it looks like a "
        "spreadsheet formula; start it with a letter or a digit instead."
        if start
        else ""
    )


def _row(
    number: int, cells: Mapping[str, str | None], tags: object, problems: list[str]
) -> ManifestRow:
    """The checks both formats share, on cells already known to be text (or None, reported)."""
    text = {column: cells.get(column) or "" for column in ("name", "description", "url", "size")}
    for column, value in text.items():
        if "\0" in value:
            problems.append(f"The {column} contains a NUL character; remove it and save again.")
    for column in ("name", "description"):
        if problem := _formula_problem(column, text[column]):
            problems.append(problem)
    # Stripped as the dialog's form strips them, so duplicates compare what would be saved.
    name, url = text["name"].strip(), text["url"].strip()
    parsed_tags = _tags(tags, problems)
    if not name and cells.get("name", "") is not None:
        problems.append("This row has no name; give every snapshot a name.")
    if not url and cells.get("url", "") is not None:
        problems.append("This row has no url; give the pre-signed URL of the snapshot.")
    return ManifestRow(
        number=number,
        name=name,
        description=text["description"].strip(),
        url=url,
        size=text["size"].strip(),
        tags=parsed_tags,
        problems=tuple(problems),
    )


def _tags(value: object, problems: list[str]) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if isinstance(value, str) and (problem := _formula_problem("text of the tags", value)):
        problems.append(problem)
        return {}
    try:
        tags = parse_tag_cell(value) if isinstance(value, str) else tags_from_mapping(value)
    except TagError as error:
        problems.append(str(error))
        return {}
    # Each key starts a line when tags are written as key=value, and so a cell when pasted back.
    for key in tags:
        if problem := _formula_problem(f"tag key {shown(key)}", key):
            problems.append(problem)
    return tags


def _mark_duplicate_names(rows: list[ManifestRow]) -> tuple[ManifestRow, ...]:
    first_at: dict[str, int] = {}
    marked: list[ManifestRow] = []
    for row in rows:
        first = first_at.setdefault(row.name, row.number) if row.name else row.number
        if first != row.number:
            problem = (
                f"The name {shown(row.name)} is already used on line {first}; "
                "give each snapshot its own name."
            )
            row = replace(row, problems=(*row.problems, problem))
        marked.append(row)
    return tuple(marked)
