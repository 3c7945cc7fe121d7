"""The playground page in a real headless Chromium against the real service (tiny model, S3 storage).

What a person does: type a prompt, submit, watch the progress move, play the MP4 in the page, find it in the
gallery, delete it; upload an image for image-to-video; get the API's own words for a bad size; use a key.
"""

from __future__ import annotations

import json

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import BUCKET
from tests.support.images import png_bytes

WATCH_PROGRESS = """
window.__progress = [];
new MutationObserver(() => window.__progress.push(Number(document.getElementById('progress').value)))
  .observe(document.getElementById('progress'), {attributes: true, attributeFilter: ['value']});
"""
VIDEO_READY = """
const v = document.getElementById('player');
return {ready: v.readyState, duration: v.duration, width: v.videoWidth, height: v.videoHeight, src: v.currentSrc,
        error: v.error && v.error.message};
"""


def by_id(driver, element_id):
    return driver.find_element(By.ID, element_id)


def open_page(driver, base: str, path: str = "/"):
    driver.get(base + path)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    driver.execute_script(WATCH_PROGRESS)


def finish(driver, timeout_s: float = 180) -> str:
    """Wait for the followed job to end; its status."""
    WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(
        lambda d: by_id(d, "status-text").get_attribute("data-status") in ("completed", "failed"))
    return by_id(driver, "status-text").get_attribute("data-status")


def playing_video(driver) -> dict:
    WebDriverWait(driver, 60).until(lambda d: d.execute_script(VIDEO_READY)["ready"] >= 2
                                    or d.execute_script(VIDEO_READY)["error"])
    state = driver.execute_script(VIDEO_READY)
    assert state["ready"] >= 2 and state["duration"] > 0, state
    return state


def shown_metrics(driver) -> dict:
    rows = by_id(driver, "metrics").find_elements(By.CSS_SELECTOR, "tbody tr")
    return {r.find_element(By.TAG_NAME, "th").text.strip(): r.find_element(By.TAG_NAME, "td").text for r in rows}


def gallery_item(driver, job_id: str, status: str | None = None, timeout_s: float = 30):
    selector = f'#gallery li[data-id="{job_id}"]' + (f'[data-status="{status}"]' if status else "")
    WebDriverWait(driver, timeout_s).until(lambda d: d.find_elements(By.CSS_SELECTOR, selector))
    return driver.find_element(By.CSS_SELECTOR, selector)


def stored_record(s3, job_id: str) -> dict:
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    (key,) = [k for k in keys if k.endswith(f"jobs/{job_id}.json")]
    return json.loads(s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_prompt_progress_play_gallery_delete(serve_cluster, browser, artifacts):
    base = serve_cluster.base_url
    open_page(browser, base)
    assert "FastWan Serve" in browser.title
    by_id(browser, "prompt").send_keys("a red fox runs through fresh snow")
    browser.find_element(By.CSS_SELECTOR, "details summary").click()
    by_id(browser, "steps").send_keys("100")  # slow enough on the CPU to see it move
    by_id(browser, "frames").send_keys("33")
    Select(by_id(browser, "size")).select_by_value("custom")
    by_id(browser, "custom-size").send_keys("128x128")
    by_id(browser, "seed-random").click()
    by_id(browser, "seed").send_keys("1234")
    by_id(browser, "submit").click()
    assert finish(browser) == "completed", by_id(browser, "status-text").text
    seen = browser.execute_script("return window.__progress")
    assert seen[-1] == 100 and any(0 < p < 100 for p in seen), seen  # it moved, and ended full

    state = playing_video(browser)
    assert (state["width"], state["height"]) == (128, 128)
    metrics = shown_metrics(browser)
    job_id = metrics["Video"]
    job = httpx.get(f"{base}/v1/videos/{job_id}", timeout=30).json()
    assert job["status"] == "completed" and job["seed"] == 1234 and metrics["Seed"] == "1234"
    assert abs(state["duration"] - 33 / job["fps"]) < 0.1, (state, job["fps"])  # the whole MP4, all 33 frames
    assert metrics["Size"] == job["size"] and metrics["Frames"].startswith("33 at")
    assert metrics["Total"].endswith(" s") and "Generation" in metrics
    link = by_id(browser, "download")
    assert link.is_displayed() and link.get_attribute("download") == f"{job_id}.mp4"
    assert link.get_attribute("href").endswith(f"v1/videos/{job_id}/content")  # relative: works behind a gateway

    item = gallery_item(browser, job_id, "completed")
    assert "a red fox runs through fresh snow" in item.text
    browser.set_window_size(1280, 1700)  # the whole page in one picture (docs/playground.md shows it)
    browser.save_screenshot(str(artifacts / "text-to-video.png"))

    delete = item.find_element(By.CSS_SELECTOR, 'button[data-action="delete"]')
    delete.click()
    assert delete.text == "Really delete?"  # one click alone deletes nothing
    assert httpx.get(f"{base}/v1/videos/{job_id}", timeout=30).status_code == 200
    delete.click()
    WebDriverWait(browser, 30).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, f'#gallery li[data-id="{job_id}"]'))
    assert httpx.get(f"{base}/v1/videos/{job_id}", timeout=30).status_code == 404
    assert by_id(browser, "player").get_attribute("hidden") is not None  # the deleted video left the player


