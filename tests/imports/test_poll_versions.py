"""An unchanged poll costs no query: the page's team change versions, compared in the cache.

The writes run with their commit callbacks executed (`committed`): a change version is replaced
on commit, and pytest-django's transactions never commit on their own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import Client, override_settings
from django.utils import timezone

from importer.core.changes import TEAM_JOBS, poll_value
from importer.imports import slots
from importer.imports.models import ImportJob, JobState, TagState
from importer.imports.polling import _apply_snapshots
from importer.outscale.resources import Snapshot
from tests.support.factories import make_job, make_team, make_user

pytestmark = pytest.mark.django_db

Committed = Callable[[], AbstractContextManager[Any]]


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Committed:
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def operator(client: Client) -> Any:
    user = make_user("operator1")
    client.force_login(user)
    return user


def in_flight(user: Any, **fields: Any) -> ImportJob:
    defaults = {"state": JobState.IN_PROGRESS, "snapshot_id": "snap-00000001", "progress": 10}
    return make_job(user, **{**defaults, **fields})


def page_poll_params(html: str) -> dict[str, list[str]]:
    """What the page's poller sends: its rows' versions and its team change versions."""
    return {
        "v": re.findall(r'name="v" value="([^"]+)"', html),
        "tv": re.findall(r'name="tv" value="([^"]+)"', html),
    }


def detail_poll(client: Client, job: ImportJob) -> dict[str, Any]:
    page = client.get(f"/imports/{job.pk}")
    assert page.status_code == 200
    return {**page_poll_params(page.content.decode()), "view": "detail"}


def progress(job: ImportJob, value: int) -> None:
    """The poll cycle's own write: what the API says of the snapshot, in one bulk update."""
    job.refresh_from_db()
    snapshot = Snapshot.from_api(
        {"SnapshotId": job.snapshot_id, "State": "pending/queued", "Progress": value}
    )
    _apply_snapshots([job], {job.snapshot_id: snapshot}, now=timezone.now())


def test_the_page_carries_its_teams_version_to_the_poll(client: Client, operator: Any) -> None:
    job = in_flight(operator)
    params = detail_poll(client, job)

    assert params["tv"] == [poll_value(job.team_id, TEAM_JOBS.tokens([job.team_id])[job.team_id])]
    assert (
        'hx-include="[data-poll-version],[data-poll-token]"'
        in client.get(f"/imports/{job.pk}").content.decode()
    )


def test_an_unchanged_poll_is_a_204_without_a_single_query(
    client: Client, operator: Any, django_assert_num_queries: Any
) -> None:
    job = in_flight(operator)
    params = detail_poll(client, job)

    with django_assert_num_queries(0):  # the session too: it is read from the cache
        answer = client.get("/imports/poll", params)

    assert answer.status_code == 204


@pytest.fixture
def redis_cache() -> Iterator[None]:
    """The production shape: sessions and versions in Redis (this run's broker server)."""
    import os

    url = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis://"):
        pytest.fail("this test needs CELERY_BROKER_URL=redis://... (make test sets it)")
    prefix = f"test-{uuid.uuid4().hex}"
    redis = {"BACKEND": "importer.core.cache.FailSoftRedisCache", "LOCATION": url}
    with override_settings(CACHES={"default": {**redis, "KEY_PREFIX": prefix}}):
        yield
        cache.delete_many(list(cache._cache.get_client().scan_iter(f":1:{prefix}*")))  # type: ignore[attr-defined]


def test_an_unchanged_poll_costs_no_query_with_redis_as_in_production(
    redis_cache: None, operator: Any, django_assert_num_queries: Any
) -> None:
    # A client made under the Redis cache: its session is stored there.
    client = Client()
    client.force_login(operator)
    job = in_flight(operator)
    params = detail_poll(client, job)

    with django_assert_num_queries(0):
        answer = client.get("/imports/poll", params)

    assert answer.status_code == 204


def test_a_session_is_cached_for_five_minutes_at_most(redis_cache: None, operator: Any) -> None:
    client = Client()
    client.force_login(operator)
    key = client.cookies["sessionid"].value
    ttl = cache._cache.get_client().ttl(
        cache.make_and_validate_key(  # type: ignore[attr-defined]
            f"django.contrib.sessions.cached_db{key}"
        )
    )
    # A logout while the cache does not answer leaves this copy behind: it must not live long.
    assert 0 < ttl <= 300


