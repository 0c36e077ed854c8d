"""The IMPORT SNAPSHOT form: Cockpit's four fields, validated so that no bad value reaches a job."""

from __future__ import annotations

import unicodedata
from typing import Any

from django import forms
from django.utils import timezone

from importer import destinations, net, presigned
from importer.invitations import INVITATION_LIFETIME
from importer.models import GIB, JobState

# The largest volume OUTSCALE allows: 14,901 GiB.
MAX_SNAPSHOT_SIZE = 14901 * GIB
MAX_NAME_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 1000
# Unicode categories that have no business in a name: controls, format characters (bidi
# overrides, zero-width joiners used for spoofing), surrogates, private use, unassigned,
# line and paragraph separators.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def url_policy() -> presigned.UrlPolicy:
    return destinations.presigned_url_policy()


def _refuse_invisible_characters(value: str, *, field: str, allow_newlines: bool = False) -> None:
    for char in value:
        if allow_newlines and char in "\n\t":
            continue
        if unicodedata.category(char) in FORBIDDEN_CATEGORIES:
            raise forms.ValidationError(
                f"The {field} contains an invisible or control character "
                f"(U+{ord(char):04X}); retype it without that character.",
                code="control_character",
            )


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
        _refuse_invisible_characters(name, field="name")
        if not name:
            raise forms.ValidationError("Enter a name for the snapshot.", code="required")
        return name

    def clean_description(self) -> str:
        description: str = self.cleaned_data["description"]
        _refuse_invisible_characters(description, field="description", allow_newlines=True)
        return description


class ImportSnapshotForm(SnapshotTextForm):
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

    def __init__(self, *args: Any, inspect: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parsed_url: presigned.PresignedUrl | None = None
        self.inspection: presigned.Inspection | None = None
        self._inspect = inspect

    def clean_presigned_url(self) -> str:
        raw: str = self.cleaned_data["presigned_url"]
        try:
            self.parsed_url = presigned.parse_presigned_url(
                raw, policy=url_policy(), now=timezone.now()
            )
        except presigned.PresignedUrlError as error:
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
        if self.parsed_url is not None and self._inspect:
            self.inspection = presigned.inspect_presigned_url(self.parsed_url, policy=url_policy())
            if self.inspection.refusal:
                self.add_error("presigned_url", self.inspection.refusal)
        size = cleaned.get("snapshot_size")
        needed = self.required_size
        if isinstance(size, int) and needed is not None and size < needed:
            info = self.inspection.info if self.inspection else None
            self.add_error(
                "snapshot_size",
                forms.ValidationError(
                    f"The image needs at least {needed} bytes ({presigned.format_gib(needed)}): "
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


# --- Team administration ------------------------------------------------------------------

ROLE_CHOICES = [
    ("operator", "Operator: imports and follows imports"),
    ("admin", "Team admin: also history, members, credentials, deleting snapshots"),
    ("auditor", "Auditor: reads everything, changes nothing"),
]


class MemberForm(forms.Form):
    """Invites an existing portal user (by user name or email address) to the team."""

    username = forms.CharField(
        label="User name or email address",
        max_length=254,
        help_text="They join the team once they accept the invitation (valid "
        f"{INVITATION_LIFETIME.days} days).",
        error_messages={
            "required": "Enter the user name or email address of an existing portal user.",
            "max_length": "Use at most 254 characters (this has %(show_value)d).",
        },
    )
    role = forms.ChoiceField(label="Role", choices=ROLE_CHOICES)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=ROLE_CHOICES)


class CredentialsForm(forms.Form):
    region = forms.ChoiceField(
        label="Region", choices=[(region, region) for region in presigned.OUTSCALE_REGIONS]
    )
    endpoint = forms.URLField(
        label="API endpoint",
        required=False,
        max_length=255,
        assume_scheme="https",
        help_text="Leave empty for https://api.{region}.outscale.com/api/v1.",
    )
    access_key = forms.CharField(label="Access key", max_length=64, strip=True)
    secret_key = forms.CharField(
        label="Secret key",
        max_length=128,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted; never shown again. Enter it again to replace it.",
    )

    def clean_endpoint(self) -> str:
        endpoint: str = self.cleaned_data["endpoint"]
        if not endpoint:
            return ""
        # The operators' pre-signed URLs are sent there: the outbound guard decides.
        try:
            return destinations.api_endpoint_check(endpoint)
        except net.DestinationRefused as refusal:
            raise forms.ValidationError(str(refusal), code="destination_refused") from None

    def clean_access_key(self) -> str:
        key: str = self.cleaned_data["access_key"]
        if not key.isascii() or not key.isalnum():
            raise forms.ValidationError(
                "An access key has letters and digits only; copy it again.", code="bad_key"
            )
        return key

    def clean_secret_key(self) -> str:
        secret: str = self.cleaned_data["secret_key"]
        if not secret.isascii() or any(char.isspace() or not char.isprintable() for char in secret):
            raise forms.ValidationError(
                "A secret key has no spaces or control characters; copy it again.",
                code="bad_secret",
            )
        return secret


SORTS = {
    "-created": ("-created_at", "-id"),
    "created": ("created_at", "id"),
    "name": ("name", "id"),
    "-name": ("-name", "-id"),
    "-size": ("-snapshot_size", "-id"),
    "size": ("snapshot_size", "id"),
}


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


class AuditFilterForm(forms.Form):
    actor = forms.CharField(label="Who", required=False, max_length=150)
    action = forms.CharField(label="Action", required=False, max_length=40)
    since = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    q = forms.CharField(label="Target", required=False, max_length=200)
