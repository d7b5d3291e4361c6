"""Console screens that watch: View Download (live), View Logs (follow), View Services."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from services.cli import launch
from services.cli.fmt import (
    download_state,
    human_bytes,
    human_eta,
    human_rate,
    human_ratio,
    human_seconds,
    printable,
    progress_percent,
    state_name,
    state_word,
)
from services.cli.logs_view import Follower, render
from services.runtime import rundir
from services.runtime.logs import LOG_KINDS, log_path
from services.supervisor.control_client import MaestroNotRunning
from services.wire.pb import control_pb2

if TYPE_CHECKING:
    from services.cli.console import Session

REFRESH = 0.5
LOG_BACKLOG = 20
BAR_WIDTH = 16
LINES_PER_LIBRARY = 4
SMALL_BAR = 10  # View Download's bars, so that a row fits 80 columns
CHROME_LINES = 3  # View Download's title and footer, and the line the cursor rests on
STATE_STYLES = {"RUNNING": "green", "STARTING": "cyan", "BACKOFF": "yellow", "FATAL": "bold red", "OFF": "dim",
                "STOPPING": "yellow", "seeding": "green", "downloading": "cyan", "paused": "yellow",
                "error": "bold red", "stalled": "bold yellow", "waiting": "yellow", "refused": "bold red"}


# --- 3 View Download -----------------------------------------------------------------------------------


def bar(have: int, total: int, width: int = BAR_WIDTH) -> Text:
    """``████████░░░░░░░░  50.0%``"""
    percent = progress_percent(have, total)
    filled = round(width * percent / 100)
    return Text("█" * filled + "░" * (width - filled) + f" {percent:5.1f}%")


def library_lines(d: control_pb2.Download) -> list[Text]:
    """One library in LINES_PER_LIBRARY lines (name; progress and rates; totals; state and reason), each cut
    to the width it is shown in, never wrapped."""
    have = d.books_total if d.state == control_pb2.SEEDING else d.books_have
    progress = Text("  ") + bar(have, d.books_total, SMALL_BAR)
    progress.append(f"  down {human_rate(d.download_rate)}  up {human_rate(d.upload_rate)}  eta {human_eta(d.eta)}"
                    f"  {d.peers} peer{'s' if d.peers != 1 else ''}")
    totals = Text(f"  {human_bytes(d.size)}  got {human_bytes(d.downloaded)}  sent {human_bytes(d.uploaded)}"
                  f"  ratio {human_ratio(d.ratio)}")
    state = Text("  ") + Text(download_state(d), style=STATE_STYLES.get(state_word(d.state), ""))
    return [Text(printable(d.name), style="bold"), progress, totals, state]


def pages(items: list[control_pb2.Download], height: int) -> list[list[control_pb2.Download]]:
    """The libraries in pages that fit ``height`` lines with the title and footer (at least one per page)."""
    per_page = max(1, (height - CHROME_LINES) // LINES_PER_LIBRARY)
    return [items[i:i + per_page] for i in range(0, len(items), per_page)] or [[]]


def downloads_view(items: list[control_pb2.Download], footer: str, width: int = 80, height: int = 24,
                   page: int = 0) -> RenderableType:
    """One page of libraries: no line is longer than ``width``, nor are there more than ``height`` lines."""
    shown = pages(items, height)
    page = min(page, len(shown) - 1)
    lines = [Text(f"Downloads and shares ({len(items)})", style="bold")]
    if len(shown) > 1:
        lines[0].append(f", page {page + 1} of {len(shown)}")
    for d in shown[page]:
        lines += library_lines(d)
    if not items:
        lines.append(Text("no libraries yet: 1 Upload File shares one, 2 Download File gets one"))
    if footer:
        lines.append(Text(footer, style="dim"))
    for line in lines:
        line.no_wrap, line.overflow = True, "ellipsis"
        line.truncate(width, overflow="ellipsis")
    return Group(*lines)


def downloads(session: Session) -> None:
    """Libraries pending and downloaded, refreshed until a key is pressed (printed once without a terminal); a
    list longer than the terminal is paged (n next, p previous)."""
    client = session.client
    items = client.downloads()
    with session.keys() as keys:
        if keys is None:
            session.out.print(downloads_view(items, "", session.out.width, height=10**6))
            return
        page = 0

        def view() -> RenderableType:
            count = len(pages(items, session.out.height))
            paging = "n next page, p previous, " if count > 1 else ""
            footer = f"refreshed every {REFRESH:g} s; {paging}any other key goes back"
            return downloads_view(items, footer, session.out.width, session.out.height, page)

        with Live(view(), console=session.out, auto_refresh=False) as live:
            while True:
                key = keys.key(REFRESH)
                if key in ("n", " "):
                    page = min(page + 1, len(pages(items, session.out.height)) - 1)
                elif key == "p":
                    page = max(page - 1, 0)
                elif key is not None:
                    return
                items = client.downloads()
                live.update(view(), refresh=True)


# --- 4 View Logs ---------------------------------------------------------------------------------------


def _log_kind(answer: str) -> str:
    if answer.isdigit() and 1 <= int(answer) <= len(LOG_KINDS):
        return LOG_KINDS[int(answer) - 1]
    if answer.lower() in LOG_KINDS:
        return answer.lower()
    raise ValueError(f"no log {answer!r}: a number from 1 to {len(LOG_KINDS)}, or its name")


def logs(session: Session) -> None:
    """The last lines of one log, newest last, levels coloured; then optionally follow it."""
    session.say("  ".join(f"{n} {kind}" for n, kind in enumerate(LOG_KINDS, start=1)))
    kind = session.choose("Which log? (number or name; 'exit' to go back): ", _log_kind)
    if kind is None:
        return
    path = log_path(session.data_dir, kind)
    follower = Follower(path)
    entries = follower.backlog(LOG_BACKLOG)
    session.say(f"{kind} log, last {len(entries)} lines ({printable(path)}):", style="bold")
    for entry in entries:
        session.out.print(render(entry), soft_wrap=True)
    if not entries:
        session.say("  nothing logged yet", style="dim")
    if not session.confirm("Follow new lines? [y/N] "):
        return
    with session.keys() as keys:
        if keys is None:
            session.say("  following needs a terminal; `emma logs --follow` works in a script", style="yellow")
            return
        session.say(f"following {kind}: press any key to stop", style="dim")
        while not keys.pressed(REFRESH):
            for entry in follower.poll():
                session.out.print(render(entry), soft_wrap=True)
    session.say("stopped following", style="dim")


# --- 5 View Services -----------------------------------------------------------------------------------


def _maestro_off() -> list[control_pb2.ServiceStatus]:
    return [control_pb2.ServiceStatus(name=name, state=control_pb2.OFF, heartbeat_age=-1)
            for name in (rundir.MAESTRO, *rundir.SERVICES)]


def services_table(statuses: list[control_pb2.ServiceStatus]) -> Table:
    table = Table("service", "state", "pid", "uptime", "restarts", "detail", title="Services")
    for s in statuses:
        name = state_name(s.state)
        table.add_row(Text(printable(s.name.capitalize())), Text(name, style=STATE_STYLES.get(name, "")),
                      str(s.pid or "-"), human_seconds(s.uptime), str(s.restarts), Text(printable(s.detail)))
    return table


def services(session: Session) -> None:
    """State of the Maestro and its services; offers to start one that is off."""
    try:
        statuses = session.client.services()
    except MaestroNotRunning:
        statuses = _maestro_off()
    session.out.print(services_table(statuses))
    startable = [s.name for s in statuses if s.state in (control_pb2.OFF, control_pb2.FATAL)]
    if "maestro" in startable:
        startable = ["maestro"]  # its services start with it
    if not startable:
        session.say("All services are up.", style="green")
        return

    def choose(answer: str) -> str:
        if answer.lower() in startable:
            return answer.lower()
        raise ValueError(f"{answer!r} is not a service that is off: {', '.join(startable)}")

    name = session.choose(f"Start which service? ({', '.join(startable)}; 'exit' to go back): ", choose)
    if name is None:
        return
    if name == "maestro":
        pid = launch.start_in_background(session.config())
        session.say(f"player started (pid {pid})", style="green")
    else:
        session.say(printable(session.client.service(name, True)), style="green")
    session.log.info("service_start_requested", service=name, via="console")
