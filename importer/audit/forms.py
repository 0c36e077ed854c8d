from __future__ import annotations

from django import forms


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
