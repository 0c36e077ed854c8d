"""The dialogs of a snapshot's actions: CREATE VOLUME, CREATE OMI, UPDATE SNAPSHOT PERMISSIONS,
COPY SNAPSHOT and EDIT TAGS, each checking what the API would refuse before anything is sent.

Every limit is the API's own (outscale.yaml and OUTSCALE's documentation), so a refusal is a
field's message here rather than an error from a worker later.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django import forms

from importer.core.text import refuse_invisible_characters
from importer.imports.forms import SnapshotTextForm
from importer.outscale.lifecycle_resources import IMAGE_BOOT_MODES, VOLUME_TYPES
from importer.outscale.resources import SnapshotPermissions

# The largest volume OUTSCALE makes, in GiB.
MAX_VOLUME_GIB = 14901

# io1 volumes: between 100 and 13,000 IOPS, and at most 300 per GiB.
MIN_IOPS = 100
MAX_IOPS = 13000
MAX_IOPS_PER_GIB = 300

VOLUME_TYPE_CHOICES = [
    ("standard", "standard (Magnetic)"),
    ("gp2", "gp2 (Performance)"),
    ("io1", "io1 (Enterprise, provisioned IOPS)"),
]
assert {value for value, _ in VOLUME_TYPE_CHOICES} == set(VOLUME_TYPES)  # noqa: S101

ARCHITECTURES = [("x86_64", "x86_64"), ("i386", "i386")]
BOOT_MODES = [(mode, mode) for mode in IMAGE_BOOT_MODES]

# An OMI's name: 3 to 128 letters, digits, spaces and _ ( ) / . - (outscale.yaml's rule).
_IMAGE_NAME = re.compile(r"^[A-Za-z0-9 _()/.\-]{3,128}$")
# The only root device name the API takes for an OMI registered from a snapshot.
ROOT_DEVICE_NAME = "/dev/sda1"
_DIGITS = re.compile(r"^[0-9]{1,40}$")
_ACCOUNT_ID = re.compile(r"^[0-9]{12}$")

MAX_TAG_KEY = 255
MAX_TAG_VALUE = 255
MAX_TAGS = 50


class DigitsField(forms.IntegerField):
    """A whole number typed as ASCII digits only, as the import dialog's size is: no sign, no
    decimal point, no underscore, no other script's digits (all of which int() would take)."""

    def to_python(self, value: Any) -> int | None:
        text = str(value).strip() if value is not None else ""
        if text in self.empty_values:
            return None
        if not _DIGITS.match(text):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(text)


def _size_field(label: str, min_gib: int) -> forms.IntegerField:
    return DigitsField(
        label=label,
        min_value=min_gib,
        max_value=MAX_VOLUME_GIB,
        initial=min_gib,
        help_text=f"In GiB: at least the snapshot's {min_gib} GiB, at most {MAX_VOLUME_GIB}.",
        error_messages={
            "required": "Enter a size in GiB.",
            "invalid": "Enter a whole number of GiB.",
            "min_value": f"Use at least {min_gib} GiB: the snapshot's size.",
            "max_value": f"OUTSCALE volumes are at most {MAX_VOLUME_GIB} GiB.",
        },
    )


