from __future__ import annotations

from collections.abc import Callable

from django import forms

from importer.core.net.guard import DestinationRefused
from importer.outscale.endpoints import api_endpoint_check
from importer.outscale.regions import OUTSCALE_REGIONS
from importer.teams.models import INVITATION_LIFETIME, MAX_IMPORTS_IN_FLIGHT


def checked_destination(check: Callable[[str], str], value: str) -> str:
    """A destination a team admin chose (empty: the default), checked by the outbound guard."""
    if not value:
        return ""
    try:
        return check(value)
    except DestinationRefused as refusal:
        raise forms.ValidationError(str(refusal), code="destination_refused") from None


def endpoint_field(*, label: str, help_text: str) -> forms.URLField:
    """A team's own endpoint, optional (empty: OUTSCALE's for the Region), as long as Team keeps."""
    return forms.URLField(
        label=label, required=False, max_length=255, assume_scheme="https", help_text=help_text
    )


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
        label="Region", choices=[(region, region) for region in OUTSCALE_REGIONS]
    )
    endpoint = endpoint_field(
        label="API endpoint", help_text="Leave empty for https://api.{region}.outscale.com/api/v1."
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
        # The operators' pre-signed URLs are sent there: the outbound guard decides.
        return checked_destination(api_endpoint_check, self.cleaned_data["endpoint"])

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


class ImportQueueForm(forms.Form):
    """The team's "imports in flight at once": more wait their turn, oldest first."""

    imports_in_flight_limit = forms.IntegerField(
        label="Imports in flight at once",
        min_value=1,
        max_value=MAX_IMPORTS_IN_FLIGHT,
        help_text=(
            f"From 1 to {MAX_IMPORTS_IN_FLIGHT}. Imports beyond it wait for a slot and start "
            "as others finish, oldest first; fewer at once keeps the account clear of the "
            "API's throttling."
        ),
        error_messages={
            "invalid": "Enter a whole number of imports, like 5.",
            "min_value": "At least 1 import must be able to run.",
            "max_value": f"At most {MAX_IMPORTS_IN_FLIGHT}: beyond it the API throttles anyway.",
        },
    )
