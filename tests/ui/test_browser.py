"""`personaseg ui` as a person uses it: a real headless Chromium (Debian's `chromium`, driven by
Playwright) on the app serving the toy model. Learn the toy photos, find the concept in a toy scene,
compare the mask with `personaseg find`'s, drive the same endpoints with gradio_client, and check
that bad input gets a message in the page while the server goes on answering.

Needs `pip install -e '.[ui,ui-test]'` and `apt-get install chromium` (.ci/run does both); never
downloads a browser. Screenshots go to the test's tmp folder (printed), or $PERSONASEG_UI_SHOTS.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# without the background-networking flags chromium keeps calling out (refused here, and not ours to make)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STEPS, DRAWS, SEED = 10, 2, 3

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "personaseg", *args], capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Toy photos of one object, a scene with it beside a look-alike, a fresh store, a scratch TMPDIR."""
    from personaseg.toyworld import make_bench

    root = tmp_path_factory.mktemp("ui")
    bench = make_bench(root / "bench", seed=0, concepts=1, scenes=2)
    name = bench.concepts[0]
    class_word = (bench.root / "concepts" / name / "concept.toml").read_text().split('"')[1]
    photos = sorted((bench.root / "concepts" / name / "photos").iterdir())
    scene = sorted((bench.root / "test" / "images").iterdir())[-1]
    shots = Path(os.environ.get("PERSONASEG_UI_SHOTS") or root / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {shots}")
    (root / "tmp").mkdir()
    return dict(root=root, name=name, token=f"<{name}>", class_word=class_word, photos=photos, scene=scene,
                store=root / "concepts", tmp=root / "tmp", shots=shots)


@pytest.fixture(scope="module")
def server(world):
    """`personaseg ui --model toy` on a free port, stopped (SIGTERM) at the end."""
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(world["tmp"]), "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(world["root"] / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "personaseg", "ui", "--model", "toy", "--port", str(port),
                             "--concepts-dir", str(world["store"])], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, (world["root"] / "server.log").read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        pytest.fail("the app did not start in 180 s")
    yield dict(url=url, proc=proc, log=world["root"] / "server.log")
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser(server):
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _open(browser, server):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.set_default_timeout(60_000)
    pg.goto(server["url"])
    return pg


@pytest.fixture(scope="module")
def page(browser, server):
    return _open(browser, server)


def _answers(server) -> list[dict]:
    """The server still serves and runs an event through its queue; returns the store's concepts."""
    from gradio_client import Client

    assert server["proc"].poll() is None, server["log"].read_text()
    return Client(server["url"], verbose=False).predict(api_name="/concepts")


def _listed(page, component: str, name: str) -> None:
    """Wait until the file component lists the upload ``name``."""
    page.locator(f"{component} td.filename[aria-label='{name}']").wait_for()


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _error_shown(page, text: str, shot: Path | None = None) -> None:
    """An error toast saying ``text`` appears in the page (screenshot to ``shot``); then it is closed."""
    toast = page.locator("[data-testid=toast-body]").filter(has_text=text)
    toast.wait_for(state="visible")
    if shot is not None:
        page.wait_for_timeout(800)  # the toast slides in
        page.screenshot(path=str(shot))
    toast.locator("[data-testid=toast-close]").click()
    toast.wait_for(state="detached")


def _shown_image(page, selector: str, shot: Path) -> np.ndarray:
    """The image the page shows in ``selector`` (a screenshot of the page to ``shot`` first), as the
    browser fetched it."""
    image = page.locator(selector)
    image.wait_for()
    page.screenshot(path=str(shot), full_page=True)
    shown = page.request.get(image.get_attribute("src"))
    assert shown.ok
    return np.asarray(Image.open(io.BytesIO(shown.body())))


