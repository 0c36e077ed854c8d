"""Saves the README's screenshots into docs/screenshots/ (`make screenshots`).

It runs the real thing end to end, on a throwaway database: the sandbox API and object store,
a Celery worker with beat, the portal's development server, and Debian's Chromium driven by
Playwright. The dashboard, the dialog with errors, an import in progress and a failed import;
a bulk import's preview and its batch page; then a snapshot's page, with what was made from it,
and each of its five action dialogs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
USERNAME, PASSWORD = "operator", "operator-demo-password"
VIEWPORT = {"width": 1360, "height": 820}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise SystemExit(f"screenshots: gave up waiting for {what}")


def answers(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


@contextmanager
def process(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> int:
    from playwright.sync_api import expect, sync_playwright

    work = Path(tempfile.mkdtemp(prefix="portal-shots-"))
    api_port, s3_port, web_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{work / 'portal.sqlite3'}",
        "CELERY_BROKER_URL": "",
        "PORTAL_VAR_DIR": str(work),
        "OSC_ENDPOINT_API": f"http://127.0.0.1:{api_port}/api/v1",
        "PORTAL_ALLOW_HTTP_URLS": "1",
        "PORTAL_URL_HOSTS": f"127.0.0.1:{s3_port}",
        "PORTAL_POLL_SECONDS": "1",
        "SANDBOX_IMPORT_MIN_SECONDS": "40",
    }
    python = sys.executable
    OUT.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)  # noqa: S603
    subprocess.run([python, "manage.py", "portal_demo"], cwd=ROOT, env=env, check=True)  # noqa: S603
    sandbox = [python, "-m", "sandbox", "--api-port", str(api_port), "--s3-port", str(s3_port)]
    worker = [
        python,
        "-m",
        "celery",
        "-A",
        "snapshots_portal",
        "worker",
        "--beat",
        "--pool",
        "solo",
        "--loglevel",
        "INFO",
        "--schedule",
        str(work / "beat"),
    ]
    web = [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{web_port}"]
    base = f"http://127.0.0.1:{web_port}"
    with (
        process(sandbox, env, work / "sandbox.log"),
        process(worker, env, work / "worker.log"),
        process(web, env, work / "web.log"),
    ):
        wait_for(lambda: answers(f"http://127.0.0.1:{api_port}/_sandbox/state"), 30, "the sandbox")
        wait_for(lambda: answers(f"{base}/healthz"), 30, "the portal")
        presign = [python, "-m", "sandbox", "presign", "--s3-url", f"http://127.0.0.1:{s3_port}"]

        def url(*extra: str) -> str:
            done = subprocess.run(  # noqa: S603
                presign + list(extra), cwd=ROOT, env=env, check=True, capture_output=True
            )
            return done.stdout.decode().strip().splitlines()[-1]

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT, color_scheme="light")
            page.goto(f"{base}/login/")
            page.fill("#id_username", USERNAME)
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")

            def import_snapshot(name: str, presigned: str, size: str, description: str) -> None:
                page.get_by_role("button", name="Import Snapshot").click()
                page.fill("#id_name", name)
                page.fill("#id_description", description)
                page.fill("#id_presigned_url", presigned)
                page.fill("#id_snapshot_size", size)
                page.get_by_role("button", name="Import", exact=True).click()
                expect(page.locator("#import-dialog")).not_to_be_visible()

            # A failed import: the object is not in the bucket, so the API ends it in error.
            missing = url("--key", "exports/legacy-db-disk.qcow2.gz")
            import_snapshot("legacy-db-disk", missing, "21474836480", "From the old data centre")
            failed = page.locator("tr", has_text="legacy-db-disk")
            expect(failed.locator(".badge")).to_have_text("Failed", timeout=60_000)
            # An import that runs a while.
            import_snapshot("web-frontend-2024", url(), "10737418240", "Nightly export, web tier")
            running = page.locator("tr", has_text="web-frontend-2024")
            expect(running.locator(".badge")).to_have_text("Importing", timeout=60_000)
            wait_for(
                lambda: int(running.locator("progress").get_attribute("value") or 0) >= 20,
                60,
                "progress",
            )
            page.screenshot(path=str(OUT / "dashboard.png"))
            running.screenshot  # noqa: B018 - keep the row in view for the next shot
            page.locator("section.table-card").screenshot(path=str(OUT / "import-in-progress.png"))

            page.get_by_role("button", name="Import Snapshot").click()
            page.fill("#id_presigned_url", "https://example.com/not-presigned")
            page.fill("#id_snapshot_size", "ten gigs")
            page.get_by_role("button", name="Import", exact=True).click()
            expect(page.locator(".field-error").first).to_be_visible()
            page.screenshot(path=str(OUT / "dialog-errors.png"))
            page.keyboard.press("Escape")

            failed.get_by_role("link").click()
            expect(page.get_by_text("The import failed.")).to_be_visible()
            page.screenshot(path=str(OUT / "failed-import.png"), full_page=True)

            def sandbox_admin(name: str, body: dict[str, Any]) -> None:
                import requests

                admin = f"http://127.0.0.1:{api_port}/_sandbox/{name}"
                requests.post(admin, json=body, timeout=5).raise_for_status()

            # A bulk import: its preview, then its page, with a row failed and the time left.
            sandbox_admin("speed", {"min_seconds": 240})
            page.goto(f"{base}/")
            page.get_by_role("link", name="Import many").click()
            page.get_by_label("Manifest").fill(
                "name,description,url,size,tags\n"
                f"estate-web-1,Web tier,{url()},10737418240,env=prod\n"
                f"estate-db-1,Database tier,{url()},21474836480,env=prod;tier=db\n"
                f"estate-archive,Archive of 2019,{url('--key', 'exports/archive-2019.qcow2.gz')},"
                "5368709120,\n"
                f"estate-old-tape,From the tape library,{url()},lots,\n"
            )
            page.get_by_role("button", name="Preview").click()
            expect(page.locator(".preview-row")).to_have_count(4)
            page.screenshot(path=str(OUT / "bulk-import-preview.png"), full_page=True)
            page.get_by_role("button", name=re.compile(r"^Import \d+ snapshots?$")).click()
            failed_rows = page.get_by_role("heading", name="Failed rows (1)")
            expect(failed_rows).to_be_visible(timeout=60_000)
            expect(page.locator(".batch-eta strong")).to_contain_text("left", timeout=120_000)
            page.screenshot(path=str(OUT / "batch-page.png"), full_page=True)

            # A snapshot's page and its five dialogs, on a snapshot imported at full speed.
            sandbox_admin("speed", {"min_seconds": 0})
            page.goto(f"{base}/")
            import_snapshot("db-server-2024", url(), "21474836480", "Database tier, before upgrade")
            imported = page.locator("tr", has_text="db-server-2024")
            expect(imported.locator(".badge")).to_have_text("Completed", timeout=60_000)
            imported.get_by_role("link", name=re.compile(r"^snap-")).click()
            made = page.locator("#made-list")
            expect(made).to_be_visible()

            def action(button: str, title: str) -> Any:
                page.get_by_role("button", name=button, exact=True).click()
                dialog = page.get_by_role("dialog", name=title)
                expect(dialog).to_be_visible()
                return dialog

            def send(dialog: Any, button: str) -> None:
                dialog.get_by_role("button", name=button, exact=True).click()
                expect(page.locator(".messages")).to_be_visible()

            dialog = action("Create volume", "CREATE VOLUME")
            dialog.get_by_label("Subregion").select_option(index=1)
            dialog.get_by_label("Volume type").select_option("gp2")
            dialog.get_by_label("Size").fill("40")
            page.screenshot(path=str(OUT / "dialog-create-volume.png"))
            send(dialog, "Create volume")
            expect(made.locator(".badge").first).to_have_text("Completed", timeout=60_000)

            # The OMI and the copy stay in progress for the picture of the page.
            sandbox_admin("lifecycle", {"seconds": 600})
            dialog = action("Create OMI", "CREATE OMI")
            dialog.get_by_label("OMI name").fill("db-server-2024 (Ubuntu 24.04)")
            dialog.get_by_label("Description").fill("Database server, before the upgrade")
            dialog.get_by_label("Boot mode").select_option("uefi")
            page.screenshot(path=str(OUT / "dialog-create-omi.png"))
            send(dialog, "Create OMI")

            dialog = action("Copy", "COPY SNAPSHOT")
            expect(dialog.get_by_label("Name", exact=True)).to_have_value("db-server-2024 (copy)")
            page.screenshot(path=str(OUT / "dialog-copy-snapshot.png"))
            send(dialog, "Copy")

            dialog = action("Update permissions", "UPDATE SNAPSHOT PERMISSIONS")
            dialog.get_by_label("Account IDs").fill("210987654321, 345678901234")
            page.screenshot(path=str(OUT / "dialog-update-permissions.png"))
            send(dialog, "Update permissions")

            dialog = action("Edit tags", "EDIT TAGS")
            dialog.get_by_label("Key 2", exact=True).fill("env")
            dialog.get_by_label("Value 2", exact=True).fill("production")
            dialog.get_by_label("Key 3", exact=True).fill("owner")
            dialog.get_by_label("Value 3", exact=True).fill("data-team")
            page.screenshot(path=str(OUT / "dialog-edit-tags.png"))
            send(dialog, "Save tags")
            expect(page.locator(".snapshot-tags")).to_contain_text("owner=data-team")
            expect(made.locator("tbody tr")).to_have_count(3)
            page.screenshot(path=str(OUT / "snapshot-page.png"), full_page=True)
            browser.close()
    shutil.rmtree(work, ignore_errors=True)
    for shot in sorted(OUT.glob("*.png")):
        print(f"{shot.relative_to(ROOT)}  {shot.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
