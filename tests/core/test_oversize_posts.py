"""A POST over Django's upload limits gets a page that says which limit and what to do, in the
portal's layout (inside the dialog over htmx), and still never acts: no row, no audit entry."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from importer.audit.models import AuditEvent
from importer.batches.manifest import MAX_BYTES, MAX_ROWS
from importer.batches.models import ImportBatch
from importer.core.oversize import MANIFEST_ADVICE
from importer.imports.models import ImportJob
from tests.core.test_csp import every_url
from tests.support.factories import make_job, make_user

pytestmark = pytest.mark.django_db
TOO_BIG = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
LIMIT_SHOWN = "at most 2.5 MiB (2,621,440 bytes) of text"


@pytest.fixture
def operator_client() -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("oversize-operator"))
    client.get(reverse("batch_new"))  # the CSRF cookie, as a browser gets it
    return client


def token(client: Client) -> str:
    return client.cookies["csrftoken"].value


def counts() -> tuple[int, int, int]:
    """Jobs, batches and audit entries: every action the portal takes adds to one of them."""
    return ImportJob.objects.count(), ImportBatch.objects.count(), AuditEvent.objects.count()


def nothing_acted(before: tuple[int, int, int]) -> bool:
    return counts() == before


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_advice_names_the_bulk_imports_own_limits() -> None:
    # core may not import batches: the numbers are written twice, and held equal here.
    assert f"at most {MAX_BYTES // 1024**2} MiB and {MAX_ROWS} rows each" in MANIFEST_ADVICE


def test_a_pasted_manifest_over_the_limit_gets_413_in_the_layout(
    operator_client: Client,
) -> None:
    before = counts()
    answer = operator_client.post(
        reverse("batch_new"),
        {"manifest": "x" * TOO_BIG, "csrfmiddlewaretoken": token(operator_client)},
    )
    html = answer.content.decode()
    assert answer.status_code == 413
    assert "Too much to send in one form" in html
    shown = text_of(html)
    assert LIMIT_SHOWN in shown and "this one sent 2.5 MiB" in shown
    assert "split the manifest into files of at most 2 MiB and 500 rows" in shown
    assert "Nothing was saved or started." in shown
    # The portal's layout, signed in: the brand, the navigation and who is signed in.
    assert "Snapshots Portal" in html and 'aria-label="Main"' in html
    assert "oversize-operator" in html
    assert "xxxxxxxxxx" not in html  # nothing of what was sent is written back
    assert nothing_acted(before)


def test_a_multipart_form_whose_text_is_over_the_limit_gets_413(operator_client: Client) -> None:
    before = counts()
    answer = operator_client.post(
        reverse("batch_new"),
        {
            "manifest": "x" * TOO_BIG,
            "manifest_file": SimpleUploadedFile("m.csv", b"name,url\n"),
            "csrfmiddlewaretoken": token(operator_client),
        },
    )
    assert answer.status_code == 413 and "Too much to send" in answer.content.decode()
    assert nothing_acted(before)


def test_too_many_fields_gets_400_naming_the_limit(operator_client: Client) -> None:
    fields = {f"f{i}": "1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    answer = operator_client.post(
        reverse("batch_new"), {**fields, "csrfmiddlewaretoken": token(operator_client)}
    )
    assert answer.status_code == 400
    assert "takes at most 1,000 fields" in text_of(answer.content.decode())


def test_too_many_files_gets_400_naming_the_limit(operator_client: Client) -> None:
    files = [
        SimpleUploadedFile(f"{i}.csv", b"name,url\n")
        for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)
    ]
    answer = operator_client.post(
        reverse("batch_new"),
        {"manifest_file": files, "csrfmiddlewaretoken": token(operator_client)},
    )
    assert answer.status_code == 400
    assert "takes at most 100 files" in text_of(answer.content.decode())


def test_a_malformed_multipart_body_gets_400_not_500(operator_client: Client) -> None:
    answer = operator_client.generic(
        "POST",
        reverse("batch_new"),
        b'--b\r\nContent-Disposition: form-data; name="manifest"\r\n\r\nx\r\n',
        content_type="multipart/form-data; boundary=",  # no boundary: unreadable
    )
    assert answer.status_code == 400
    assert "The form could not be read" in answer.content.decode()


def test_an_oversize_post_without_a_valid_token_still_never_acts(operator_client: Client) -> None:
    before = counts()
    answer = operator_client.post(
        reverse("batch_new"), {"manifest": "x" * TOO_BIG, "csrfmiddlewaretoken": "forged"}
    )
    assert answer.status_code == 413 and nothing_acted(before)
    # The CSRF check still stands for every POST it can read.
    small = operator_client.post(reverse("batch_new"), {"manifest": "name,url\n"})
    assert small.status_code == 403


def test_the_import_dialog_over_htmx_gets_the_message_where_it_swaps(
    operator_client: Client,
) -> None:
    before = counts()
    answer = operator_client.post(
        reverse("import_new"),
        {
            "name": "big",
            "description": "d" * TOO_BIG,
            "csrfmiddlewaretoken": token(operator_client),
        },
        HTTP_HX_REQUEST="true",
    )
    # 422 is what the portal's htmx swaps; the refusal's own status is in the header.
    assert answer.status_code == 422 and answer["X-Portal-Refused-Status"] == "413"
    assert answer["HX-Reswap"] == "afterbegin"  # above the form: the dialog keeps the form
    fragment = answer.content.decode()
    assert fragment.startswith('<div class="form-error post-refused" role="alert">')
    assert "<html" not in fragment and LIMIT_SHOWN in fragment
    assert nothing_acted(before)


def test_a_signed_out_person_gets_the_page_without_the_navigation() -> None:
    client = Client(enforce_csrf_checks=True)
    answer = client.post(reverse("login"), {"username": "u" * TOO_BIG, "password": "p"})
    html = answer.content.decode()
    assert answer.status_code == 413 and "Too much to send" in html
    assert "Snapshots Portal" in html and 'aria-label="Main"' not in html


@pytest.fixture
def admin_user() -> User:
    from importer.teams.models import Role

    return make_user("oversize-admin", role=Role.ADMIN)


def test_every_url_answers_an_oversize_post_with_the_page_and_never_acts(
    admin_user: User,
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    job = make_job(admin_user)
    before = counts()
    body = "x" * TOO_BIG
    for url in every_url(job.pk):
        answer = client.post(url, {"text": body})
        assert answer.status_code == 413, url
        assert "Too much to send in one form" in answer.content.decode(), url
        assert "default-src 'self'" in answer["Content-Security-Policy"], url
    assert nothing_acted(before)
