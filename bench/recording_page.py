"""
What recording costs the voice page: Chromium's CPU while a live session is recorded (the
microphone and the assistant mixed with Web Audio, MediaRecorder, chunks stored in IndexedDB and
uploaded) against the same session not recorded — same browser, same stand-in, same run.

    .venv/bin/python bench/recording_page.py [--rounds 4] [--seconds 20]

Starts the Realtime stand-in (in this process), daphne with the app on a throw-away SQLite
database and headless Chromium (/usr/bin/chromium, fake microphone), as bench/page_start.py does.
Each round runs one session with "Record audio" off and one with it on, in turns, so the
machine's noise hits both alike. In each session the page goes live, a typed message every 4 s
makes the assistant speak (the stand-in's audio track), and after 3 s of warm-up the CPU time of
every Chromium process (browser, renderer, GPU and utility processes: psutil) is read at the
start and the end of a fixed window. CPU % is CPU seconds per wall second (100 % = one core).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from page_start import CHROMIUM, CHROMIUM_ARGS, PASSWORD, start_app
from playwright.sync_api import sync_playwright

from tests.realtime_standin import RealtimeStandIn

WARM_UP_S = 3.0
TYPE_EVERY_S = 4.0


def chromium_cpu_seconds() -> float:
    """User + system CPU time of every Chromium process under this one (those alive now)."""
    total = 0.0
    for process in psutil.Process().children(recursive=True):
        try:
            if "chrom" in process.name().lower():
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def session(page, record: bool, seconds: float) -> tuple[float, int]:
    """One live session; (Chromium CPU % over the window, bytes per minute of the audio uploaded)."""
    switch = page.get_by_role("switch", name="Record audio")
    if switch.is_checked() != record:
        with page.expect_response("**/api/preferences/record-audio"):
            switch.set_checked(record)
    held = {}  # what the server holds of this recording, from its latest 201

    def listener(response):
        if response.request.method == "PUT" and response.status == 201:
            held.update(response.json()["recording"])

    page.on("response", listener)
    page.get_by_role("button", name="Start").click()
    page.locator("#voice[data-phase='live']").wait_for()
    if record:
        page.locator("#recording-indicator").wait_for()
    page.wait_for_timeout(WARM_UP_S * 1000)
    cpu0, wall0 = chromium_cpu_seconds(), time.monotonic()
    n = 0
    while time.monotonic() - wall0 < seconds:
        page.get_by_label("Type a message to the assistant").fill(f"Message {n}, please answer.")
        page.keyboard.press("Enter")
        n += 1
        page.wait_for_timeout(min(TYPE_EVERY_S, seconds - (time.monotonic() - wall0)) * 1000)
    cpu1, wall1 = chromium_cpu_seconds(), time.monotonic()
    page.get_by_role("button", name="Stop").click()
    page.locator("#voice[data-phase='ended']").wait_for()
    page.wait_for_timeout(1000)  # the last chunk's upload
    page.remove_listener("response", listener)
    per_minute = held["bytes"] * 60000 / held["duration_ms"] if held.get("duration_ms") else 0
    return 100 * (cpu1 - cpu0) / (wall1 - wall0), per_minute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=4, help="sessions of each kind (after one warm-up pair)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per session")
    args = parser.parse_args()

    off, on, uploaded = [], [], []
    with tempfile.TemporaryDirectory() as workdir, RealtimeStandIn() as standin:
        app, app_url = start_app(standin, workdir)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                page = browser.new_page()
                page.goto(app_url + "/accounts/login/")
                page.get_by_label("Username").fill("bench")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                page.goto(app_url + "/chat/")
                for i in range(args.rounds + 1):
                    # Alternate which goes first, so that neither always follows the other.
                    order = (False, True) if i % 2 else (True, False)
                    for record in order:
                        cpu, sent = session(page, record, args.seconds)
                        if i == 0:
                            continue
                        (on if record else off).append(cpu)
                        if record:
                            uploaded.append(sent)
                browser.close()
        finally:
            app.terminate()
            app.wait(10)

    off_median, on_median = statistics.median(off), statistics.median(on)
    print(f"rounds {args.rounds}, window {args.seconds:.0f} s per session")
    print(
        f"chromium_cpu_percent_not_recording_median {off_median:.1f}  ({', '.join(f'{x:.1f}' for x in off)})"
    )
    print(f"chromium_cpu_percent_recording_median {on_median:.1f}  ({', '.join(f'{x:.1f}' for x in on)})")
    print(f"recording_cost_cpu_percentage_points {on_median - off_median:+.1f}")
    print(f"recording_cpu_ratio_recording_to_not {on_median / off_median:.2f}")
    print(f"uploaded_audio_bytes_per_minute_median {statistics.median(uploaded):.0f}")


if __name__ == "__main__":
    main()
