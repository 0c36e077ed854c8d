from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django import forms

from importer.core.net.guard import DestinationRefused
from importer.imports.forms import SnapshotTextForm
from importer.notifications.services import webhook_url_check
from importer.outscale.endpoints import oos_endpoint_check
from importer.teams.models import Team
from importer.transfers.models import DiskImageFormat

_SNAPSHOT_ID = re.compile(r"^snap-[0-9a-f]{8,32}$")


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


class NotifyForm(forms.Form):
    by_email = forms.BooleanField(required=False, initial=True, label="Email me")
    by_webhook = forms.BooleanField(required=False, label="Call the team's webhook")


class TransferSettingsForm(forms.Form):
    oos_endpoint = forms.URLField(
        assume_scheme="https",
        required=False,
        max_length=255,
        label="OOS endpoint",
        help_text="Empty: https://oos.{region}.outscale.com",
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
        return _checked(oos_endpoint_check, self.cleaned_data["oos_endpoint"])

    def clean_webhook_url(self) -> str:
        return _checked(webhook_url_check, self.cleaned_data["webhook_url"])


def _checked(check: Callable[[str], str], value: str) -> str:
    """A person-chosen destination, checked by the outbound guard as it is saved."""
    if not value:
        return ""
    try:
        return check(value)
    except DestinationRefused as refusal:
        raise forms.ValidationError(str(refusal), code="destination_refused") from None
