"""Browser tests: the built web UI in Debian's Chromium (Playwright drives /usr/bin/chromium, nothing
is downloaded), against the whole local platform started once per session on free ports.

Screenshots of every page go to `.runtune/screenshots/` (ignored by git), one folder per test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtune.settings import DEFAULT_LOCAL_DIR, REPO_ROOT
from tests.support import StartedPlatform, sign_up, started_platform

CHROMIUM = os.environ.get("RUNTUNE_CHROMIUM", "/usr/bin/chromium")
DIST = REPO_ROOT / "frontend" / "dist"
SCREENSHOTS = DEFAULT_LOCAL_DIR / "screenshots"
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


# Package scope: built and started for the browser tests, stopped after the last of them.
@pytest.fixture(scope="package")
def built_ui() -> Path:
    """The production build the gateway serves; `make` rebuilds it only when a source changed."""
    subprocess.run(["make", "-s", "frontend/dist/.built"], cwd=REPO_ROOT, check=True)
    assert (DIST / "index.html").is_file()
    return DIST


@pytest.fixture(scope="package")
def ui_platform(built_ui: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartedPlatform]:
    local_dir = tmp_path_factory.mktemp("ui-platform")
    with started_platform(
        local_dir,
        "demo-runtune-ui",
        gateway_env={"RUNTUNE_FRONTEND_DIR": str(built_ui)},
        service_env={
            # Jobs whose metadata names a script run the scripted trainer; the others the real one.
            "RUNTUNE_TRAINER_COMMAND": json.dumps([sys.executable, "-m", "tests.e2e.scripted_trainer"]),
            "RUNTUNE_HEARTBEAT_STALE_S": "30",
            "RUNTUNE_RECONCILE_EVERY_S": "2",
        },
    ) as (_, started):
        yield started


# Package scope: torn down after the last browser test. Playwright's sync API keeps an event loop
# running on the main thread while it is open, which would break later tests that call asyncio.run().
@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"Chromium is not at {CHROMIUM} (apt-get install chromium)"
    with sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox cannot start.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    """This test's screenshot folder, emptied first."""
    folder = SCREENSHOTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@contextlib.contextmanager
def signed_in(
    browser, url: str, email: str, password: str, *, failure_shot: Path | None = None, timeout_ms: int = 20_000
) -> Iterator[Any]:
    """A new laptop-sized page signed in as `email`, closed after; a failure inside is screenshotted
    to `failure_shot` when given."""
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    try:
        sign_in(page, url, email, password)
        yield page
    except Exception:
        if failure_shot is not None:
            page.screenshot(path=failure_shot, full_page=True)
        raise
    finally:
        context.close()


@dataclass
class Account:
    """A user signed up on the UI platform, with an API client on their ID token, and the platform's
    Firestore and Cloud Storage (emulators), where tests write what only a trainer or an execution would."""

    uid: str
    email: str
    api: httpx.Client
    store: Any
    blobs: Any


@contextlib.contextmanager
def signed_up(ui_platform: StartedPlatform, password: str) -> Iterator[Account]:
    """A new account (its API client closed after)."""
    from runtune.adapters.firestore import FirestoreMetadataStore
    from runtune.adapters.gcs import GcsBlobStore

    user = sign_up(ui_platform.auth_host, password=password)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ui_platform.emulator_env.items():
            patch.setenv(name, value)
        store = FirestoreMetadataStore.for_project(ui_platform.project_id)
        blobs = GcsBlobStore.for_bucket(ui_platform.project_id, ui_platform.emulator_env["RUNTUNE_BUCKET"])
    headers = {"authorization": f"Bearer {user['id_token']}"}
    with httpx.Client(base_url=ui_platform.url, headers=headers, timeout=30) as api:
        yield Account(user["uid"], user["email"], api, store, blobs)


def sign_in(page, url: str, email: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").last.click()
    page.get_by_test_id("account-email").wait_for()
