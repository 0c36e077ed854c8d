"""Logins: lock-out, audit of sign-ins, the portal_user bootstrap command, the demo cast."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from importer.audit.chain import verify_chain
from importer.audit.models import AuditEvent
from importer.teams.models import Membership, Role, Team
from tests.support.factories import make_user

pytestmark = pytest.mark.django_db


def log_in(client, username: str, password: str):
    return client.post(
        "/login/", {"username": username, "password": password}, REMOTE_ADDR="203.0.113.7"
    )


def test_it_locks_a_user_out_after_repeated_failed_logins(client, settings) -> None:
    make_user("victim", password="the-right-password-123")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "victim", "wrong").status_code == 200
    assert log_in(client, "victim", "wrong").status_code == 429
    locked = log_in(client, "victim", "the-right-password-123")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert client.get("/").status_code == 302  # still anonymous


def test_it_audits_logins_and_failed_logins_without_the_password(client) -> None:
    make_user("alice", password="the-right-password-123")
    log_in(client, "alice", "not-the-password-shhh")
    log_in(client, "alice", "the-right-password-123")
    events = list(AuditEvent.objects.order_by("id").values("action", "actor_name", "ip", "details"))
    assert [event["action"] for event in events][-2:] == ["login_failed", "login"]
    assert events[-1]["ip"] == "203.0.113.7"
    assert "not-the-password-shhh" not in repr(list(AuditEvent.objects.values()))
    assert verify_chain().ok


def test_it_bootstraps_users_from_the_command_line_safely_twice(monkeypatch, capsys) -> None:
    monkeypatch.setenv("PORTAL_PASSWORD", "a-strong-bootstrap-password")
    call_command("portal_user", "carol", "--team", "platform", "--role", "admin")
    call_command("portal_user", "carol", "--team", "platform", "--role", "auditor")
    assert User.objects.filter(username="carol").count() == 1
    assert Team.objects.filter(name="platform").count() == 1
    assert Membership.objects.get(user__username="carol").role == Role.AUDITOR
    assert User.objects.get(username="carol").check_password("a-strong-bootstrap-password")
    assert "carol updated" in capsys.readouterr().out


def test_it_refuses_a_weak_bootstrap_password(monkeypatch) -> None:
    monkeypatch.setenv("PORTAL_PASSWORD", "123")
    with pytest.raises(CommandError, match="password is refused"):
        call_command("portal_user", "dave", "--team", "platform", "--role", "operator")
    assert not User.objects.filter(username="dave").exists()


def test_it_creates_the_demo_team_with_one_login_per_role(capsys, settings) -> None:
    settings.DEBUG = True  # pytest-django turns it off; the command refuses to run without it
    call_command("portal_demo")
    call_command("portal_demo")
    team = Team.objects.get(name="demo")
    roles = dict(Membership.objects.filter(team=team).values_list("user__username", "role"))
    assert roles == {"operator": "operator", "admin": "admin", "auditor": "auditor"}
    assert "auditor-demo-password" in capsys.readouterr().out
