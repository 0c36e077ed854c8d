"""The bulk confirm pages' forms: each action's own form (or its rules) for all the snapshots.

Export takes the single export's form as it is; copy takes the single copy's form without the
name (each copy is named after its snapshot, checked as the import dialog checks a name); tags
take the tag editor's rows for what to set, and checks each key to remove by the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django import forms
from django.http import QueryDict

from importer.bulk.services import TagPlan
from importer.imports.forms import SnapshotTextForm
from importer.lifecycle.forms import MAX_TAGS, BaseTagFormSet, TagRowForm
from importer.outscale.resources import Snapshot
from importer.transfers.forms import CopyForm, ExportForm

__all__ = ["BulkCopyForm", "BulkTagsForm", "ExportForm", "copy_names"]


class BulkCopyForm(CopyForm):
    """The copy dialog's destination, team and description, once for every snapshot."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.fields["name"]  # each copy keeps its snapshot's name (copy_names)
        self.fields["description"].help_text = "Optional. The description of every copy."


def copy_names(snapshots: Sequence[Snapshot]) -> dict[str, str]:
    """Each copy's name: its snapshot's Name tag when the import dialog would take it as a
    name, else the snapshot's id (which it always takes)."""
    names = {}
    for snapshot in snapshots:
        candidate = snapshot.tags.get("Name", "")
        checked = SnapshotTextForm({"name": candidate, "description": ""})
        names[snapshot.snapshot_id] = candidate if checked.is_valid() else snapshot.snapshot_id
    return names


# The tag editor's rows and rules, with more empty rows: a bulk edit starts from nothing.
SetTagFormSet = forms.formset_factory(
    TagRowForm,
    formset=BaseTagFormSet,
    extra=3,
    max_num=MAX_TAGS,
    validate_max=True,
    absolute_max=MAX_TAGS + 10,
)


class RemoveKeysForm(forms.Form):
    remove_keys = forms.CharField(
        label="Keys to remove",
        required=False,
        max_length=MAX_TAGS * 260,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One tag key per line; a snapshot without that tag is left as it is.",
    )

    def clean_remove_keys(self) -> list[str]:
        keys: list[str] = []
        lines = self.cleaned_data["remove_keys"].split("\n")
        for number, line in enumerate((line.strip() for line in lines), start=1):
            if not line:
                continue
            row = TagRowForm({"key": line, "value": ""})
            if not row.is_valid():
                raise forms.ValidationError(f"Line {number}: {row.errors['key'][0]}")
            if line not in keys:
                keys.append(line)
        if len(keys) > MAX_TAGS:
            raise forms.ValidationError(f"Remove at most {MAX_TAGS} keys at once.")
        return keys


class BulkTagsForm:
    """Tags to add or change (the tag editor's rows) and keys to remove, for every snapshot."""

    def __init__(self, data: QueryDict | None = None) -> None:
        self.formset = cast(BaseTagFormSet, SetTagFormSet(data, prefix="set"))
        self.removal = RemoveKeysForm(data)
        self.form_error = ""

    def is_valid(self) -> bool:
        if not (self.formset.is_valid() and self.removal.is_valid()):
            return False
        remove = self.removal.cleaned_data["remove_keys"]
        both = sorted(set(self.formset.tags) & set(remove))
        if both:
            self.form_error = f"Set or remove {', '.join(both)}, not both."
        elif not self.formset.tags and not remove:
            self.form_error = "Enter a tag to add or change, or a key to remove."
        return not self.form_error

    @property
    def errors(self) -> bool:
        return bool(self.form_error or self.formset.total_error_count() or self.removal.errors)

    @property
    def plan(self) -> TagPlan:
        return TagPlan(
            set=self.formset.tags, remove=tuple(self.removal.cleaned_data["remove_keys"])
        )
