"""When a complete library stops being seeded: the optional limits of settings (``seeding.ratio``,
``seeding.hours``), applied per library. Plain function fed ``now`` (unix seconds); the Distributor
applies the answer (the library becomes ``stopped``, shown as paused with this reason)."""

from __future__ import annotations

from services.peer.state import LibraryRecord, Status


def limit_reached(record: LibraryRecord, ratio: float, hours: float, now: float) -> str:
    """Why ``record`` should no longer be seeded ("" while it should): a limit of 0 is no limit."""
    if record.status is not Status.SEEDING:
        return ""
    if ratio > 0 and record.size > 0 and record.uploaded >= ratio * record.size:
        return (f"seeding ratio {ratio:g} reached (seeding.ratio); raise or clear the limit with "
                f"`emma settings set seeding.ratio 0`, then `emma resume`")
    if hours > 0 and record.completed_at is not None and now - record.completed_at >= hours * 3600:
        return (f"seeded for {hours:g} h (seeding.hours); raise or clear the limit with "
                f"`emma settings set seeding.hours 0`, then `emma resume`")
    return ""
