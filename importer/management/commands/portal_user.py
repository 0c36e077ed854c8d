"""`python manage.py portal_user NAME --team TEAM --role operator|admin|auditor`.

Creates the user (password from PORTAL_PASSWORD or a prompt), the team if needed, and the
membership; run it again to change the role or the password. Safe to run twice.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from importer.audit.chain import record
from importer.audit.models import AuditAction
from importer.teams.models import Membership, Role, Team


class Command(BaseCommand):
    help = "Create or update a portal user and their role in a team (creating the team if needed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="User name")
        parser.add_argument("--team", required=True, help="Team name; created if it does not exist")
        parser.add_argument("--role", required=True, choices=[role.value for role in Role])
        parser.add_argument(
            "--environment-credentials",
            action="store_true",
            help="A new team uses the OSC_* environment's credentials (the default team)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["name"].strip()
        if not name:
            raise CommandError("The user name must not be empty.")
        with transaction.atomic():
            team, team_created = Team.objects.get_or_create(
                name=options["team"].strip(),
                defaults={"uses_environment_credentials": options["environment_credentials"]},
            )
            user, user_created = User.objects.get_or_create(username=name)
            password = self._password(user, needed=user_created)
            if password is not None:
                user.set_password(password)
                user.save(update_fields=["password"])
            membership, _ = Membership.objects.get_or_create(
                user=user, team=team, defaults={"role": options["role"]}
            )
            if membership.role != options["role"]:
                Membership.objects.filter(pk=membership.pk).update(role=options["role"])
            record(
                action=AuditAction.MEMBERSHIP_CHANGED,
                actor_name="manage.py portal_user",
                team=team,
                target=name,
                details={"role": options["role"], "user_created": user_created},
            )
        made = "created" if user_created else "updated"
        self.stdout.write(
            f"User {name} {made}: {options['role']} in team {team.name}"
            + (" (new team)" if team_created else "")
        )

    def _password(self, user: User, *, needed: bool) -> str | None:
        password = os.environ.get("PORTAL_PASSWORD")
        if password is None:
            if not needed:
                return None  # an existing user keeps their password
            password = getpass.getpass(f"Password for {user.get_username()}: ")
        try:
            validate_password(password, user)
        except ValidationError as error:
            raise CommandError("The password is refused: " + " ".join(error.messages)) from None
        return password
