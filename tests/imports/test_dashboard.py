"""The Snapshots dashboard, the IMPORT SNAPSHOT dialog's views and the job page."""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import responses
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from importer.imports import listing, selectors
from importer.imports import views as imports_views
from importer.imports.models import ImportJob, JobState
from importer.presigned import fetch, sniff, urls
from importer.teams.models import Role, TeamInvitation
from snapshots_portal.celery import app as celery_app
from tests.support.factories import make_job, make_team, make_user, oos_presigned_url
from tests.support.workers import wait_until

GIB = 1024**3
API = "https://api.dashboard-test.example/api/v1"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_listing_cache() -> None:
    cache.clear()


@pytest.fixture(autouse=True)
def no_network_inspection(monkeypatch: pytest.MonkeyPatch) -> None:
    def inspected(url: urls.PresignedUrl, **_: object) -> fetch.Inspection:
        info = sniff.ImageInfo("gzip", "qcow2", 10 * GIB, 300_000, 10 * GIB, "qcow2 in gzip.")
        return fetch.Inspection(info=info, warning=None)

    monkeypatch.setattr(fetch, "inspect_presigned_url", inspected)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args, **kw: calls.append(args))
    return calls


@pytest.fixture
def operator(client):
    user = make_user("operator1")
    client.force_login(user)
    return user


@pytest.fixture
def api(settings) -> responses.RequestsMock:
    """A fake OUTSCALE API answering ReadSnapshots with whatever the test sets."""
    settings.OSC_ENDPOINT_API = API
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def api_snapshot(snapshot_id: str, *, at: datetime, state: str = "completed", **extra) -> dict:
    return {
        "SnapshotId": snapshot_id,
        "State": state,
        "Progress": 100 if state == "completed" else 30,
        "Description": extra.get("description", ""),
        "VolumeSize": extra.get("size", 10),
        "CreationDate": at.isoformat(),
        "AccountId": "123456789012",
        "Tags": [{"Key": "Name", "Value": extra["name"]}] if "name" in extra else [],
    }


def answer_snapshots(mock: responses.RequestsMock, snapshots: list[dict]) -> None:
    mock.add(
        responses.POST,
        f"{API}/ReadSnapshots",
        json={"Snapshots": snapshots, "ResponseContext": {"RequestId": "req-list"}},
    )


def rows_of(page: str) -> list[str]:
    """The names in the listing's rows, top to bottom."""
    body = page.split('id="jobs-body"', 1)[1].split("</tbody>", 1)[0]
    return [
        re.sub(r"<[^>]+>", "", cell).split()[0]
        for cell in re.findall(r'<th scope="row" class="name">(.*?)</th>', body, re.S)
    ]


def dialog_post(client, **overrides: str):
    data = {
        "name": "nightly",
        "description": "",
        "presigned_url": oos_presigned_url(),
        "snapshot_size": str(10 * GIB),
        "idempotency_key": str(uuid.uuid4()),
    }
    data.update(overrides)
    # As the form the logged-in user was shown would carry it: the key signed for them.
    user_id = client.session["_auth_user_id"]
    data["idempotency_signature"] = imports_views.form_key_signature(
        user_id, uuid.UUID(data["idempotency_key"])
    )
    return client.post("/imports/new", data, headers={"HX-Request": "true"})


# --- The listing -------------------------------------------------------------------------


def test_it_merges_the_apis_snapshots_with_jobs_that_have_none_newest_first(
    client, operator, api
) -> None:
    now = timezone.now()
    ours = make_job(operator, name="ours", snapshot_id="snap-0000000a", state=JobState.COMPLETED)
    make_job(operator, name="queued", created_at=now + timedelta(minutes=1))
    answer_snapshots(
        api,
        [
            api_snapshot("snap-0000000a", at=now, name="ours-in-api"),
            api_snapshot("snap-0000000b", at=now - timedelta(days=1), name="elsewhere"),
            api_snapshot("snap-0000000c", at=now + timedelta(minutes=2), name="newest"),
        ],
    )
    page = client.get("/").content.decode()
    # The job stands for its own snapshot (no duplicate row); the API-only ones are listed too.
    assert rows_of(page) == ["newest", "queued", "ours", "elsewhere"]
    assert f"/imports/{ours.pk}" in page and "ours-in-api" not in page


