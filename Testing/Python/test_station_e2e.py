"""The browser reading station end to end: a live ``qsmrepro station`` driven by Debian's chromium.

Observer O1 opens the printed link, starts a reading, paints a lesion stroke and a CSF stroke with the
mouse in the axial view, paints a second lesion stroke and undoes it, and finishes. The study then holds
the reading, read back by the library's own ``.seg.nrrd`` reader (pynrrd, not MRML): its tags are the
session's and its voxels per segment are the counts the page showed. A finish without CSF and a start
inside the wash-out are refused on the page in plain words. Without the token no request (page, script,
websocket) gets anything of the study; O2's station offers O2's case list only, and the case O1 read
opens for O2 as a fresh, empty reading 1.

With ``QSMREPRO_STATION_SCREENSHOT=PATH`` the page of the reading in progress is saved there (the
README's picture, ``Resources/Screenshots/station_reading.png``).

Runs where the ``station`` extra, Playwright and chromium are installed (``make test`` runs it in
``.venv-station``); elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

import station_support as support

pytestmark = pytest.mark.skipif(
    bool(support.missing_station_packages() or support.missing_browser()),
    reason=str(support.missing_station_packages() or support.missing_browser()))

CASES = ("VA-001", "VA-002")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    return support.make_study(tmp_path_factory.mktemp("station"), cases=len(CASES))


@pytest.fixture(scope="module")
def station_o1(study_dir):
    with support.Station(study_dir, "O1") as station:
        yield station


@pytest.fixture(scope="module")
def chromium():
    with support.browser() as context:
        yield context


def _get(url: str, headers=None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def _open(chromium, station):
    page = chromium.new_page()
    page.goto(station.url)
    page.wait_for_selector("#case-list")
    return page


def test_every_request_without_the_token_is_refused_and_shows_nothing_of_the_study(station_o1, chromium):
    status, page = _get(station_o1.url)
    assert status == 200 and "<div id=\"app\"" in page
    scripts = re.findall(r'src="([^"]+\.js)"', page)
    assert scripts, "the page loads no script?"

    probes = ["/", "/index.html", "/index.html?token=wrong", "/ws", "/paraview/", "/" + scripts[0].lstrip("/"),
              "/study.sqlite", "/readings/"]
    for path in probes:
        status, body = _get(station_o1.base + path)
        assert status == 403, (path, status)
        assert not any(case in body for case in CASES), path
    # A wrong cookie is no token either, and a websocket upgrade without it is refused before it opens.
    status, _ = _get(station_o1.base + "/index.html", {"Cookie": f"qsmrepro_station_{station_o1.base.rsplit(':', 1)[1]}=x"})
    assert status == 403
    status, _ = _get(station_o1.base + "/ws", {"Connection": "Upgrade", "Upgrade": "websocket",
                                                "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZQ=="})
    assert status == 403

    # With the token, still no file of the study folder is served.
    for path in ("study.sqlite", "maps/VA-001.nii.gz", "readings/", "../study/study.sqlite"):
        status, body = _get(f"{station_o1.base}/{path}?token={station_o1.token}")
        assert status == 404 and "SQLite" not in body, path

    page = chromium.new_page()
    page.goto(station_o1.base + "/index.html")
    page.wait_for_timeout(1500)
    content = page.content()
    assert page.locator("#case-list").count() == 0
    assert "opens only with the link" in content and not any(case in content for case in CASES)
    page.close()


def test_a_reading_drawn_with_the_mouse_is_stored_with_its_tags_and_the_counts_the_page_showed(
        station_o1, chromium, study_dir):
    from QSMReproducibilityLib import segio, terminology
    from QSMReproducibilityLib.readings import Study

    page = _open(chromium, station_o1)
    assert page.inner_text("#case-VA-001").split()[:3] == ["VA-001", "hematoma", "0/2"]
    page.click("#start-VA-001")
    page.wait_for_selector("#finish")
    assert "Case VA-001 (hematoma), reading 1 of 2" in page.inner_text("#reading-title")
    assert [support.voxel_count(page, s) for s in ("lesion_right", "lesion_left", "csf")] == [0, 0, 0]

    support.choose(page, "#effect-paint")
    support.stroke(page, 0, (0.46, 0.5), (0.54, 0.5))
    lesion = support.wait_for_count_change(page, "lesion_right", 0)
    assert lesion > 0

    page.click("#finish")                      # no CSF yet: refused, in words, and the reading stays open
    page.wait_for_selector("#error-message")
    refusal = page.inner_text("#error-message")
    assert "CSF reference is empty" in refusal and "Traceback" not in refusal
    assert page.locator("#finish").is_visible()

    support.choose(page, "#segment-csf")
    background = support.view_luminance(page, 0, (0.52, 0.33)).min()
    support.stroke(page, 0, (0.5, 0.33), (0.56, 0.33))
    csf = support.wait_for_count_change(page, "csf", 0)
    assert csf > 0 and support.voxel_count(page, "lesion_right") == lesion   # overwrite none: the lesion stays
    # The CSF stroke is seen over the map, as in Slicer: its outline in the segment's colour and a fill
    # blended over the χ map (alpha * colour + (1 - alpha) * map, alpha = Slicer's 0.5), never over black.
    page.mouse.move(5, 5)
    blue = (0x55, 0xBC, 0xFF)   # the CSF segment's colour, (0.333, 0.737, 1.0) in its terminology
    darkest_expected = min(np.dot(blue, (0.299, 0.587, 0.114)),
                           0.5 * np.dot(blue, (0.299, 0.587, 0.114)) + 0.5 * background)
    deadline = time.monotonic() + 5
    while (seen := support.view_luminance(page, 0, (0.52, 0.33)).min()) < darkest_expected - 40 \
            and time.monotonic() < deadline:
        time.sleep(0.2)   # the frame may follow the count
    assert seen >= darkest_expected - 40, (seen, darkest_expected, background)

    support.choose(page, "#segment-lesion_right")
    support.stroke(page, 0, (0.5, 0.6), (0.5, 0.66))
    more = support.wait_for_count_change(page, "lesion_right", lesion)
    assert more > lesion
    page.click("#undo")
    assert support.wait_for_count_change(page, "lesion_right", more) == lesion
    shown = {s: support.voxel_count(page, s) for s in ("lesion_right", "lesion_left", "csf")}
    if os.environ.get("QSMREPRO_STATION_SCREENSHOT"):   # the README's picture of a reading in progress
        page.mouse.move(5, 5)
        time.sleep(1.0)
        page.screenshot(path=os.environ["QSMREPRO_STATION_SCREENSHOT"])

    page.click("#finish")
    page.wait_for_selector("#notice-message")
    assert "Reading 1 of case VA-001 is saved" in page.inner_text("#notice-message")
    page.wait_for_selector("#case-list")
    assert page.inner_text("#case-VA-001").split()[2] == "1/2"

    with Study.open(study_dir) as study:
        [record] = study.readings()
        assert (record.case_id, record.observer, record.reading, record.status) == ("VA-001", "O1", 1, "finished")
        session_uid = record.session_uid
        data = segio.read_seg_nrrd(record.segmentation_path)
    stored = {s.segment_id: int(np.count_nonzero(data.masks[s.segment_id])) for s in data.segments}
    assert stored == {"lesion_right": shown["lesion_right"], "csf": shown["csf"]}   # the empty left side left out
    for spec in data.segments:
        assert spec.tags[terminology.TAG_PREFIX + "Observer"] == "O1"
        assert spec.tags[terminology.TAG_PREFIX + "CaseID"] == "VA-001"
        assert spec.tags[terminology.TAG_PREFIX + "Reading"] == "1"
        assert spec.tags[terminology.TAG_PREFIX + "SessionUID"] == session_uid
        assert spec.tags[terminology.TAG_PREFIX + "Status"] == "finished"

    # The second reading of the case waits for the 60-day wash-out: the case list says so, and a start
    # is refused on the page.
    assert "wash-out until" in page.inner_text("#case-VA-001")
    page.click("#start-VA-001")
    page.wait_for_selector("#error-message")
    assert "wash-out" in page.inner_text("#error-message")
    assert page.locator("#finish").count() == 0
    page.close()


def test_a_second_observers_station_never_offers_the_first_observers_reading(station_o1, chromium, study_dir):
    from QSMReproducibilityLib.readings import Study

    with Study.open(study_dir) as study:
        if not study.readings():
            pytest.skip("needs the reading of the test before it")
        first = study.readings()[0]
    port = support.free_port()
    with support.Station(study_dir, "O2", host="127.0.0.1", port=port) as station_o2:
        assert station_o2.base == f"http://127.0.0.1:{port}" and station_o2.token != station_o1.token
        status, _ = _get(station_o2.base + "/index.html?token=" + station_o1.token)   # O1's link opens no other station
        assert status == 403
        page = _open(chromium, station_o2)
        rows = [page.inner_text(f"#case-{case}").split()[:4] for case in CASES]
        assert rows == [["VA-001", "hematoma", "0/2", "ready"], ["VA-002", "calcification", "0/2", "ready"]]
        assert first.session_uid not in page.content() and "O1" not in page.inner_text("body")
        page.click(f"#start-{first.case_id}")
        page.wait_for_selector("#finish")
        assert "reading 1 of 2" in page.inner_text("#reading-title")
        assert [support.voxel_count(page, s) for s in ("lesion_right", "lesion_left", "csf")] == [0, 0, 0]
        page.click("#close")
        page.click("#confirm-close")
        page.wait_for_selector("#notice-message")
        page.close()
    with Study.open(study_dir) as study:
        assert [s.case_id for s in study.open_sessions("O2")] == [first.case_id]   # closed, not finished
        assert len(study.readings()) == 1


def test_the_page_shows_study_processing_without_the_readings_counts(station_o1, chromium, study_dir):
    """While `qsmrepro study process` runs, the page shows its progress as the owner writes it; a reader
    does not learn how many readings exist."""
    import json

    from QSMReproducibilityLib.process import PROCESSING_DIR, PROGRESS_FILE

    progress = {"state": "running", "fraction": 0.4, "message": "", "eta_s": 125.0, "host": "cluster-head",
                "counts": {"reconstruct": 5, "reconstructed": 2, "features": 8, "features_done": 3, "failed": 0}}
    target = study_dir / PROCESSING_DIR / PROGRESS_FILE
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(progress), encoding="utf-8")
    try:
        page = _open(chromium, station_o1)
        page.wait_for_function("document.querySelector('#processing') && "
                               "document.querySelector('#processing').innerText.includes('40 %')", timeout=15000)
        text = page.inner_text("#processing")
        assert text == "Study processing: 40 % (2 of 5 reconstructions); about 2 min 05 s left"
        assert "readings" not in text and "cluster-head" not in page.content()
        page.close()
    finally:
        target.unlink()