def _cli_mask(world, out: Path) -> np.ndarray:
    r = _cli("find", world["token"], str(world["scene"]), "--model", "toy", "--concepts-dir", str(world["store"]),
             "--draws", str(DRAWS), "--seed", str(SEED), "--out", str(out))
    assert r.returncode == 0, r.stderr
    return np.asarray(Image.open(out / f"{world['scene'].stem}.mask.png"))


def _store_digest(store: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(store.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(store)).encode() + p.read_bytes())
    return h.hexdigest()


def test_learn_then_find_in_the_browser_matches_the_cli(world, server, page):
    shots = world["shots"]
    _tab(page, "Learn")
    page.locator("#learn-photos input[type=file]").set_input_files([str(p) for p in world["photos"]])
    for p in world["photos"]:
        _listed(page, "#learn-photos", p.name)
    page.locator("#learn-token input, #learn-token textarea").first.fill(world["token"])
    page.locator("#learn-class input, #learn-class textarea").first.fill(world["class_word"])
    page.locator("#learn-steps input").fill(str(STEPS))
    page.locator("#learn-button").click()
    page.locator("#learn-status").get_by_text(f"learning {world['token']}: step").first.wait_for()  # live progress
    page.locator("#learn-status").get_by_text(f"learned {world['token']}").wait_for(timeout=300_000)
    page.screenshot(path=str(shots / "learned.png"))
    assert (world["store"] / world["name"] / "concept.json").exists()

    _tab(page, "Find")
    page.locator("#find-image input[type=file]").set_input_files(str(world["scene"]))
    page.locator("#find-phrase input, #find-phrase textarea").first.fill(world["token"])
    page.get_by_text("Settings").click()
    page.locator("#find-draws input").fill(str(DRAWS))
    page.locator("#find-seed input").fill(str(SEED))
    page.locator("#find-button").click()
    page.locator("#find-status").get_by_text(f"{world['token']} found").wait_for()
    in_page = _shown_image(page, "#find-mask img", shots / "found.png")
    cli = _cli_mask(world, world["root"] / "cli-find")
    assert in_page.shape == cli.shape and cli.any()
    assert np.array_equal(in_page, cli)  # the page's mask is find's, pixel for pixel
    assert page.locator("#find-overlay img").is_visible() and page.locator("#find-heatmap img").is_visible()
    _answers(server)