def test_it_shows_the_columns_a_badge_with_text_and_a_real_progress_bar(client, operator) -> None:
    make_job(operator, name="running", state=JobState.IN_PROGRESS, progress=37, description="db")
    page = client.get("/").content.decode()
    for column in ("Name", "Snapshot ID", "Description", "Size (GiB)", "State", "Progress"):
        assert f">{column}</th>" in page
    assert "Creation date" in page
    assert '<span class="badge state-in_progress">' in page and "Importing</span>" in page
    assert '<progress max="100" value="37" aria-label="Progress of running">' in page
    assert "37%" in page and "10.00" in page


def test_it_lists_local_jobs_with_a_banner_when_the_api_is_down(client, operator, api) -> None:
    api.add(responses.POST, f"{API}/ReadSnapshots", status=503, json={"Errors": []})
    make_job(operator, name="still-listed")
    response = client.get("/")
    page = response.content.decode()
    assert response.status_code == 200
    assert 'role="alert"' in page and "Snapshots from the API are not shown" in page
    assert rows_of(page) == ["still-listed"]


def test_it_does_not_wait_for_a_slow_api(client, operator, api_on_sandbox, monkeypatch) -> None:
    monkeypatch.setattr(selectors, "DASHBOARD_API_DEADLINE_SECONDS", 0.3)
    api_on_sandbox.inject_fault("ReadSnapshots", "slow", delay=2.0)
    make_job(operator, name="local")
    started = timezone.now()
    response = client.get("/")
    assert response.status_code == 200
    assert timezone.now() - started < timedelta(seconds=1.5)
    page = response.content.decode()
    assert "did not answer within 0.3 seconds" in page and rows_of(page) == ["local"]


def listing_answer(snapshots: list[dict], token: str | None) -> str:
    answer = {"Snapshots": snapshots, "ResponseContext": {"RequestId": "req-list"}}
    if token:
        answer["NextPageToken"] = token
    return json.dumps(answer)


def test_it_shows_the_first_pages_of_an_endless_listing_and_says_it_is_incomplete(
    client, operator, api
) -> None:
    calls: list[int] = []

    def endless(request):
        calls.append(1)
        snapshot = api_snapshot(f"snap-{len(calls):08x}", at=timezone.now(), name=f"p{len(calls)}")
        # A fresh token every time; stops on its own only far past any sane bound.
        return 200, {}, listing_answer([snapshot], f"t{len(calls)}" if len(calls) < 1000 else None)

    api.add_callback(responses.POST, f"{API}/ReadSnapshots", callback=endless)
    page = client.get("/").content.decode()
    assert len(calls) == selectors.DASHBOARD_MAX_PAGES
    assert "list of snapshots is incomplete" in page and "Only the first 10 snapshots" in page
    assert "Snapshots from the API are not shown" not in page
    assert {"p1", f"p{selectors.DASHBOARD_MAX_PAGES}"} <= set(rows_of(page))


def test_it_lists_one_teams_account_once_at_a_time_and_other_teams_meanwhile(
    client, operator, api, monkeypatch
) -> None:
    monkeypatch.setattr(selectors, "DASHBOARD_API_DEADLINE_SECONDS", 0.2)
    release = threading.Event()
    calls: list[int] = []

    def first_one_slow(request):
        calls.append(1)
        if len(calls) == 1:
            release.wait(timeout=60)  # the slow account, until the test lets it go
        snapshot = api_snapshot(f"snap-{len(calls):08x}", at=timezone.now(), name="listed")
        return 200, {}, listing_answer([snapshot], None)

    api.add_callback(responses.POST, f"{API}/ReadSnapshots", callback=first_one_slow)
    try:
        assert "did not answer within 0.2 seconds" in client.get("/").content.decode()
        # The team's listing is still running: no second one, and a banner says why.
        again = client.get("/").content.decode()
        assert "already under way" in again and "reload the page in a moment" in again
        assert len(calls) == 1
        # Another team's dashboard is listed all the same.
        monkeypatch.setattr(selectors, "DASHBOARD_API_DEADLINE_SECONDS", 30.0)
        other = Client()
        other.force_login(make_user("other-operator", team=make_team("other")))
        assert rows_of(other.get("/").content.decode()) == ["listed"]
        assert len(calls) == 2
    finally:
        release.set()
    wait_until(lambda: not selectors._listings_running, seconds=30)
    # The slow listing, once done, serves the team's next page load.
    assert rows_of(client.get("/").content.decode()) == ["listed"] and len(calls) == 2


