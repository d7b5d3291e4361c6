"""Regenerate the console captures in this folder from a real run.

    python docs/console/capture.py

Starts a hub (``python -m services.hub``) and two consoles in a private tmux
server, plays a session (alice uploads a file, bob downloads it), and writes
what the terminal showed for each screen, as tmux renders it, to NN-*.txt.
Every process it starts is ended at the end: the tmux server, both players
(via `emma peer stop`) and the hub.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from services.wire import curve  # noqa: E402
from tools.procs import ProcessGroup  # noqa: E402

HERE = Path(__file__).resolve().parent
SOCKET = "emma-docs"
WIDTH, HEIGHT = 110, 48
MENU_TOP = "╭"
PROMPT = "Choose an action:"
SHORT_MENU = "1 Upload File   2 Download File"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SOCKET, *args], check=True, capture_output=True, text=True).stdout


class Pane:
    def __init__(self, name: str, data: Path) -> None:
        self.name = name
        command = f"{sys.executable} -m services.cli.app --data-dir {data} console"
        tmux("new-session", "-d", "-s", name, "-x", str(WIDTH), "-y", str(HEIGHT), "-c", str(ROOT), command)
        tmux("set-option", "-t", name, "history-limit", "20000")
        tmux("set-option", "-w", "-t", name, "remain-on-exit", "on")  # keep the last screen after Exit

    def lines(self) -> list[str]:
        text = tmux("capture-pane", "-p", "-J", "-t", self.name, "-S", "-", "-E", "-")
        lines = [line.rstrip() for line in text.splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def screen(self) -> list[str]:
        return [line.rstrip() for line in tmux("capture-pane", "-p", "-J", "-t", self.name).splitlines()]

    def wait(self, text: str, timeout: float = 60, after: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines()[after:]):
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: {text!r} did not show within {timeout}s")

    def type(self, text: str, enter: bool = True) -> None:
        tmux("send-keys", "-t", self.name, "-l", text)
        if enter:
            tmux("send-keys", "-t", self.name, "Enter")

    def mark(self) -> int:
        """Index of the last line shown (the prompt about to be answered)."""
        return max(len(self.lines()) - 1, 0)

    def step(self, answers: list[str], done: str = PROMPT, timeout: float = 60, menus: bool = False) -> list[str]:
        """Answer prompts in turn, wait for ``done``; the lines from the first prompt to the next menu
        (or to the end with ``menus``)."""
        start = self.mark()
        for answer in answers:
            before = len(self.lines())
            self.type(answer)
            self.wait_change(before)
        self.wait(done, timeout, after=start + 1)
        lines = self.lines()[start:]
        return lines if menus else cut(lines)

    def wait_change(self, before: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines()) <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let the screen finish drawing before the next answer


def cut(lines: list[str]) -> list[str]:
    """Drop the menu that follows a screen (the one-line menu after an action; the panel has a capture of its
    own)."""
    for i in range(1, len(lines)):
        if lines[i].startswith(SHORT_MENU) or (lines[i].startswith(MENU_TOP) and "EMMA TORRENT" in lines[i]):
            return lines[:i]
    return lines


def save(name: str, lines: list[str]) -> None:
    (HERE / name).write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    print(f"wrote docs/console/{name}")


def setup_answers(port: int, key: str) -> list[str]:
    return ["seven", str(port), "skip", "0", key, ""]  # hub port, IP, distributor port, hub key, who may download


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="emma-docs-"))
    group = ProcessGroup(work / "logs")
    alice, bob = work / "alice", work / "bob"
    try:
        hub = group.start("hub", ["-m", "services.hub", "--bind", "tcp://127.0.0.1:0", "--db",
                                  str(work / "hub.db"), "--store", "memory", "--data-dir", str(work / "hub")])
        port = group.wait_for_endpoint(hub).rsplit(":", 1)[1]
        key = curve.load_or_create(work / "hub").public.decode()  # the key pair the hub made and serves with
        stuff = work / "files" / "holiday.mov"
        stuff.parent.mkdir(parents=True)
        stuff.write_bytes(random.Random(6).randbytes(24 * 1024 * 1024))

        a = Pane("alice", alice)
        a.wait("Hub port")
        for answer in setup_answers(int(port), key):
            a.type(answer)
            time.sleep(0.3)
        a.wait(PROMPT)
        save("01-first-run-and-menu.txt", a.lines())
        save("02-wrong-input.txt", a.step(["", "42"], menus=True))
        save("03-upload-file.txt", a.step(["1", "", str(work / "nope.mov"), str(stuff)]))
        lib = next((alice / "libs").glob("lib_*.lib"))
        a.step(["6", "limits.upload_rate", str(6 * 1024 * 1024), "exit"])  # slow enough to watch

        b = Pane("bob", bob)
        b.wait("Hub port")
        for answer in setup_answers(int(port), key):
            b.type(answer)
            time.sleep(0.3)
        b.wait(PROMPT)
        save("04-download-file.txt", b.step(["2", "5", str(lib)]))
        start = b.mark()
        b.type("3")
        b.wait("downloading", after=start)
        time.sleep(1.5)
        screen = b.screen()
        top = max(i for i, line in enumerate(screen) if "View Download" in line)
        save("05-view-download-live.txt", [line for line in screen[top:] if line])
        b.wait("seeding", after=start, timeout=120)
        time.sleep(1.0)
        b.type("q", enter=False)
        b.wait(PROMPT, after=start + 1)
        save("06-view-download-done.txt", cut(b.lines()[start:]))
        save("07-view-logs.txt", b.step(["4", "events", "n"]))
        subprocess.run([sys.executable, "-m", "services.cli.app", "--data-dir", str(bob), "services", "--stop",
                        "requestor"], check=True, capture_output=True, cwd=ROOT)
        save("08-view-services.txt", b.step(["5", "requestor"]))
        save("09-settings.txt", b.step(["6", "limits.download_rate", "fast", "5M", "paths.downloads",
                                        str(stuff / "below"), "default", "exit"]))
        save("10-about.txt", b.step(["7"]))
        save("11-exit.txt", b.step(["8", "n"], done="Bye."))
        save("12-exit-and-stop.txt", a.step(["8", "y"], done="Bye."))
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True)
        for data in (alice, bob):
            subprocess.run([sys.executable, "-m", "services.cli.app", "--data-dir", str(data), "peer", "stop"],
                           capture_output=True, cwd=ROOT)
        group.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