def test_a_click_on_a_photo_guides_the_learn_and_its_mask_is_shown(world, server, browser):
    """Pick a photo, click on the object (its pixel, as the photo is displayed), learn: the mask the
    model drew from the click appears, the one learn saved in the concept; a click outside the photo
    is learn's one line in the page and the server goes on."""
    token, shots = "<clicked>", world["shots"]
    truth = np.asarray(Image.open(world["photos"][0].parent.parent / "masks" / world["photos"][0].name)) > 0
    ys, xs = np.nonzero(truth)
    k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)  # the object pixel nearest its centre
    x, y = int(xs[k]), int(ys[k])
    page = _open(browser, server)
    _tab(page, "Learn")
    page.locator("#learn-photos input[type=file]").set_input_files([str(p) for p in world["photos"]])
    for p in world["photos"]:
        _listed(page, "#learn-photos", p.name)
    page.locator("#learn-token input, #learn-token textarea").first.fill(token)
    page.locator("#learn-class input, #learn-class textarea").first.fill(world["class_word"])
    page.locator("#learn-steps input").fill(str(STEPS))
    page.locator("#learn-guide-photo input").click()
    page.get_by_role("option", name=world["photos"][0].name).click()
    img = page.locator("#learn-guide-image img")
    img.wait_for()
    point = page.locator("#learn-guide-point input, #learn-guide-point textarea").first
    # a point outside the photo (typed): learn's one line, nothing learned
    point.fill("500,5")
    page.locator("#learn-button").click()
    _error_shown(page, "is outside its photo", shots / "click-outside.png")
    _answers(server)
    assert not (world["store"] / "clicked").exists()
    # a click on the object, where it is displayed
    page.wait_for_function("() => document.querySelector('#learn-guide-image img').naturalWidth > 0")
    box = img.bounding_box()
    nw, nh = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    r = min(box["width"] / nw, box["height"] / nh, 1)  # CSS pixels per photo pixel: drawn centred, never enlarged
    left, top = (box["width"] - nw * r) / 2, (box["height"] - nh * r) / 2

    def click(px, py):
        img.click(position={"x": left + (px + 0.25) * r, "y": top + (py + 0.25) * r})

    field = ["#learn-guide-point input, #learn-guide-point textarea"]
    page.locator("#learn-guide-kind").get_by_text("box", exact=True).click()  # a box: two clicks are its corners
    click(40, 30)
    page.wait_for_function("([sel, v]) => document.querySelector(sel).value === v", arg=[*field, "40,30"])
    click(10, 50)
    page.wait_for_function("([sel, v]) => document.querySelector(sel).value === v", arg=[*field, "10,30,40,50"])
    page.locator("#learn-guide-kind").get_by_text("click", exact=True).click()  # back to a click: the box is dropped
    page.wait_for_function("([sel]) => document.querySelector(sel).value === ''", arg=field)
    click(x, y)
    page.wait_for_function("([sel, v]) => document.querySelector(sel).value === v",
                           arg=["#learn-guide-point input, #learn-guide-point textarea", f"{x},{y}"])
    page.locator("#learn-button").click()
    page.locator("#learn-status").get_by_text(f"learned {token}").wait_for(timeout=300_000)
    in_page = _shown_image(page, "#learn-derived-mask img", shots / "learned-from-a-click.png")
    saved = np.asarray(Image.open(world["store"] / "clicked" / "masks" / world["photos"][0].name))
    assert np.array_equal(in_page, saved) and saved[y, x] == 255  # learn's derived mask, holding the click
    assert ((saved > 0) & truth).sum() > 0.5 * (saved > 0).sum()  # and it is the object
    _answers(server)
    page.close()


def test_a_clip_is_tracked_in_the_find_tab(world, server, browser):
    """With PyAV: drop a clip, track a word through it; the outlined clip plays and the JSON lines
    are track's, one per frame; a file that is no video is one line in the page."""
    pytest.importorskip("av")
    from personaseg.video import write_video

    clip = world["root"] / "scenes.mp4"
    scenes = sorted((world["scene"].parent).iterdir())
    write_video(clip, [Image.open(p).convert("RGB") for p in scenes * 2], fps=4)
    page = _open(browser, server)
    page.locator("#find-phrase input, #find-phrase textarea").first.fill(world["class_word"])
    page.get_by_text("Settings").click()
    page.locator("#find-draws input").fill(str(DRAWS))
    page.locator("#find-seed input").fill(str(SEED))
    not_video = world["root"] / "notes.mp4"
    not_video.write_text("this is not a video")
    page.locator("#track-clip input[type=file]").set_input_files(str(not_video))
    _listed(page, "#track-clip", not_video.name)
    page.locator("#track-button").click()
    _error_shown(page, "notes.mp4")
    _answers(server)
    page.locator("#track-clip button[aria-label='Clear']").click()
    page.locator("#track-clip input[type=file]").set_input_files(str(clip))
    _listed(page, "#track-clip", clip.name)
    page.locator("#track-button").click()
    page.locator("#find-status").get_by_text(f"{world['class_word']} tracked").wait_for(timeout=300_000)
    page.locator("#track-video video").wait_for()
    page.screenshot(path=str(world["shots"] / "tracked.png"), full_page=True)
    link = page.locator("#track-records a").first
    link.wait_for()
    lines = page.request.get(link.get_attribute("href")).text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(2 * len(scenes)))
    _answers(server)
    page.close()


