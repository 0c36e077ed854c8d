"""Creates the demo login for a local run (safe to run twice); refuses to run with DEBUG=0."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

DEMO_USERNAME = "operator"
DEMO_PASSWORD = "operator-demo-password"  # noqa: S105 - a local demo login, printed on purpose


class Command(BaseCommand):
    help = "Create the demo login used by the README's run command (local runs only)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("portal_demo creates a known password: it only runs with DEBUG=1.")
        user, created = get_user_model().objects.get_or_create(username=DEMO_USERNAME)
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        self.stdout.write(f"  Demo login: {DEMO_USERNAME} / {DEMO_PASSWORD}")