def test_it_lists_the_sandboxs_snapshots(client, operator, api_on_sandbox) -> None:
    api_on_sandbox.call(
        "CreateSnapshot",
        {"FileLocation": api_on_sandbox.presign(), "SnapshotSize": 10 * GIB},
    ).raise_for_status()
    page = client.get("/").content.decode()
    assert "Snapshots from the API are not shown" not in page
    assert re.search(r"snap-[0-9a-f]{8}", page)


def test_it_filters_by_state_and_by_name_id_or_description(client, operator, api) -> None:
    now = timezone.now()
    make_job(operator, name="alpha", state=JobState.COMPLETED, description="weekly")
    make_job(operator, name="beta", state=JobState.ERROR, snapshot_id="snap-0000beef")
    make_job(operator, name="gamma", state=JobState.IN_PROGRESS)
    answer_snapshots(
        api,
        [
            api_snapshot("snap-000000d1", at=now, name="delta", state="pending"),
            api_snapshot("snap-000000e1", at=now, name="epsilon", description="weekly"),
        ],
    )
    assert sorted(rows_of(client.get("/?state=active").content.decode())) == ["delta", "gamma"]
    assert rows_of(client.get("/?state=error").content.decode()) == ["beta"]
    assert sorted(rows_of(client.get("/?q=WEEKLY").content.decode())) == ["alpha", "epsilon"]
    assert rows_of(client.get("/?q=beef").content.decode()) == ["beta"]
    assert "No snapshot matches" in client.get("/?q=nothing-like-it").content.decode()


def test_it_sorts_by_creation_date_both_ways(client, operator) -> None:
    now = timezone.now()
    for index, name in enumerate(["first", "second", "third"]):
        make_job(operator, name=name, created_at=now + timedelta(minutes=index))
    assert rows_of(client.get("/").content.decode()) == ["third", "second", "first"]
    assert rows_of(client.get("/?sort=oldest").content.decode()) == ["first", "second", "third"]


def walk(client, url: str, link: str) -> list[str]:
    names: list[str] = []
    while url:
        page = client.get(url).content.decode()
        names += rows_of(page)
        found = re.search(rf'href="([^"]+)" rel="{link}"', page)
        url = "/" + found.group(1).replace("&amp;", "&") if found else ""
    return names


