"""A real headless Chromium (the system's `chromium` + `chromedriver`; nothing downloaded at test time).

Without a Chromium the browser tests are skipped, unless FASTWAN_REQUIRE_BROWSER=1 (CI sets it), where they fail.
Screenshots go to test-artifacts/playground/ (FASTWAN_TEST_ARTIFACTS to move it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = ("chromedriver",)


def _find(names) -> str | None:
    for name in names:
        path = shutil.which(name) or (f"/usr/lib/chromium/{name}" if Path(f"/usr/lib/chromium/{name}").exists() else None)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def artifacts() -> Path:
    root = Path(os.environ.get("FASTWAN_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
    folder = root / "playground"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser(request):
    """A fresh headless Chromium per test (its own profile: no storage carried between tests)."""
    binary, driver_path = _find(CHROMIUM), _find(DRIVER)
    if not (binary and driver_path):
        message = "no chromium + chromedriver here (apt-get install chromium chromium-driver)"
        if os.environ.get("FASTWAN_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1100", "--autoplay-policy=no-user-gesture-required", "--mute-audio",
                "--no-first-run", "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
