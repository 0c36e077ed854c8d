"""The team a user works in: theirs to choose, remembered, never picked for them by name."""

from __future__ import annotations

import pytest
from django.test import Client

from importer.teams.models import Membership, Role
from tests.support.factories import make_job, make_team, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_teams():
    """A user in two teams, "alpha" first by name, each with a job of its own."""
    alpha, beta = make_team("alpha"), make_team("beta")
    user = make_user("pat", team=alpha, role=Role.OPERATOR)
    Membership.objects.create(user=user, team=beta, role=Role.ADMIN)
    make_job(user, team=alpha, name="alpha-job")
    make_job(user, team=beta, name="beta-job")
    return user


def logged_in(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


def test_it_asks_a_user_in_several_teams_to_choose_instead_of_taking_the_first(two_teams) -> None:
    browser = logged_in(two_teams)
    response = browser.get("/")
    assert response.status_code == 302 and response["Location"] == "/team/choose"
    page = browser.get("/team/choose").content.decode()
    assert "which one do you want to work in?" in page
    assert "Work in alpha" in page and "Work in beta" in page
    assert "alpha-job" not in page and "beta-job" not in page
    # The header's switcher selects nothing until the user chooses.
    assert '<option value="" selected>Choose a team…</option>' in page

    beta = two_teams.memberships.get(team__name="beta").team
    assert browser.post("/team/switch", {"team": str(beta.pk)}).status_code == 302
    dashboard = browser.get("/").content.decode()
    assert "beta-job" in dashboard and "alpha-job" not in dashboard
    assert "beta · Team admin" in dashboard


def test_it_remembers_the_chosen_team_in_every_new_session(two_teams) -> None:
    beta = two_teams.memberships.get(team__name="beta").team
    logged_in(two_teams).post("/team/switch", {"team": str(beta.pk)})
    # Another browser, another day: still beta.
    page = logged_in(two_teams).get("/").content.decode()
    assert "beta-job" in page and "alpha-job" not in page
    assert Membership.objects.get(user=two_teams, is_current=True).team == beta
    # Switching moves the mark; there is only ever one current team.
    alpha = two_teams.memberships.get(team__name="alpha").team
    logged_in(two_teams).post("/team/switch", {"team": str(alpha.pk)})
    assert list(
        Membership.objects.filter(user=two_teams, is_current=True).values_list("team", flat=True)
    ) == [alpha.pk]


def test_it_asks_first_on_every_team_page_then_comes_back_to_it(two_teams) -> None:
    browser = logged_in(two_teams)
    response = browser.get("/history/")
    assert response.status_code == 302
    assert response["Location"] == "/team/choose?next=%2Fhistory%2F"
    page = browser.get(response["Location"]).content.decode()
    assert 'name="next" value="/history/"' in page
    beta = two_teams.memberships.get(team__name="beta").team
    back = browser.post("/team/switch", {"team": str(beta.pk), "next": "/history/"})
    assert back.status_code == 302 and back["Location"] == "/history/"
    assert "beta-job" in browser.get("/history/").content.decode()


def test_it_refuses_to_act_for_an_unchosen_team_and_to_leave_the_site(two_teams) -> None:
    browser = logged_in(two_teams)
    refused = browser.post("/imports/new", {"name": "x"})
    assert refused.status_code == 403
    assert "You are in several teams: choose the one to work in" in refused.content.decode()
    refused = browser.post("/team/credentials/", {"region": "eu-west-2"})
    assert refused.status_code == 403
    alpha = two_teams.memberships.get(team__name="alpha").team
    away = browser.post("/team/switch", {"team": str(alpha.pk), "next": "https://evil.example/"})
    assert away["Location"] == "/"
    assert browser.post("/team/switch", {"team": ""})["Location"] == "/team/choose"


def test_it_gives_a_user_with_one_team_that_team_without_asking() -> None:
    user = make_user("solo", team=make_team("only"))
    make_job(user, name="solo-job")
    response = logged_in(user).get("/")
    assert response.status_code == 200 and "solo-job" in response.content.decode()