def test_the_named_endpoints_drive_it_from_a_script(world, server):
    from gradio_client import Client, handle_file

    client = Client(server["url"], verbose=False)
    mask, overlay, record, heat, status = client.predict(
        handle_file(str(world["scene"])), world["token"], DRAWS, SEED, api_name="/find")
    import json

    rec = json.loads(Path(record).read_text())
    assert rec["phrase"] == world["token"] and rec["found"] and rec["rle"]["size"] == list(reversed(rec["size"]))
    from personaseg.masks import rle_decode

    cli = _cli_mask(world, world["root"] / "cli-api") > 0
    assert np.array_equal(np.asarray(Image.open(mask)) > 0, cli) and np.array_equal(rle_decode(rec["rle"]), cli)
    assert Image.open(overlay).size == Image.open(world["scene"]).size and "found" in status
    with pytest.raises(Exception, match="already exists"):  # /learn refuses to replace silently
        client.predict([handle_file(str(p)) for p in world["photos"]], world["token"], world["class_word"], "ti",
                       1, False, api_name="/learn")
    with pytest.raises(Exception, match=r"click 00.png=999,0 is outside its photo \(64x64\)"):  # checked first
        client.predict([handle_file(str(p)) for p in world["photos"]], "<viaapi>", world["class_word"], "ti",
                       1, False, world["photos"][0].name, "click", "999,0", api_name="/learn")


def test_bad_input_gets_a_message_and_the_server_goes_on(world, server, page):
    before = _store_digest(world["store"])
    not_image = world["root"] / "notes.png"
    not_image.write_text("this is not a picture")

    _tab(page, "Learn")
    # an empty photo set
    page.locator("#learn-photos button[aria-label='Clear']").click()
    page.locator("#learn-token input, #learn-token textarea").first.fill("<other>")
    page.locator("#learn-button").click()
    _error_shown(page, "no photos")
    _answers(server)
    # a file that is no image
    page.locator("#learn-photos input[type=file]").set_input_files(str(not_image))
    _listed(page, "#learn-photos", not_image.name)
    page.locator("#learn-button").click()
    _error_shown(page, "none of the 1 files in notes.png is a readable image", world["shots"] / "bad-photo.png")
    _answers(server)
    # a name that exists: offered to replace, never replaced silently
    page.locator("#learn-photos button[aria-label='Clear']").click()
    page.locator("#learn-photos input[type=file]").set_input_files([str(p) for p in world["photos"]])
    page.locator("#learn-token input, #learn-token textarea").first.fill(world["token"])
    page.locator("#learn-button").click()
    _error_shown(page, "tick 'Replace'", world["shots"] / "exists.png")
    _answers(server)
    assert page.get_by_label("Replace", exact=False).first.is_visible()

    _tab(page, "Find")
    # a phrase of 500 words
    page.locator("#find-phrase input, #find-phrase textarea").first.fill(" ".join(["mug"] * 500))
    page.locator("#find-button").click()
    _error_shown(page, "the text encoder takes")
    _answers(server)
    # an upload that is no image
    page.locator("#find-image input[type=file]").set_input_files(str(not_image))
    page.locator("#find-phrase input, #find-phrase textarea").first.fill("triangle")
    page.locator("#find-button").click()
    _error_shown(page, f"{not_image.name} is not an image", world["shots"] / "bad-find.png")
    _answers(server)
    # an upload over the size limit is refused before it reaches the app
    from gradio_client import Client, handle_file

    big = world["root"] / "big.png"
    big.write_bytes(b"\0" * (26 * 1024 * 1024))
    with pytest.raises(Exception, match="(?i)too large|exceeds|maximum"):
        Client(server["url"], verbose=False).predict(handle_file(str(big)), "mug", api_name="/find")
    big.unlink()
    _answers(server)
    assert _store_digest(world["store"]) == before  # nothing lost or changed in the store


def _learn_status(page) -> str:
    return page.locator("#learn-status").inner_text()


def _step_shown(page, token: str, after: int = 0) -> int:
    """Wait for the live progress of ``token`` past step ``after``; returns the step shown."""
    status = page.locator("#learn-status").get_by_text(f"learning {token}: step")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if status.count():
            step = int(status.first.inner_text().split("step ")[1].split("/")[0])
            if step > after:
                return step
        page.wait_for_timeout(200)
    pytest.fail(f"no progress past step {after}: {_learn_status(page)!r}")


