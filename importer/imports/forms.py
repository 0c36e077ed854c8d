from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone

from importer.core.text import refuse_invisible_characters
from importer.core.units import GIB
from importer.imports.models import JobState
from importer.imports.tags import TagError, parse_tag_lines
from importer.presigned import fetch
from importer.presigned.fetch import Inspection
from importer.presigned.policy import url_policy
from importer.presigned.sniff import format_gib
from importer.presigned.urls import PresignedUrl, PresignedUrlError, parse_presigned_url

# The largest volume OUTSCALE allows: 14,901 GiB.
MAX_SNAPSHOT_SIZE = 14901 * GIB


MAX_NAME_LENGTH = 255


MAX_DESCRIPTION_LENGTH = 1000


class SnapshotTextForm(forms.Form):
    """Name and Description as the IMPORT SNAPSHOT dialog checks them.

    Every form that names a snapshot (the dialog, a copy to another team) inherits these two
    fields, so no path lets a name through that the dialog would refuse.
    """

    name = forms.CharField(
        label="Name",
        max_length=MAX_NAME_LENGTH,
        help_text="The name of the snapshot in your account (its Name tag).",
        error_messages={
            "required": "Enter a name for the snapshot.",
            "max_length": "Use at most 255 characters for the name (it has %(show_value)d).",
            "null_characters_not_allowed": "The name contains a NUL control character; "
            "retype it without that character.",
        },
    )
    description = forms.CharField(
        label="Description",
        required=False,
        max_length=MAX_DESCRIPTION_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional. A description for the snapshot.",
        error_messages={
            "max_length": "Use at most 1000 characters for the description (it has %(show_value)d)."
        },
    )

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        refuse_invisible_characters(name, field="name")
        if not name:
            raise forms.ValidationError("Enter a name for the snapshot.", code="required")
        return name

    def clean_description(self) -> str:
        description: str = self.cleaned_data["description"]
        refuse_invisible_characters(description, field="description", allow_newlines=True)
        return description


class ImportSnapshotForm(SnapshotTextForm):
    tags = forms.CharField(
        label="Tags",
        required=False,
        max_length=20_000,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "autocomplete": "off"}),
        help_text="Optional. One key=value a line, e.g. env=production; the Name tag is the "
        "name above.",
        error_messages={"max_length": "Keep the tags under 20,000 characters (50 tags at most)."},
    )
    presigned_url = forms.CharField(
        label="Object Pre-signed URL",
        max_length=4096,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "autocomplete": "off"}),
        help_text="The pre-signed URL of the exported snapshot in the bucket.",
        error_messages={
            "required": "Paste the pre-signed URL of the snapshot object.",
            "max_length": "This URL is %(show_value)d characters long; a pre-signed URL is at "
            "most 4096. Copy it again from its source.",
            "null_characters_not_allowed": "The URL contains a NUL control character; copy it "
            "again from its source.",
        },
    )
    snapshot_size = forms.CharField(
        label="Snapshot Size",
        max_length=40,
        help_text="In bytes. At least the size of the original, uncompressed snapshot.",
        error_messages={
            "required": "Enter the snapshot size in bytes.",
            "max_length": "Enter the size as a whole number of bytes, at most 14901 GiB.",
            "null_characters_not_allowed": "Enter the size as a whole number of bytes, "
            "digits only.",
        },
    )
    dry_run = forms.BooleanField(
        label="Only check permissions (dry run)",
        required=False,
        help_text="Asks the API whether this import would be allowed, without importing.",
    )

    def __init__(self, *args: Any, inspection: Inspection | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parsed_url: PresignedUrl | None = None
        # An inspection already made of this very URL (a manifest's preview reads each object
        # once); without one the form reads the object's first bytes itself.
        self.inspection: Inspection | None = inspection

    def clean_tags(self) -> dict[str, str]:
        try:
            return parse_tag_lines(self.cleaned_data["tags"])
        except TagError as error:
            raise forms.ValidationError(str(error), code="tags") from None

    def clean_presigned_url(self) -> str:
        raw: str = self.cleaned_data["presigned_url"]
        try:
            self.parsed_url = parse_presigned_url(raw, policy=url_policy(), now=timezone.now())
        except PresignedUrlError as error:
            raise forms.ValidationError(str(error), code="invalid_url") from None
        return raw

    def clean_snapshot_size(self) -> int:
        raw = self.cleaned_data["snapshot_size"].replace(" ", "").replace("_", "")
        if not raw.isascii() or not raw.isdigit():
            raise forms.ValidationError(
                "Enter the size as a whole number of bytes, digits only (e.g. 10737418240 "
                "for 10 GiB).",
                code="not_a_number",
            )
        size = int(raw)
        if size < 1:
            raise forms.ValidationError("The size must be at least 1 byte.", code="too_small")
        if size > MAX_SNAPSHOT_SIZE:
            raise forms.ValidationError(
                f"The size is larger than the largest volume OUTSCALE allows (14901 GiB = "
                f"{MAX_SNAPSHOT_SIZE} bytes).",
                code="too_large",
            )
        return size

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.parsed_url is not None:
            if self.inspection is None:
                self.inspection = fetch.inspect_presigned_url(self.parsed_url, policy=url_policy())
            if self.inspection.refusal:
                self.add_error("presigned_url", self.inspection.refusal)
        size = cleaned.get("snapshot_size")
        needed = self.required_size
        if isinstance(size, int) and needed is not None and size < needed:
            info = self.inspection.info if self.inspection else None
            self.add_error(
                "snapshot_size",
                forms.ValidationError(
                    f"The image needs at least {needed} bytes ({format_gib(needed)}): "
                    f"{info.explanation if info else ''} Enter {needed} or more.",
                    code="smaller_than_image",
                ),
            )
        return cleaned

    @property
    def required_size(self) -> int | None:
        """The uncompressed size the inspection found, when it could tell."""
        info = self.inspection.info if self.inspection else None
        return info.suggested_size if info else None


class HistoryFilterForm(forms.Form):
    user = forms.CharField(label="User", required=False, max_length=150)
    state = forms.ChoiceField(
        label="State",
        required=False,
        choices=[("", "Any state"), *JobState.choices],
    )
    since = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    q = forms.CharField(label="Search", required=False, max_length=200)
    sort = forms.ChoiceField(
        label="Sort",
        required=False,
        choices=[
            ("-created", "Newest first"),
            ("created", "Oldest first"),
            ("name", "Name A-Z"),
            ("-name", "Name Z-A"),
            ("-size", "Largest first"),
            ("size", "Smallest first"),
        ],
    )