UNREACHABLE_REDIS = {
    "default": {
        "BACKEND": "importer.core.cache.FailSoftRedisCache",
        "LOCATION": "redis://127.0.0.1:9/0",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}


def test_with_redis_down_pages_and_polls_still_answer_from_the_database(
    operator: Any, committed: Committed
) -> None:
    with override_settings(CACHES=UNREACHABLE_REDIS):
        client = Client()
        client.force_login(operator)
        job = in_flight(operator)
        page = client.get(f"/imports/{job.pk}")
        params = {**page_poll_params(page.content.decode()), "view": "detail"}
        unchanged = client.get("/imports/poll", params)
        with committed():
            progress(job, 64)
        changed = client.get("/imports/poll", params)
        client.logout()
        after_logout = client.get("/imports/poll", params)

    assert page.status_code == 200 and params["tv"] == []  # no version to carry
    assert unchanged.status_code == 204  # from the database
    assert changed.status_code == 200 and 'value="64"' in changed.content.decode()
    assert after_logout.status_code == 302


def test_a_changed_poll_costs_two_queries_and_brings_the_row_and_a_new_version(
    client: Client, operator: Any, committed: Committed, django_assert_num_queries: Any
) -> None:
    still, moved = in_flight(operator, name="still"), in_flight(operator, name="moved")
    page = client.get("/")
    params = page_poll_params(page.content.decode())
    assert len(params["v"]) == 2 and len(params["tv"]) == 1
    with committed():
        progress(moved, 55)

    # The user, then the rows joined to the user's memberships; the session is the cache's.
    with django_assert_num_queries(2):
        answer = client.get("/imports/poll", params)

    body = answer.content.decode()
    assert answer.status_code == 200
    assert f'id="job-{moved.pk}"' in body and f'id="job-{still.pk}"' not in body
    assert 'id="poll-tokens" hidden hx-swap-oob="true"' in body
    new = re.findall(r'name="tv" value="([^"]+)"', body)
    assert new and new != params["tv"]
    # With what the answer brought, the page is up to date: the next poll is free again.
    rows = [p for p in params["v"] if not p.startswith(str(moved.pk))]
    rows += [
        p for p in re.findall(r'name="v" value="([^"]+)"', body) if p.startswith(str(moved.pk))
    ]
    with django_assert_num_queries(0):
        assert client.get("/imports/poll", {"v": rows, "tv": new}).status_code == 204


def test_a_changed_poll_of_a_jobs_page_costs_three_queries_with_its_history(
    client: Client, operator: Any, committed: Committed, django_assert_num_queries: Any
) -> None:
    job = in_flight(operator)
    params = detail_poll(client, job)
    with committed():
        progress(job, 70)

    with django_assert_num_queries(3):  # the user, the row, its history
        answer = client.get("/imports/poll", params)

    assert answer.status_code == 200 and 'value="70"' in answer.content.decode()


def test_an_evicted_version_falls_back_to_the_database_never_to_a_wrong_204(
    client: Client, operator: Any, committed: Committed
) -> None:
    job = in_flight(operator)
    params = detail_poll(client, job)
    # The change's own replacement is lost (the cache evicted the token, or restarted).
    progress(job, 80)
    cache.delete(f"changes:team-jobs:{job.team_id}")

    answer = client.get("/imports/poll", params)

    assert answer.status_code == 200 and 'value="80"' in answer.content.decode()


def test_an_evicted_version_with_nothing_changed_only_renews_the_version(
    client: Client, operator: Any, django_assert_num_queries: Any
) -> None:
    job = in_flight(operator)
    params = detail_poll(client, job)
    cache.clear()  # the cache restarted: sessions come back from the database, tokens anew
    answer = client.get("/imports/poll", params)

    body = answer.content.decode()
    assert answer.status_code == 200 and f'id="job-{job.pk}"' not in body
    renewed = re.findall(r'name="tv" value="([^"]+)"', body)
    assert renewed and renewed != params["tv"]
    with django_assert_num_queries(0):
        assert client.get("/imports/poll", {**params, "tv": renewed}).status_code == 204


def test_a_logged_out_session_gets_no_204(client: Client, operator: Any) -> None:
    job = in_flight(operator)
    params = detail_poll(client, job)
    cookie = client.cookies["sessionid"].value
    client.logout()
    client.cookies["sessionid"] = cookie  # the old cookie, replayed

    answer = client.get("/imports/poll", params)

    assert answer.status_code == 302 and "/login/" in answer["Location"]


def test_a_token_of_a_team_the_user_does_not_see_never_comes_back(
    client: Client, operator: Any, committed: Committed
) -> None:
    job = in_flight(operator)
    other = make_team("other")
    other_token = TEAM_JOBS.tokens([other.pk])[other.pk]
    params = detail_poll(client, job)
    params["tv"] = [*params["tv"], poll_value(other.pk, other_token)]
    with committed():
        progress(job, 30)

    answer = client.get("/imports/poll", params)

    body = answer.content.decode()
    assert answer.status_code == 200 and other_token not in body
    assert re.findall(r'name="tv" value="([^"]+)"', body) == [
        poll_value(job.team_id, token(job.team_id))
    ]


def test_a_forged_or_malformed_version_is_no_match(client: Client, operator: Any) -> None:
    job = in_flight(operator)
    params = detail_poll(client, job)
    for forged in ([f"{job.team_id}.0000"], [f"{job.team_id}.zz"]):
        answer = client.get("/imports/poll", {**params, "tv": forged})
        assert answer.status_code == 200, forged  # from the database, with the right token
        assert params["tv"][0] in answer.content.decode()
    for malformed in (["nonsense"], [f"{job.team_id}."], [".abc"], [f"{job.team_id}.{'f' * 65}"]):
        answer = client.get("/imports/poll", {**params, "tv": malformed})
        # From the database: the row is unchanged, but no token was claimed to renew.
        assert answer.status_code == 200, malformed
        assert 'name="tv"' not in answer.content.decode()


# --- Every write of a job replaces its team's version, once it commits ------------------------


def token(team_id: int) -> str:
    return TEAM_JOBS.tokens([team_id])[team_id]


WRITES: dict[str, Callable[[ImportJob], object]] = {
    "a transition (claimed by a worker)": lambda job: job.claim_for_submission(),
    "a failure": lambda job: job.mark_failed(code="X", type="Y", details="z"),
    "the poll cycle's progress (bulk update)": lambda job: progress(job, 42),
    "a tag result": lambda job: ImportJob.objects.filter(pk=job.pk).update(tag_state=TagState.DONE),
    "a slot given to a waiting job": lambda job: slots.admit_waiting(job.team_id),
    "a save": lambda job: job.save(),
    "a deletion": lambda job: job.delete(),
}


@pytest.mark.parametrize("write", list(WRITES), ids=list(WRITES))
def test_every_write_replaces_the_teams_version_on_commit(
    operator: Any, committed: Committed, write: str
) -> None:
    state = {
        "a transition (claimed by a worker)": JobState.QUEUED,
        "a slot given to a waiting job": JobState.WAITING,
    }.get(write, JobState.IN_PROGRESS)
    job = in_flight(operator, state=state, updated_at=timezone.now() - timedelta(seconds=5))
    before = token(job.team_id)
    other = make_user("elsewhere", team=make_team("elsewhere"))
    elsewhere = in_flight(other)
    untouched = token(elsewhere.team_id)

    with committed():
        WRITES[write](job)

    assert token(job.team_id) != before
    assert token(elsewhere.team_id) == untouched  # another team's pollers stay free


def test_a_new_job_replaces_the_version_and_a_rollback_replaces_nothing(
    operator: Any, committed: Committed
) -> None:
    team_id = operator.memberships.first().team_id
    before = token(team_id)
    with committed(), transaction.atomic():
        in_flight(operator)
        transaction.set_rollback(True)
    assert token(team_id) == before

    with committed():
        in_flight(operator)
    assert token(team_id) != before


def test_bulk_creation_replaces_the_version(operator: Any, committed: Committed) -> None:
    job = in_flight(operator)
    before = token(job.team_id)
    job.pk = uuid.uuid4()
    with committed():
        ImportJob.objects.bulk_create([job])
    assert token(job.team_id) != before


def test_a_session_evicted_from_the_cache_costs_one_database_read_then_none(
    client: Client, operator: Any, django_assert_num_queries: Any
) -> None:
    job = in_flight(operator)
    params = detail_poll(client, job)
    cache.delete(f"django.contrib.sessions.cached_db{client.cookies['sessionid'].value}")

    # From the database: the session, the user, the row and its history (a job's page).
    with django_assert_num_queries(4):
        assert client.get("/imports/poll", params).status_code == 204
    with django_assert_num_queries(0):  # the session is cached again
        assert client.get("/imports/poll", params).status_code == 204


def test_a_made_up_session_cookie_gets_no_204(client: Client, operator: Any) -> None:
    job = in_flight(operator)
    params = detail_poll(client, job)
    for cookie in ("x" * 32, "../../etc/passwd", ""):
        client.cookies["sessionid"] = cookie
        assert client.get("/imports/poll", params).status_code == 302, cookie


def test_an_ended_import_is_announced_in_the_pages_live_region(
    client: Client, operator: Any, committed: Committed
) -> None:
    job = in_flight(operator, name="nightly-db")
    page = client.get(f"/imports/{job.pk}").content.decode()
    params = {**page_poll_params(page), "view": "detail"}
    assert '<div id="poll-announcer" class="visually-hidden" role="status"' in page
    with committed():
        job.mark_completed(api_state="completed")

    body = client.get("/imports/poll", params).content.decode()

    assert '<div id="poll-announcer" hx-swap-oob="innerHTML">' in body
    assert "Import of nightly-db completed." in body
