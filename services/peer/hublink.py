"""Talking to the hub without blocking a service's loop.

The hub client is synchronous (it waits, retries, fails over), so each
service runs it in one worker thread. The service's loop sends jobs over an
inproc PAIR socket and polls the other end for results like any other
socket: nothing is shared between the threads but messages. Announces to the
same hubs travel together (``AnnounceBatchJob``: one request for up to
``MAX_BATCH`` libraries, one result per library); a hub too old to know batches
is sent them one by one from then on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import zmq

from services.hub.client import HubClient
from services.hub.client_types import AnnounceEvent, HubClientError, HubError, HubRefused, PeerInfo, Reachability
from services.runtime.logs import get_logger
from services.wire.curve import KeyPair
from services.wire.errors import ErrorCode
from services.wire.pb import hub_pb2

log = get_logger("debug")
MAX_BATCH = 100  # announces in one request (the hub's max_batch)


@dataclass(frozen=True)
class AnnounceJob:
    library_id: bytes
    hubs: tuple[str, ...]
    player_id: bytes
    endpoint: str
    event: int
    uploaded: int
    downloaded: int
    left: int
    numwant: int = 50
    hub_keys: tuple[str, ...] = ()  # each hub's CURVE key, as the library names them ("" = in clear)
    plain: bool = False  # the distributor serves in clear


@dataclass(frozen=True)
class AnnounceBatchJob:
    """Announces to the same hubs (with the same keys), sent together; a HubResult comes back for each."""

    jobs: tuple[AnnounceJob, ...]

    @property
    def hubs(self) -> tuple[str, ...]:
        return self.jobs[0].hubs

    @property
    def hub_keys(self) -> tuple[str, ...]:
        return self.jobs[0].hub_keys


def batches(jobs: list[AnnounceJob]) -> list[AnnounceJob | AnnounceBatchJob]:
    """``jobs`` grouped by hubs, in batches of at most MAX_BATCH (a lone one stays a single announce)."""
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[AnnounceJob]] = {}
    for job in jobs:
        groups.setdefault((job.hubs, job.hub_keys), []).append(job)
    out: list[AnnounceJob | AnnounceBatchJob] = []
    for group in groups.values():
        for start in range(0, len(group), MAX_BATCH):
            part = group[start:start + MAX_BATCH]
            out.append(part[0] if len(part) == 1 else AnnounceBatchJob(tuple(part)))
    return out


@dataclass(frozen=True)
class PeersJob:
    library_id: bytes
    hubs: tuple[str, ...]
    player_id: bytes
    numwant: int = 50
    hub_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportJob:
    library_id: bytes
    hubs: tuple[str, ...]
    player_id: bytes
    endpoint: str
    hub_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class HubResult:
    job: AnnounceJob | PeersJob | ReportJob
    ok: bool
    peers: list[PeerInfo] = field(default_factory=list)
    interval: float = 0.0
    error: str = ""
    endpoint: str = ""  # announce: where the hub hands this player out
    reachable: Reachability = Reachability.UNKNOWN
    refused: bool = False  # the hubs refused this player's key (at the handshake, or NOT_AUTHORISED)


Job = AnnounceJob | AnnounceBatchJob | PeersJob | ReportJob


class HubLink:
    """Owns the worker thread; ``submit`` a job, ``results`` when ``socket`` polls readable."""

    def __init__(self, ctx: zmq.Context[Any], timeout: float = 2.0, identity: KeyPair | None = None) -> None:
        address = f"inproc://hublink-{id(self)}"
        self.socket: zmq.Socket[Any] = ctx.socket(zmq.PAIR)
        self.socket.bind(address)
        self._thread = threading.Thread(target=_worker, args=(ctx, address, timeout, identity), daemon=True,
                                        name="hublink")
        self._thread.start()

    def submit(self, job: Job | None) -> None:
        """Queue a job (None stops the worker after the jobs before it)."""
        self.socket.send_pyobj(job)

    def results(self) -> list[HubResult]:
        out = []
        while self.socket.poll(0):
            out.append(self.socket.recv_pyobj())
        return out

    def close(self, timeout: float = 3.0) -> None:
        self.submit(None)
        self._thread.join(timeout)
        self.socket.close(linger=0)


def _worker(ctx: zmq.Context[Any], address: str, timeout: float, identity: KeyPair | None) -> None:
    socket: zmq.Socket[Any] = ctx.socket(zmq.PAIR)
    socket.connect(address)
    clients: dict[tuple[tuple[str, ...], tuple[str, ...]], HubClient] = {}
    one_by_one: set[HubClient] = set()  # hubs too old for announce batches
    try:
        while True:
            job = socket.recv_pyobj()
            if job is None:
                return
            if not job.hubs:
                for single in job.jobs if isinstance(job, AnnounceBatchJob) else (job,):
                    socket.send_pyobj(HubResult(single, False, error="the library lists no hub"))
                continue
            client = clients.get((job.hubs, job.hub_keys))
            if client is None:
                keys = {hub: key.encode("ascii") for hub, key in zip(job.hubs, job.hub_keys, strict=False)}
                client = clients[(job.hubs, job.hub_keys)] = HubClient(
                    list(job.hubs), timeout=timeout, attempts=len(job.hubs), keys=keys, identity=identity)
            if not isinstance(job, AnnounceBatchJob):
                socket.send_pyobj(_run(client, job))
                continue
            for result in _run_batch(client, job, one_by_one):
                socket.send_pyobj(result)
    finally:
        for client in clients.values():
            client.close()
        socket.close(linger=0)


def _run_batch(client: HubClient, batch: AnnounceBatchJob, one_by_one: set[HubClient]) -> list[HubResult]:
    if client in one_by_one:
        return [_run(client, job) for job in batch.jobs]
    try:
        answers = client.announce_batch([_announce(job) for job in batch.jobs])
    except HubError as exc:
        if exc.code != ErrorCode.UNKNOWN_REQUEST:
            return _all_failed(batch, exc)
        log.info("hub_without_batches", hubs=list(batch.hubs), hint="announcing one library per request")
        one_by_one.add(client)
        return [_run(client, job) for job in batch.jobs]
    except HubClientError as exc:
        return _all_failed(batch, exc)
    return [_failure(job, answer) if isinstance(answer, HubError) else
            HubResult(job, True, list(answer.peers), float(answer.interval), endpoint=answer.endpoint,
                      reachable=answer.reachable) for job, answer in zip(batch.jobs, answers, strict=True)]


def _announce(job: AnnounceJob) -> hub_pb2.Announce:
    return hub_pb2.Announce(library_id=job.library_id, player_id=job.player_id, endpoint=job.endpoint,
                            event=hub_pb2.AnnounceEvent.ValueType(job.event), uploaded=job.uploaded,
                            downloaded=job.downloaded, left=job.left, numwant=job.numwant, plain=job.plain)


def _all_failed(batch: AnnounceBatchJob, exc: HubClientError) -> list[HubResult]:
    log.info("hub_request_failed", job=type(batch).__name__, libraries=len(batch.jobs), error=str(exc))
    return [_failure(job, exc) for job in batch.jobs]


def _failed(job: AnnounceJob | PeersJob | ReportJob, exc: HubClientError) -> HubResult:
    log.info("hub_request_failed", job=type(job).__name__, error=str(exc))
    return _failure(job, exc)


def _failure(job: AnnounceJob | PeersJob | ReportJob, exc: HubClientError) -> HubResult:
    refused = isinstance(exc, HubRefused) or (isinstance(exc, HubError) and exc.code == ErrorCode.NOT_AUTHORISED)
    return HubResult(job, False, error=str(exc), refused=refused)


def _run(client: HubClient, job: AnnounceJob | PeersJob | ReportJob) -> HubResult:
    try:
        if isinstance(job, AnnounceJob):
            reply = client.announce(
                library_id=job.library_id, player_id=job.player_id, endpoint=job.endpoint,
                event=AnnounceEvent(job.event), uploaded=job.uploaded,
                downloaded=job.downloaded, left=job.left, numwant=job.numwant, plain=job.plain,
            )
            return HubResult(job, True, list(reply.peers), float(reply.interval), endpoint=reply.endpoint,
                             reachable=reply.reachable)
        if isinstance(job, PeersJob):
            got = client.get_peers(library_id=job.library_id, player_id=job.player_id, numwant=job.numwant)
            return HubResult(job, True, list(got.peers))
        client.report_unreachable(library_id=job.library_id, reporter_id=job.player_id, endpoint=job.endpoint)
        return HubResult(job, True)
    except HubClientError as exc:
        return _failed(job, exc)
