"""Short versions of `make reliability`'s scenarios (bench/scenarios.py), on every CI run.

Each runs the real parts: Celery worker processes on a private redis-server, gunicorn, the test
database on PostgreSQL and the sandbox over HTTP. The full-size runs and their figures are in
docs/RELIABILITY.md.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from bench import lifecycle, scenarios
from bench.hostile import DESTINATIONS, EXTRA_HOSTS, good_url
from bench.stack import RedisServer, use_broker
from importer.imports.forms import ImportSnapshotForm
from importer.presigned.fetch import read_object_head
from tests.support.workers import database_url, wait_until

integration = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def env(api_on_sandbox, tmp_path) -> Iterator[scenarios.Env]:
    """The sandbox, a private Redis (safe to stop) and the test database."""
    broker = RedisServer()
    broker.start()
    running = scenarios.Env(api_on_sandbox, broker, database_url(), tmp_path)
    try:
        with use_broker(broker.url):
            scenarios.people()
            yield running
    finally:
        running.stop_all()
        broker.stop()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_loses_and_duplicates_nothing_when_a_worker_is_killed_at_each_step(env) -> None:
    results = scenarios.scenario_killed_worker(env, runs_per_step=1)
    assert [result.step for result in results] == list(scenarios.KILL_STEPS)
    for result in results:
        assert (result.runs, result.not_reached) == (1, 0), result
        assert result.lost == 0, result
        assert result.duplicates == 0, result


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_answers_every_submission_while_redis_is_down_and_finishes_them_after(env) -> None:
    result = scenarios.scenario_redis_down(env, submissions=6)
    assert result.submitted_while_down == 2
    assert result.errors == 0
    assert result.told_queued == result.submitted_while_down
    assert result.final_after_restart == result.submitted
    assert result.duplicates == 0


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_leaves_no_job_wrong_when_the_database_drops_every_connection(env) -> None:
    # The shared server stays up: its connections to the portal's processes are terminated.
    result = scenarios.scenario_postgres_restart(env, jobs=4)
    assert result.method.startswith("pg_terminate_backend")
    assert (result.wrong, result.not_final) == (0, 0), result


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_keeps_one_snapshot_per_job_and_bounded_retries_under_api_faults(env) -> None:
    result = scenarios.scenario_api_faults(env, imports=40, permanent_share=0.1)
    assert result.final == result.imports == 40
    assert sum(result.faults_fired.values()) > 0
    assert result.snapshots_not_one == 0
    assert result.retries_over_bound == 0
    assert result.retried_after_permanent == 0
    assert result.failed_permanent == result.permanent == 4


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_volumes_omis_and_copies_make_one_each_under_faults_and_a_killed_worker(env) -> None:
    result = lifecycle.scenario_lifecycle_faults(env, per_kind=3)
    assert result.final == sum(result.jobs.values()) == 9, result.examples
    assert sum(result.faults_fired.values()) > 0
    assert result.unexpected_errors == 0, result.examples
    assert result.ended_as_injected == sum(result.refused.values()) + result.failed_omis
    assert sum(result.not_one.values()) == 0, result.examples
    assert result.duplicates_by_token == result.duplicates_by_name == 0
    assert result.calls_over_bound == result.retried_after_permanent == 0
    assert result.killed_recovered == result.killed_held > 0


@pytest.mark.django_db(transaction=True)
def test_every_lifecycle_dialog_refuses_hostile_posts_clearly_and_saves_nothing(env) -> None:
    result = lifecycle.scenario_lifecycle_hostile(env, count=250)
    assert set(result.posts) == {"volume", "image", "permissions", "copy", "tags"}, result.posts
    assert result.server_errors == 0, result.examples
    assert result.refused_not_422 == result.refused_without_message == 0, result.examples
    assert result.messages_not_shown == 0, result.examples
    assert result.jobs_by_refused == result.changes_by_refused == 0, result.examples
    assert result.invalid_accepted == result.invalid_sent_to_api == 0, result.examples
    assert result.foreign_keys_accepted == result.replays_made_job == 0, result.examples
    assert sum(result.accepted.values()) > 0  # the oracle saw valid posts too: not blind


@pytest.mark.django_db
def test_it_refuses_hostile_urls_and_inputs_without_dialling_a_forbidden_address() -> None:
    result = scenarios.scenario_hostile_input(generated=400)
    assert result.crafted >= 200
    assert result.server_errors == 0, result.examples
    assert result.forbidden_connections == 0
    assert result.crafted_accepted == 0, result.examples
    assert result.invalid_accepted == 0, result.examples
    assert result.accepted_total > 0  # the oracle saw valid inputs too: the suite is not blind


@pytest.mark.django_db
def test_it_neither_saves_nor_dials_a_hostile_destination_of_any_kind() -> None:
    # Webhook URL, API endpoint, OOS endpoint and pre-signed URL: through the views, then
    # stored as if they got past them and sent; production settings, then a local run.
    result = scenarios.scenario_hostile_destinations(limit=40)
    assert [run.name for run in result.passes] == ["production", "local run"]
    for run in result.passes:
        assert all(run.tried[kind] >= 40 for kind in DESTINATIONS), run.tried
        assert all(run.sent[kind] >= 30 for kind in DESTINATIONS), run.sent
        assert run.connections == dict.fromkeys(run.connections, 0), run.examples
        assert len(run.connections) == 4
        assert run.sandbox_connections == 0, run.examples
        assert run.socket_forbidden == [], run.examples
        assert sum(run.saved.values()) == 0, run.examples
        assert sum(run.server_errors.values()) == 0, run.examples
        assert sum(run.not_refused.values()) == 0, run.examples
        assert sum(run.crashes.values()) == 0, run.examples
    local_run = result.passes[1]
    # Its listed sandbox answered every redirect (none followed) and the right values reached
    # it: the counters this test relies on do see a saved value and a connection.
    assert local_run.redirects == 5 * scenarios.REDIRECT_DESTINATIONS * 4
    assert local_run.redirect_connections >= local_run.redirects
    assert local_run.controls_passed == local_run.controls == 4, local_run.examples


def test_it_counts_every_connection_a_loopback_listener_accepts() -> None:
    with scenarios.counting_listeners() as listeners:
        redis = listeners.targets[0]
        with socket.create_connection(("127.0.0.1", redis.port), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            assert conn.recv(100) == b"-ERR unknown command\r\n"
        assert wait_until(lambda: redis.count() == 1, seconds=5)
    assert listeners.counts() == {
        "Redis-like": 1,
        "HTTP API": 0,
        "metadata service": 0,
        "mail server": 0,
    }


def test_it_counts_a_connection_to_a_forbidden_address_at_the_socket() -> None:
    # The counter the hostile suite relies on does see a connection when one is made.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with scenarios.SocketWatch(set()) as watch, pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
    assert watch.forbidden == [f"127.0.0.1:{port}"]


@pytest.mark.django_db
def test_it_refuses_a_url_whose_allowed_host_resolves_to_an_internal_address(settings) -> None:
    settings.PORTAL_ALLOW_HTTP_URLS = False
    settings.PORTAL_URL_HOSTS = list(EXTRA_HOSTS)
    defaults = read_object_head.__kwdefaults__
    saved = defaults["resolver"]
    defaults["resolver"] = scenarios.fake_resolver
    try:
        with scenarios.SocketWatch(set()) as watch:
            form = ImportSnapshotForm(
                data={
                    "name": "rebound",
                    "presigned_url": good_url().replace(
                        "oos.eu-west-2.outscale.com", "rebind.example.org"
                    ),
                    "snapshot_size": "10737418240",
                }
            )
            assert not form.is_valid()
    finally:
        defaults["resolver"] = saved
    assert "169.254.169.254" in form.errors["presigned_url"][0]
    assert watch.forbidden == [] and watch.public == []


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_never_leaks_a_canary_signature_anywhere(env) -> None:
    started = time.monotonic()
    result = scenarios.scenario_secret_leak(env)
    assert result.canaries >= 9
    assert all(size > 0 for size in result.places.values()), result.places
    assert result.hits == dict.fromkeys(result.places, 0)
    assert time.monotonic() - started < 200