class VolumeTypeMixin(forms.Form):
    """Volume type and IOPS, checked together: IOPS apply to io1 only, and io1 needs them."""

    size_field = "size_gib"

    volume_type = forms.ChoiceField(
        label="Volume type", choices=VOLUME_TYPE_CHOICES, initial="standard"
    )
    iops = DigitsField(
        label="IOPS",
        required=False,
        min_value=MIN_IOPS,
        max_value=MAX_IOPS,
        help_text=f"io1 only: {MIN_IOPS} to {MAX_IOPS:,}, at most {MAX_IOPS_PER_GIB} per GiB.",
        error_messages={
            "invalid": "Enter a whole number of IOPS.",
            "min_value": f"Use at least {MIN_IOPS} IOPS.",
            "max_value": f"Use at most {MAX_IOPS:,} IOPS.",
        },
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        volume_type, iops = data.get("volume_type"), data.get("iops")
        size = data.get(self.size_field)
        if volume_type == "io1" and iops is None and "iops" not in self.errors:
            self.add_error("iops", "An io1 volume needs its number of IOPS.")
        elif volume_type in ("standard", "gp2") and iops is not None:
            self.add_error("iops", "IOPS are set for io1 volumes only: clear this field.")
        elif volume_type == "io1" and iops and size and iops > size * MAX_IOPS_PER_GIB:
            self.add_error(
                "iops",
                f"A {size} GiB io1 volume takes at most {size * MAX_IOPS_PER_GIB:,} IOPS "
                f"({MAX_IOPS_PER_GIB} per GiB).",
            )
        return data


class VolumeForm(VolumeTypeMixin):
    """CREATE VOLUME: where, what type and how big a volume to make from the snapshot."""

    subregion_name = forms.ChoiceField(label="Subregion")
    field_order = ["subregion_name", "volume_type", "size_gib", "iops"]

    def __init__(self, *args: Any, subregions: list[str], min_size_gib: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        field: Any = self.fields["subregion_name"]
        field.choices = [(name, name) for name in subregions]
        self.fields["size_gib"] = _size_field("Size", min_size_gib)
        self.order_fields(self.field_order)

    def parameters(self) -> dict[str, Any]:
        """What the job sends to CreateVolume, as the form checked it."""
        data = self.cleaned_data
        return {
            "subregion_name": data["subregion_name"],
            "volume_type": data["volume_type"],
            "size_gib": data["size_gib"],
            "iops": data["iops"],
        }


class ImageForm(VolumeTypeMixin):
    """CREATE OMI: an OMI whose root volume is made from the snapshot."""

    size_field = "volume_size_gib"

    image_name = forms.CharField(
        label="OMI name",
        max_length=128,
        help_text="3 to 128 characters: letters, digits, spaces and _ ( ) / . -",
        error_messages={"required": "Enter a name for the OMI."},
    )
    description = forms.CharField(
        label="Description", required=False, max_length=255, widget=forms.Textarea({"rows": 2})
    )
    architecture = forms.ChoiceField(label="Architecture", choices=ARCHITECTURES)
    boot_mode = forms.ChoiceField(label="Boot mode", choices=BOOT_MODES, initial="legacy")
    root_device_name = forms.CharField(label="Root device name", max_length=32, initial="/dev/sda1")
    delete_on_vm_deletion = forms.BooleanField(
        label="Delete on VM deletion",
        required=False,
        initial=True,
        help_text="Delete the root volume when a VM made from this OMI is deleted.",
    )
    field_order = [
        "image_name",
        "description",
        "architecture",
        "boot_mode",
        "root_device_name",
        "volume_type",
        "volume_size_gib",
        "iops",
        "delete_on_vm_deletion",
    ]

    def __init__(self, *args: Any, min_size_gib: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["volume_size_gib"] = _size_field("Volume size", min_size_gib)
        self.order_fields(self.field_order)

    def clean_image_name(self) -> str:
        name: str = self.cleaned_data["image_name"]
        if not _IMAGE_NAME.match(name):
            raise forms.ValidationError(
                "Use 3 to 128 letters, digits, spaces and _ ( ) / . - for the OMI name."
            )
        return name

    def clean_description(self) -> str:
        description: str = self.cleaned_data["description"]
        refuse_invisible_characters(description, field="description", allow_newlines=True)
        return description

    def clean_root_device_name(self) -> str:
        device: str = self.cleaned_data["root_device_name"]
        if device != ROOT_DEVICE_NAME:
            raise forms.ValidationError(
                f"OUTSCALE names an OMI's root device {ROOT_DEVICE_NAME}: use that."
            )
        return device

    def parameters(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in self.field_order}


class CopyForm(SnapshotTextForm):
    """COPY SNAPSHOT: a second snapshot of the same data in the team's account."""

    def parameters(self) -> dict[str, Any]:
        return {"name": self.cleaned_data["name"], "description": self.cleaned_data["description"]}


def account_ids_of(text: str) -> list[str]:
    """The 12-digit account ids of a comma-separated list; raises ValidationError naming the
    first one that is not."""
    ids: list[str] = []
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        if not _ACCOUNT_ID.match(part):
            shown = part if len(part) <= 40 else part[:40] + "…"
            raise forms.ValidationError(
                f"“{shown}” is not an OUTSCALE account ID: use 12 digits, e.g. 123456789012.",
                code="account_id",
            )
        if part not in ids:
            ids.append(part)
    return ids


class PermissionsForm(forms.Form):
    """UPDATE SNAPSHOT PERMISSIONS, from the permissions the API says the snapshot has now."""

    add_account_ids = forms.CharField(
        label="Account IDs",
        required=False,
        max_length=4000,
        widget=forms.Textarea({"rows": 2, "spellcheck": "false", "autocomplete": "off"}),
        help_text="The accounts that may create volumes from this snapshot: 12-digit IDs, "
        "separated by commas.",
    )
    remove_account_ids = forms.MultipleChoiceField(
        label="Allowed accounts",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Tick an account to remove its permission.",
    )
    public = forms.BooleanField(
        label="Public",
        required=False,
        help_text="Every OUTSCALE account may create volumes from this snapshot.",
    )
    confirm_public = forms.BooleanField(
        label="I understand that every OUTSCALE account will be able to read this snapshot's "
        "data by creating a volume from it.",
        required=False,
    )

    def __init__(self, *args: Any, current: SnapshotPermissions, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.current = current
        field: Any = self.fields["remove_account_ids"]
        field.choices = [(account_id, account_id) for account_id in current.account_ids]
        self.fields["public"].initial = current.public

    def clean_add_account_ids(self) -> list[str]:
        return account_ids_of(self.cleaned_data["add_account_ids"])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        public = data.get("public")
        if public and not self.current.public and not data.get("confirm_public"):
            self.add_error(
                "confirm_public",
                "Making the snapshot public lets anyone read its data: tick the box to confirm.",
            )
        added = [i for i in data.get("add_account_ids", []) if i not in self.current.account_ids]
        changes = added or data.get("remove_account_ids") or public != self.current.public
        if not self.errors and not changes:
            raise forms.ValidationError(
                "Nothing would change: add an account, tick one to remove, or switch Public.",
                code="nothing_to_change",
            )
        return data

    @property
    def public_change(self) -> bool | None:
        public = bool(self.cleaned_data.get("public"))
        return public if public != self.current.public else None


class TagRowForm(forms.Form):
    key = forms.CharField(label="Key", max_length=MAX_TAG_KEY, required=False, strip=True)
    value = forms.CharField(label="Value", max_length=MAX_TAG_VALUE, required=False, strip=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        key, value = data.get("key", ""), data.get("value", "")
        if not key and value:
            self.add_error("key", "Enter a key for this value (1 to 255 characters).")
        for name, text in (("key", key), ("value", value)):
            if text:
                try:
                    refuse_invisible_characters(text, field=f"tag {name}")
                except forms.ValidationError as error:
                    self.add_error(name, error)
        return data


if TYPE_CHECKING:
    _FormSet = forms.BaseFormSet[TagRowForm]
else:
    _FormSet = forms.BaseFormSet  # generic to the type checker only


class BaseTagFormSet(_FormSet):
    def clean(self) -> None:
        if any(self.errors):
            return
        keys: list[str] = []
        for form in self.forms:
            key = form.cleaned_data.get("key", "")
            if key in keys:
                raise forms.ValidationError(f"The key “{key}” is there twice: keep one row.")
            if key:
                keys.append(key)

    @property
    def tags(self) -> dict[str, str]:
        """The tags the snapshot is to have: every row with a key (an empty row is ignored)."""
        return {
            form.cleaned_data["key"]: form.cleaned_data.get("value", "")
            for form in self.forms
            if form.cleaned_data.get("key")
        }


TagFormSet = forms.formset_factory(
    TagRowForm,
    formset=BaseTagFormSet,
    extra=2,
    max_num=MAX_TAGS,
    validate_max=True,
    absolute_max=MAX_TAGS + 10,
)
