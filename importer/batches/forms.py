"""The bulk import's preview: each manifest row checked exactly as the IMPORT SNAPSHOT dialog
checks one (its own form), each object inspected once, in parallel and bounded."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from importer.batches.manifest import MAX_BYTES, ManifestRow, mebibytes, parse_manifest, too_big
from importer.batches.rows import READY, REFUSED, WARNING, Preview, RowVerdict
from importer.imports.forms import ImportSnapshotForm
from importer.imports.tags import format_tag_lines
from importer.presigned import fetch
from importer.presigned.policy import url_policy
from importer.presigned.sniff import format_gib
from importer.presigned.urls import PresignedUrlError, parse_presigned_url

# Objects read at once while previewing: enough to preview 500 rows in seconds, few enough
# that one preview cannot flood an object store (or the portal's own outbound connections).
INSPECTIONS_IN_PARALLEL = 8
# A URL that stops working within this long may not last the import: said as a warning.
EXPIRES_SOON = timedelta(hours=1)


def preview_manifest(data: bytes | str, *, filename: str = "") -> Preview:
    """Every row's verdict; a manifest refused as a whole says why in `problem`."""
    manifest = parse_manifest(data, filename=filename)
    if manifest.problem:
        return Preview(rows=(), problem=manifest.problem)
    now = timezone.now()
    with ThreadPoolExecutor(max_workers=INSPECTIONS_IN_PARALLEL) as pool:
        verdicts = tuple(pool.map(lambda row: _verdict(row, now=now), manifest.rows))
    return Preview(rows=verdicts)


def _verdict(row: ManifestRow, *, now: datetime) -> RowVerdict:
    if row.problems:
        return RowVerdict(row, REFUSED, row.problems)
    inspection = _inspect(row.url, now=now)
    size_found = ""
    size = row.size
    info = inspection.info if inspection else None
    if not size and info and info.suggested_size:
        size, size_found = str(info.suggested_size), info.explanation
    form = ImportSnapshotForm(
        {
            "name": row.name,
            "description": row.description,
            "presigned_url": row.url,
            "snapshot_size": size,
            "tags": format_tag_lines(row.tags),
        },
        inspection=inspection,
    )
    if not form.is_valid():
        return RowVerdict(row, REFUSED, tuple(_messages(form)))
    chosen: int = form.cleaned_data["snapshot_size"]
    warnings = _warnings(form, chosen, now=now)
    return RowVerdict(
        row,
        WARNING if warnings else READY,
        tuple(warnings),
        url=form.parsed_url,
        snapshot_size=chosen,
        size_found=size_found,
    )


def _inspect(raw: str, *, now: datetime) -> fetch.Inspection | None:
    """The object's header, read once for the row (the form then checks against it)."""
    try:
        url = parse_presigned_url(raw, policy=url_policy(), now=now)
    except PresignedUrlError:
        return None  # the form says why
    return fetch.inspect_presigned_url(url, policy=url_policy())


def _messages(form: ImportSnapshotForm) -> Iterable[str]:
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else ""
        for error in errors:
            yield f"{label}: {error}" if label else str(error)


def _warnings(form: ImportSnapshotForm, size: int, *, now: datetime) -> list[str]:
    warnings = []
    url = form.parsed_url
    if url is not None and url.expires_at - now < EXPIRES_SOON:
        minutes = max(int((url.expires_at - now).total_seconds() // 60), 0)
        warnings.append(
            f"The URL expires in {minutes} min: the import may not finish before. "
            "Generate a URL valid for longer."
        )
    needed = form.required_size
    if needed is not None and size > needed:
        warnings.append(
            f"The size is above what the image needs ({format_gib(needed)}): the volume will "
            "be larger than the original."
        )
    if form.inspection is not None and form.inspection.warning and form.inspection.info is None:
        warnings.append(form.inspection.warning)
    return warnings


class ManifestForm(forms.Form):
    """IMPORT SNAPSHOTS: a manifest pasted, or uploaded as a file (the file wins)."""

    # No max_length: a browser cuts a paste at a textarea's maxlength without a word, which
    # would drop the last rows unseen. parse_manifest refuses a long one, saying how long.
    manifest = forms.CharField(
        label="Manifest",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false", "autocomplete": "off"}),
        help_text="CSV with the header name,description,url,size,tags (size and tags optional; "
        "tags as key=value;key=value), or JSON lines with the same keys. Up to 500 rows.",
        error_messages={
            "null_characters_not_allowed": "The manifest contains NUL characters, as binary "
            "files do: paste the text of a CSV or JSON lines manifest, or upload its file."
        },
    )
    manifest_file = forms.FileField(
        label="Or upload a file", required=False, help_text="A .csv or .jsonl file, UTF-8."
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("manifest_file")
        if upload is not None:
            if upload.size is not None and upload.size > MAX_BYTES:
                # Refused by its size alone: nothing of a 50 MB file is read.
                self.add_error("manifest_file", too_big(f"this file is {mebibytes(upload.size)}"))
                return data
            data["content"] = upload.read(MAX_BYTES + 1)
            data["filename"] = str(upload.name or "")[:255]
        elif data.get("manifest", "").strip():
            data["content"], data["filename"] = data["manifest"], ""
        elif not self.errors:
            raise forms.ValidationError("Paste a manifest or choose its file.", code="no_manifest")
        return data
