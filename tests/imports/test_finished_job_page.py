"""A finished import's page offers only what still makes sense, and says how long it took."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from importer.core.units import how_long
from importer.imports.models import JobState
from importer.teams.models import Role
from tests.support.factories import make_job, make_team, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client: Client) -> Any:
    user = make_user("operator1")
    client.force_login(user)
    return user


def completed(user: Any, seconds: float = 13) -> Any:
    started = timezone.now() - timedelta(minutes=5)
    return make_job(
        user,
        state=JobState.COMPLETED,
        snapshot_id="snap-0000abcd",
        progress=100,
        created_at=started,
        finished_at=started + timedelta(seconds=seconds),
    )


def page_of(client: Client, job: Any) -> str:
    answer = client.get(f"/imports/{job.pk}")
    assert answer.status_code == 200
    return answer.content.decode()


def test_a_finished_import_offers_no_notify_me(client: Client, operator: Any) -> None:
    running = make_job(operator, state=JobState.IN_PROGRESS, snapshot_id="snap-00000001")

    assert "Notify me" in page_of(client, running)
    assert "Notify me" not in page_of(client, completed(operator))


def test_it_says_how_long_an_import_of_seconds_took(client: Client, operator: Any) -> None:
    page = page_of(client, completed(operator, seconds=13))

    assert "(after 13 seconds)" in page and "0 minutes" not in page


def test_copy_to_another_team_is_offered_only_with_another_team_to_import_into(
    client: Client, operator: Any
) -> None:
    job = completed(operator)
    assert "Copy to another team" not in page_of(client, job)
    assert "Export to bucket" in page_of(client, job)

    # In several teams, the job's is the one the user works in.
    operator.memberships.update(is_current=True)
    # An auditor elsewhere cannot import there either: still nothing to offer.
    operator.memberships.create(team=make_team("audited"), role=Role.AUDITOR)
    page = page_of(client, job)
    assert "Export to bucket" in page and "Copy to another team" not in page

    operator.memberships.create(team=make_team("elsewhere"), role=Role.OPERATOR)
    assert "Copy to another team" in page_of(client, job)


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (13, "13 seconds"),
        (60, "1 minute"),
        (252, "4 minutes, 12 seconds"),
        (3600 * 2 + 300, "2 hours, 5 minutes"),
        (86400 + 3 * 3600 + 59, "1 day, 3 hours"),
    ],
)
def test_durations_read_as_a_person_says_them(seconds: float, said: str) -> None:
    assert how_long(seconds) == said