def test_image_to_video_with_a_file(serve_cluster, browser, artifacts, tmp_path):
    base = serve_cluster.base_url
    image = tmp_path / "first-frame.png"
    image.write_bytes(png_bytes(160, 96, color=(20, 160, 220)))
    open_page(browser, base, "/playground")
    by_id(browser, "image-file").send_keys(str(image))
    WebDriverWait(browser, 10).until(lambda d: by_id(d, "image-preview").is_displayed())
    assert by_id(browser, "drop-text").text == "first-frame.png"
    by_id(browser, "prompt").send_keys("the scene comes to life")
    by_id(browser, "submit").click()
    assert finish(browser) == "completed", by_id(browser, "status-text").text
    playing_video(browser)
    job_id = shown_metrics(browser)["Video"]
    record = stored_record(serve_cluster.s3, job_id)
    assert record["input_key"], record  # the upload reached the service as the job's reference image
    browser.save_screenshot(str(artifacts / "image-to-video.png"))


def test_a_bad_size_shows_the_apis_own_words(serve_cluster, browser):
    base = serve_cluster.base_url
    expected = httpx.post(f"{base}/v1/videos", json={"prompt": "x", "size": "1281x703"}, timeout=30)
    assert expected.status_code == 400
    open_page(browser, base)
    before = httpx.get(f"{base}/v1/videos?limit=100", timeout=30).json()["data"]
    by_id(browser, "prompt").send_keys("x")
    Select(by_id(browser, "size")).select_by_value("custom")
    by_id(browser, "custom-size").send_keys("1281x703")
    by_id(browser, "submit").click()
    WebDriverWait(browser, 30).until(lambda d: by_id(d, "error").is_displayed())
    assert by_id(browser, "error").text == expected.json()["error"]["message"]
    assert by_id(browser, "error").get_attribute("role") == "alert"
    assert httpx.get(f"{base}/v1/videos?limit=100", timeout=30).json()["data"] == before  # nothing was created


def test_every_control_has_a_label_and_a_phone_sized_screen_fits(serve_cluster, browser, artifacts):
    open_page(browser, serve_cluster.base_url)
    assert not by_id(browser, "custom-size").is_displayed() and not by_id(browser, "api-key").is_displayed()
    unlabelled = browser.execute_script("""
      return [...document.querySelectorAll('input, select, textarea')].filter(e =>
        !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id || e.outerHTML);""")
    assert unlabelled == []
    browser.set_window_size(390, 844)  # a phone
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
    browser.save_screenshot(str(artifacts / "phone.png"))


@pytest.fixture
def keyed_service(tmp_path):
    """The HTTP app with API keys on, served by uvicorn (a stand-in generator: this is about the page's auth)."""
    from serve_app.api.app import create_api
    from tests.support.app import job_core
    from tests.support.asgi_server import ThreadedServer
    from tests.support.fakes import FakeGenerator

    core = job_core(tmp_path, FakeGenerator(delay_s=0.5), api_keys=["k-browser-123"], default_width=64,
                    default_height=64, default_num_frames=9)
    with ThreadedServer(create_api(core.service, core.settings, lifecycle=[core])) as server:
        yield server.url


def test_with_api_keys_the_page_asks_for_one_and_keeps_it_in_the_tab_only(keyed_service, browser, artifacts):
    open_page(browser, keyed_service)
    key_field = by_id(browser, "api-key")
    WebDriverWait(browser, 10).until(lambda d: key_field.is_displayed())  # the gallery call got a 401
    key_field.send_keys("k-browser-123", Keys.TAB)
    WebDriverWait(browser, 10).until(lambda d: by_id(d, "gallery-empty").is_displayed())
    by_id(browser, "prompt").send_keys("with a key")
    by_id(browser, "submit").click()
    assert finish(browser, 60) == "completed", by_id(browser, "status-text").text
    state = playing_video(browser)
    assert state["src"].startswith("blob:")  # fetched with the key, then played from memory
    stored = browser.execute_script("return [Object.keys(sessionStorage), localStorage.length, document.cookie]")
    assert stored == [["fastwan.apiKey"], 0, ""]
    browser.refresh()  # same tab: the key is still there, and the gallery loads with it
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gallery li"))
    assert by_id(browser, "api-key").get_attribute("value") == "k-browser-123"
    browser.save_screenshot(str(artifacts / "with-key.png"))
