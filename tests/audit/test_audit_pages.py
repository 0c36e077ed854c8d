"""The audit log's keyset pages: newest first, ties on the time, sign-ins merged, bad cursors."""

from __future__ import annotations

import html

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from importer.audit.chain import Entry, record_many
from importer.audit.models import AuditAction, AuditEvent
from importer.audit.views import AUDIT_KEYSET
from importer.teams.models import Role
from tests.support.factories import make_team, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client):
    user = make_user("team-admin", team=make_team("ops"), role=Role.ADMIN)
    client.force_login(user)  # its sign-in is an entry of the log too
    return user


def fill_log(team, member, stranger, *, groups: int = 13) -> None:
    """Groups of ten entries written at one instant (record_many stamps them alike): the team's
    own, a member's sign-ins, and what the log must never show, another team's and a stranger's
    sign-ins, all interleaved."""
    elsewhere = stranger.memberships.first().team
    for group in range(groups):
        record_many(
            [
                Entry(AuditAction.JOB_STATE, None, None, team, f"ours-{group}-{i}", None, None)
                for i in range(7)
            ]
            + [Entry(AuditAction.LOGIN, member, None, None, f"member-{group}", None, None)]
            + [Entry(AuditAction.LOGIN, member, None, None, f"member-{group}b", None, None)]
            + [Entry(AuditAction.JOB_STATE, None, None, elsewhere, "not-ours", None, None)]
            + [Entry(AuditAction.LOGIN, stranger, None, None, "stranger-signs-in", None, None)]
        )


def shown_ids(response) -> list[int]:
    return [event.pk for event in response.context["page"].rows]


def open_page(client, url: str):
    response = client.get(url)
    assert response.status_code == 200
    return response


def link(response, name: str) -> str:
    href = getattr(response.context["page"], name)
    if href:
        assert f'href="{html.escape(href)}"' in response.content.decode()
    return href


@pytest.fixture
def cast(admin):
    team = admin.memberships.first().team
    member = make_user("member", team=team)
    stranger = make_user("stranger", team=make_team("elsewhere"))
    return team, member, stranger


def the_teams_log(team, member, admin, **filters) -> list[int]:
    """What the log should list, newest first: the team's entries and its members' sign-ins."""
    members = (member.pk, admin.pk)
    events = AuditEvent.objects.filter(**filters).order_by("-at", "-id")
    return [
        event.pk
        for event in events
        if event.team_id == team.pk or (event.team_id is None and event.actor_id in members)
    ]


def test_it_walks_the_log_three_pages_down_and_back_up_showing_each_entry_once(
    client, admin, cast
) -> None:
    team, member, stranger = cast
    fill_log(team, member, stranger)
    pages = [open_page(client, "/audit/")]
    assert not link(pages[0], "previous") and not link(pages[0], "first")
    while older := link(pages[-1], "next"):
        pages.append(open_page(client, "/audit/" + older))
    ids = [shown_ids(page) for page in pages]
    # 13 groups of 9 of ours, and the admin's sign-in: 118 entries.
    assert [len(page) for page in ids] == [50, 50, 18]
    assert sum(ids, []) == the_teams_log(team, member, admin)
    assert "Older" in pages[0].content.decode() and "stranger-signs-in" not in str(ids)

    newer = open_page(client, "/audit/" + link(pages[2], "previous"))
    assert shown_ids(newer) == ids[1]
    newer = open_page(client, "/audit/" + link(newer, "previous"))
    assert shown_ids(newer) == ids[0] and not link(newer, "previous")
    assert "Newer" in pages[1].content.decode()


def test_it_never_shows_another_teams_entries_or_a_strangers_sign_ins(client, admin, cast) -> None:
    team, member, stranger = cast
    fill_log(team, member, stranger, groups=8)
    pages = [open_page(client, "/audit/")]
    while older := link(pages[-1], "next"):
        pages.append(open_page(client, "/audit/" + older))
    body = "".join(page.content.decode() for page in pages)
    assert "ours-7-6" in body and "member-0b" in body
    assert "not-ours" not in body and "stranger-signs-in" not in body


def test_it_keeps_the_filters_on_every_page(client, admin, cast) -> None:
    team, member, stranger = cast
    fill_log(team, member, stranger)
    pages = [open_page(client, "/audit/?action=job_state&q=ours-1")]
    while older := link(pages[-1], "next"):
        assert "action=job_state" in older and "q=ours-1" in older
        pages.append(open_page(client, "/audit/" + older))
    seen = sum((shown_ids(page) for page in pages), [])
    wanted = the_teams_log(team, member, admin, action="job_state", target__icontains="ours-1")
    # ours-1-*, ours-10-* to ours-12-*: 28 entries, one page.
    assert seen == wanted and len(seen) == 28
    assert "action=job_state" in pages[0].context["query"]


@pytest.mark.parametrize("cursor", ["garbage", "%00", "WyJ4IiwgIngiXQ", "A" * 3000])
def test_it_answers_a_bad_cursor_with_the_newest_page(client, admin, cast, cursor) -> None:
    fill_log(*cast, groups=7)
    newest = shown_ids(open_page(client, "/audit/"))
    for name in ("after", "before"):
        assert shown_ids(open_page(client, f"/audit/?{name}={cursor}")) == newest


def test_it_reads_a_deep_page_in_as_many_queries_as_the_newest_and_without_offset(
    client, admin, cast
) -> None:
    team, member, stranger = cast
    fill_log(team, member, stranger, groups=60)
    deep_row = AuditEvent.objects.get(pk=the_teams_log(team, member, admin)[400])
    with CaptureQueriesContext(connection) as newest:
        open_page(client, "/audit/")
    with CaptureQueriesContext(connection) as deep:
        response = open_page(client, f"/audit/?after={AUDIT_KEYSET.cursor_for(deep_row)}")
    assert len(deep.captured_queries) == len(newest.captured_queries)
    assert shown_ids(response)[0] == the_teams_log(team, member, admin)[401]
    assert not any("OFFSET" in query["sql"] for query in deep.captured_queries)


def test_it_still_exports_the_whole_filtered_log(client, admin, cast) -> None:
    team, member, stranger = cast
    fill_log(team, member, stranger)
    body = b"".join(client.get("/audit.csv?action=login").streaming_content).decode()
    # 26 member sign-ins and the admin's: beyond one page would be 50, so all of them.
    assert body.count("member-") == 26 and "stranger-signs-in" not in body
    body = b"".join(client.get("/audit.csv").streaming_content).decode()
    assert body.count("ours-") == 13 * 7 and "not-ours" not in body