def test_a_learn_can_be_stopped_resumed_and_outlives_a_closed_tab(world, server, browser, page):
    token, ckpt = "<again>", world["store"] / ".runs" / "again" / "checkpoint.safetensors"
    _tab(page, "Learn")
    page.locator("#learn-photos button[aria-label='Clear']").click()
    page.locator("#learn-photos input[type=file]").set_input_files([str(p) for p in world["photos"]])
    page.locator("#learn-token input, #learn-token textarea").first.fill(token)
    page.locator("#learn-steps input").fill("5000")
    page.locator("#learn-button").click()
    _step_shown(page, token)
    page.locator("#learn-stop").click()
    page.locator("#learn-status").get_by_text("stopped: interrupted at step").wait_for()
    first = int(_learn_status(page).split("interrupted at step ")[1].split("/")[0])
    assert ckpt.exists() and not (world["store"] / "again").exists()

    page.locator("#learn-resume").click()  # continues from the checkpoint, with its settings
    _step_shown(page, token, after=first)
    page.locator("#learn-stop").click()
    page.locator("#learn-status").get_by_text("stopped: interrupted at step").wait_for()
    second = int(_learn_status(page).split("interrupted at step ")[1].split("/")[0])
    assert second > first

    # closing the tab during a learn: the server goes on, the run stops with a checkpoint, nothing half-written
    other = _open(browser, server)
    _tab(other, "Learn")
    other.locator("#learn-photos input[type=file]").set_input_files([str(p) for p in world["photos"]])
    other.locator("#learn-token input, #learn-token textarea").first.fill(token)
    other.locator("#learn-resume").click()
    _step_shown(other, token, after=second)
    other.close()
    assert token not in [c["token"] for c in _answers(server)]
    from personaseg.concepts.checkpoint import load_checkpoint

    deadline = time.monotonic() + 60
    while load_checkpoint(ckpt)["step"] <= second and time.monotonic() < deadline:
        time.sleep(0.5)
    assert load_checkpoint(ckpt)["step"] > second  # stopped after the tab closed, progress kept
    assert not (world["store"] / "again").exists()
    _answers(server)


def test_concepts_are_shown_exported_and_deleted_only_when_confirmed(world, server, page):
    token, folder = world["token"], world["store"] / world["name"]
    page.reload()  # the lists are filled when the page loads
    _tab(page, "Concepts")
    page.locator("#concepts-table").get_by_text(token).filter(visible=True).first.wait_for()
    page.locator("#concepts-pick input").click()
    page.get_by_role("option", name=token).click()
    page.get_by_text(f"{token} in").first.wait_for()  # its settings, photos and presence reference
    page.locator("#concepts-export").click()
    _listed(page, "#concepts-exported", f"{world['name']}.safetensors")  # a TI embedding to download

    page.locator("#concepts-delete").click()
    page.get_by_text(f"Delete {token} from the store?").wait_for()
    page.locator("#concepts-delete-no").click()
    page.locator("#concepts-delete-yes").wait_for(state="hidden")
    assert folder.exists() and token in [c["token"] for c in _answers(server)]
    page.locator("#concepts-delete").click()
    page.screenshot(path=str(world["shots"] / "delete.png"))
    page.locator("#concepts-delete-yes").click()
    page.locator("#concepts-delete-yes").wait_for(state="hidden")
    deadline = time.monotonic() + 30
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not folder.exists() and token not in [c["token"] for c in _answers(server)]


def test_stopping_removes_the_temporary_folder(world, server):
    assert any(world["tmp"].glob("personaseg-ui-*"))
    server["proc"].send_signal(signal.SIGTERM)
    server["proc"].wait(timeout=30)
    assert not any(world["tmp"].glob("personaseg-ui-*"))
