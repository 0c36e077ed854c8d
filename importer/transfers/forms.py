from __future__ import annotations

import re
from typing import Any

from django import forms

from importer.imports.forms import SnapshotTextForm
from importer.notifications.services import webhook_url_check
from importer.outscale.endpoints import oos_endpoint_check
from importer.teams.forms import checked_destination, endpoint_field
from importer.teams.models import Team
from importer.transfers.models import DiskImageFormat, ExportDestination

# S3 bucket names as OOS accepts them.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


LIFETIMES = [
    (3600, "1 hour"),
    (6 * 3600, "6 hours"),
    (24 * 3600, "1 day"),
    (3 * 24 * 3600, "3 days"),
    (7 * 24 * 3600, "7 days"),
]


class ExportForm(forms.Form):
    bucket = forms.CharField(max_length=63, label="Bucket")
    osu_prefix = forms.CharField(
        max_length=512,
        required=False,
        label="Prefix",
        help_text="Optional, e.g. backups/ (the object is named prefix + snapshot ID).",
    )
    disk_image_format = forms.ChoiceField(
        choices=DiskImageFormat.choices, initial=DiskImageFormat.QCOW2, label="Format"
    )

    def clean_bucket(self) -> str:
        bucket: str = self.cleaned_data["bucket"].strip()
        if not _BUCKET.match(bucket):
            raise forms.ValidationError(
                "Use 3 to 63 lower-case letters, digits, dots and hyphens, as OOS requires."
            )
        return bucket

    def clean_osu_prefix(self) -> str:
        prefix: str = self.cleaned_data["osu_prefix"].strip()
        if any(not ch.isprintable() for ch in prefix) or prefix.startswith("/"):
            raise forms.ValidationError("Use printable characters, not starting with /.")
        return prefix

    @property
    def destination(self) -> ExportDestination:
        """Where the valid form sends the image: what export_create and copy_create take."""
        data = self.cleaned_data
        return ExportDestination(data["bucket"], data["osu_prefix"], data["disk_image_format"])


class CopyForm(SnapshotTextForm, ExportForm):
    """The copy's name and description are checked as the import dialog checks them."""

    target_team = forms.TypedChoiceField(coerce=int, label="Copy to team")

    def __init__(self, *args: Any, teams: list[Team], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["name"].label = "Name of the copy"
        self.fields["name"].help_text = "The name of the copy in the other team's account."
        field = self.fields["target_team"]
        assert isinstance(field, forms.TypedChoiceField)  # noqa: S101 - declared above
        field.choices = [(team.pk, f"{team.name} ({team.region})") for team in teams]


class ShareForm(forms.Form):
    lifetime = forms.TypedChoiceField(
        choices=LIFETIMES, coerce=int, initial=24 * 3600, label="Valid for"
    )


class TransferSettingsForm(forms.Form):
    oos_endpoint = endpoint_field(
        label="OOS endpoint", help_text="Empty: https://oos.{region}.outscale.com"
    )
    webhook_url = forms.URLField(
        assume_scheme="https",
        required=False,
        max_length=2000,
        label="Webhook URL",
        help_text="https:// on a public host. Stored encrypted and never shown again: leave "
        "empty to keep the current one.",
    )
    webhook_secret = forms.CharField(
        required=False,
        min_length=16,
        max_length=200,
        label="Webhook secret",
        widget=forms.PasswordInput,
        help_text="Signs each delivery (HMAC-SHA256). Leave empty to keep the current one.",
    )
    remove_webhook = forms.BooleanField(required=False, label="Remove the webhook")

    def clean_oos_endpoint(self) -> str:
        return checked_destination(oos_endpoint_check, self.cleaned_data["oos_endpoint"])

    def clean_webhook_url(self) -> str:
        return checked_destination(webhook_url_check, self.cleaned_data["webhook_url"])
