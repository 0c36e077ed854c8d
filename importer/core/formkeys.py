"""The idempotency key a form carries: drawn when the form is shown, signed for its user.

A form that creates a job carries the job's id to be; posting it twice (a double click, a
reload, a retry after a lost answer) finds the job it already made instead of making another.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.core import signing
from django.http import HttpRequest


@dataclass(frozen=True)
class FormKeys:
    """The keys of one kind of form; `purpose` keeps one kind's keys from serving another."""

    purpose: str

    def _signer(self, user_id: object) -> signing.Signer:
        # The user's id is in the salt: a key signed for one user never verifies for another,
        # so a key copied from someone else's form can neither take their job nor spend it.
        return signing.Signer(salt=f"importer.{self.purpose}.user-{user_id}")

    def signature(self, user_id: object, key: uuid.UUID) -> str:
        """What binds a form's idempotency key to the user it was shown to."""
        return self._signer(user_id).signature(str(key))

    def fields(self, request: HttpRequest, key: uuid.UUID | None = None) -> dict[str, object]:
        """The form's hidden fields: its key (a new one unless given) and their signature."""
        key = key or uuid.uuid4()
        return {
            "idempotency_key": key,
            "idempotency_signature": self.signature(request.user.pk, key),
        }

    def posted(self, request: HttpRequest) -> uuid.UUID | None:
        """The posted key when it was signed for this user; None when it was not.

        A post without a key (a script) gets a fresh one, as a form opened anew would.
        """
        raw = request.POST.get("idempotency_key", "")
        if not raw:
            return uuid.uuid4()
        signer = self._signer(request.user.pk)
        signature = request.POST.get("idempotency_signature", "")
        try:
            return uuid.UUID(signer.unsign(f"{raw}{signer.sep}{signature}"))
        except (signing.BadSignature, ValueError):
            return None
