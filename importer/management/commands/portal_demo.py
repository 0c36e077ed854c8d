"""Creates the demo team and one login per role for a local run (safe to run twice).

It refuses to run with DEBUG=0: it sets known passwords, printed on purpose.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from importer.teams.models import Membership, Role, Team

DEMO_TEAM = "demo"
SANDBOX_OBJECT_STORE = "http://127.0.0.1:8788"
DEMO_USERS = {
    "operator": ("operator-demo-password", Role.OPERATOR),
    "admin": ("admin-demo-password", Role.ADMIN),
    "auditor": ("auditor-demo-password", Role.AUDITOR),
}


class Command(BaseCommand):
    help = "Create the demo team and logins used by the README's run command (local runs only)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("portal_demo sets known passwords: it only runs with DEBUG=1.")
        # The demo team uses the OSC_* environment: the sandbox in a local run, whose object
        # store then stands in for the Region's OOS endpoint (exports and shared URLs).
        on_sandbox = settings.OSC_ENDPOINT_API == settings.SANDBOX_ENDPOINT_API
        team, _ = Team.objects.get_or_create(
            name=DEMO_TEAM,
            defaults={"uses_environment_credentials": True, "region": settings.OSC_REGION},
        )
        if on_sandbox and not team.oos_endpoint:
            Team.objects.filter(pk=team.pk).update(oos_endpoint=SANDBOX_OBJECT_STORE)
        self.stdout.write(f"  Demo team {team.name!r} on {settings.OSC_ENDPOINT_API}; logins:")
        for username, (password, role) in DEMO_USERS.items():
            user, created = User.objects.get_or_create(username=username)
            if created or not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])
            Membership.objects.update_or_create(user=user, team=team, defaults={"role": role})
            self.stdout.write(f"    {username:9} / {password}   ({role.label})")