def test_it_pages_through_thousands_of_rows_and_api_snapshots_without_gaps_or_repeats(
    client, operator, api, django_assert_max_num_queries
) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    team = operator.memberships.get().team
    jobs = [
        # Pairs share a creation time, so the tie-break on the id is exercised.
        ImportJob(
            name=f"job{index:05d}",
            team=team,
            snapshot_size=GIB,
            submitted_by=operator,
            url_redacted="https://oos.eu-west-2.outscale.com/b/k",
            url_host="oos.eu-west-2.outscale.com",
            url_bucket="b",
            url_key="k",
            url_expires_at=base,
            created_at=base + timedelta(seconds=index // 2),
        )
        for index in range(3000)
    ]
    ImportJob.objects.bulk_create(jobs, batch_size=1000)
    answer_snapshots(
        api,
        [
            api_snapshot(
                f"snap-{index:08x}", at=base + timedelta(seconds=index * 7), name=f"api{index}"
            )
            for index in range(200)
        ],
    )
    expected = 3200
    newest_first = walk(client, "/", "next")
    assert len(newest_first) == expected == len(set(newest_first))
    # A deep page costs what the first one does: the keyset reads one page from the index.
    deep = re.search(r'href="([^"]+)" rel="next"', client.get("/").content.decode())
    assert deep is not None
    with django_assert_max_num_queries(5):
        assert client.get("/?after=2026-01-01T00:01:00%2B00:00~0").status_code == 200
    oldest_first = walk(client, "/?sort=oldest", "next")
    assert oldest_first == list(reversed(newest_first))


def test_it_pages_back_to_the_newer_rows(client, operator, monkeypatch) -> None:
    monkeypatch.setattr(listing, "PAGE_SIZE", 3)
    now = timezone.now()
    for index in range(8):
        make_job(operator, name=f"n{index}", created_at=now + timedelta(minutes=index))
    first = client.get("/").content.decode()
    assert rows_of(first) == ["n7", "n6", "n5"] and 'rel="prev"' not in first
    second_url = "/" + re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = client.get(second_url).content.decode()
    assert rows_of(second) == ["n4", "n3", "n2"]
    back = re.search(r'href="([^"]+)" rel="prev"', second).group(1).replace("&amp;", "&")
    assert rows_of(client.get("/" + back).content.decode()) == ["n7", "n6", "n5"]
    assert walk(client, "/", "next")[-2:] == ["n1", "n0"]


@pytest.mark.parametrize(
    "query", ["?after=garbage", "?before=2026-01-01~", "?state=<x>", "?sort=sideways", "?q=%00"]
)
def test_it_never_fails_on_odd_query_strings(client, operator, query) -> None:
    make_job(operator, name="there")
    response = client.get("/" + query)
    assert response.status_code == 200


def test_it_has_no_inline_script_or_style_so_a_strict_csp_can_be_set(client, operator) -> None:
    make_job(operator, state=JobState.IN_PROGRESS)
    page = client.get("/").content.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []
    assert " style=" not in page and "hx-on" not in page and "javascript:" not in page


# --- A user in no team ------------------------------------------------------------------


def test_it_shows_a_user_in_no_team_an_empty_dashboard_and_never_the_environments_snapshots(
    client, api
) -> None:
    # The OSC_* environment's account has a snapshot: a user in no team must never see it.
    answer_snapshots(api, [api_snapshot("snap-0000e0e0", at=timezone.now(), name="env-only")])
    loner = User.objects.create_user("loner", password="a-long-test-password")
    client.force_login(loner)
    response = client.get("/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "You are in no team yet" in page and "Ask a team admin to invite you" in page
    assert "env-only" not in page and "snap-0000e0e0" not in page
    assert "Import Snapshot" not in page
    assert len(api.calls) == 0  # not even asked
    # An invitation waiting for them is listed right there, with the way to accept it.
    TeamInvitation.objects.create(team=make_team("blue"), user=loner, role=Role.OPERATOR)
    page = client.get("/").content.decode()
    assert "blue" in page and ">Accept<" in page and "env-only" not in page
    assert len(api.calls) == 0


def test_it_answers_every_team_page_of_a_user_in_no_team_with_a_clear_refusal(client, api) -> None:
    make_job(make_user("someone-in-a-team"), name="their-job")
    client.force_login(User.objects.create_user("loner", password="a-long-test-password"))
    for path in ("/history/", "/history.csv", "/audit/", "/audit.csv", "/team/members/"):
        response = client.get(path)
        assert response.status_code == 403, path
        page = response.content.decode()
        assert "You are in no team yet" in page and "ask a team admin to invite you" in page, path
        assert "their-job" not in page
    for response in (client.get("/imports/new"), dialog_post(client)):
        assert response.status_code == 403
        assert "You are in no team yet" in response.content.decode()
    assert ImportJob.objects.count() == 1 and len(api.calls) == 0


# --- The dialog --------------------------------------------------------------------------


def test_it_offers_the_dialog_with_cockpits_fields_and_a_page_without_javascript(
    client, operator
) -> None:
    page = client.get("/").content.decode()
    assert '<dialog id="import-dialog"' in page and ">IMPORT SNAPSHOT</h2>" in page
    # A button (it opens a dialog), in a form that leads to the same form's page without
    # JavaScript.
    assert re.search(
        r'<form method="get" action="/imports/new"[^>]*><button type="submit" '
        r'class="button primary" data-dialog-open="import-dialog" aria-haspopup="dialog">',
        page,
    )
    assert "Import Snapshot" in page
    for label in ("Name", "Object Pre-signed URL", "Snapshot Size"):
        assert f">{label}</label>" in page or f">{label} <" in page
    assert 'Description <span class="optional">(optional)</span>' in page
    assert page.count('class="help"') >= 4 and 'name="idempotency_key"' in page
    fallback = client.get("/imports/new").content.decode()
    assert "IMPORT SNAPSHOT" in fallback and "hx-post" not in fallback.split("<form", 1)[1][:300]


def test_it_shows_errors_inline_and_keeps_the_values_after_an_htmx_round_trip(
    client, operator, sent
) -> None:
    key = str(uuid.uuid4())
    response = dialog_post(client, name="keep me", snapshot_size="lots", idempotency_key=key)
    body = response.content.decode()
    assert response.status_code == 422
    assert body.lstrip().startswith('<form id="import-form"')  # a fragment, not a page
    assert 'value="keep me"' in body and "whole number of bytes" in body
    assert 'id="id_snapshot_size_error"' in body and f'value="{key}"' in body
    assert ImportJob.objects.count() == 0 and sent == []


def test_it_takes_tags_as_key_value_lines_and_refuses_bad_ones_with_their_line(
    client, operator, sent
) -> None:
    cases = [
        ("env\nowner=me", "Line 1"),
        ("Name=other", "Name"),
        ("env=a\nenv=b", "repeats the key"),
        ("k" * 256 + "=v", "255"),
        ("osc:thing=x", "osc:"),
        ("env=pro\u202educ", "invisible or control character"),
    ]
    for text, said in cases:
        response = dialog_post(client, tags=text)
        body = response.content.decode()
        assert response.status_code == 422, text
        assert 'id="id_tags_error"' in body and said in body, (text, body[:2000])
    assert ImportJob.objects.count() == 0 and sent == []
    response = dialog_post(client, tags="env=production\n\nteam = storage")
    assert response.status_code == 200
    assert ImportJob.objects.get().tags == {"env": "production", "team": "storage"}


def test_it_creates_the_job_adds_its_row_on_top_and_confirms(
    client, operator, sent, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = dialog_post(client, name="fresh")
    job = ImportJob.objects.get()
    body = response.content.decode()
    assert response.status_code == 200
    assert json.loads(response["HX-Trigger"]) == {"portal:imported": {"job": str(job.pk)}}
    assert 'hx-swap-oob="afterbegin:#jobs-body"' in body and f'id="job-{job.pk}"' in body
    assert "data-poll-version" in body  # the new row joins the polling at once
    assert 'id="toast" hx-swap-oob="innerHTML"' in body and "started" in body
    assert sent == [(str(job.pk),)]


def test_it_creates_one_job_when_import_is_clicked_twice(client, operator, sent) -> None:
    key = str(uuid.uuid4())
    first = dialog_post(client, idempotency_key=key)
    second = dialog_post(client, idempotency_key=key)
    job = ImportJob.objects.get()
    assert str(job.pk) == key  # the key is the job's id, and so its ClientToken
    assert first.status_code == second.status_code == 200
    assert "was already started" in second.content.decode()
    assert "afterbegin" not in second.content.decode()  # no second row either


def test_it_does_not_hand_out_another_users_job_for_a_reused_key(client, operator, sent) -> None:
    other = make_job(make_user("mallory"), name="theirs")
    response = dialog_post(client, idempotency_key=str(other.pk))
    assert response.status_code == 403
    assert ImportJob.objects.count() == 1


def test_it_inspects_the_url_in_place_and_offers_the_suggested_size(client, operator) -> None:
    response = client.post(
        "/imports/inspect", {"presigned_url": oos_presigned_url()}, headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "qcow2" in body and "Expires" in body
    assert f'data-use-size="{10 * GIB}"' in body and ">Use it</button>" in body


def test_it_hides_the_button_and_refuses_imports_without_the_right(
    client, operator, sent, monkeypatch
) -> None:
    monkeypatch.setattr("importer.teams.permissions.can_import", lambda request: False)
    assert "data-dialog-open" not in client.get("/").content.decode()
    assert dialog_post(client).status_code == 403
    assert client.post("/imports/inspect", {"presigned_url": "x"}).status_code == 403
    assert ImportJob.objects.count() == 0


# --- The job page ------------------------------------------------------------------------


def test_it_shows_everything_support_needs_on_the_job_page(client, operator) -> None:
    job = make_job(operator, name="broken", snapshot_size=10 * GIB + 512)
    job.claim_for_submission()
    job.mark_failed(
        code="4045",
        type="InvalidParameterValue",
        details="SnapshotSize too small",
        request_id="r-9",
    )
    page = client.get(f"/imports/{job.pk}").content.decode()
    for text in (
        "4045",
        "InvalidParameterValue",
        "SnapshotSize too small",
        "r-9",
        f"{10 * GIB + 512} bytes",
        "10.00 GiB",
        "operator1",
        "exports-bucket/snap.qcow2.gz",
        "URL expires",
        "History",
        "A worker is sending the import to the API.",
    ):
        assert text in page, text
    assert 'name="v"' not in page  # a failed job is not polled
