"""Connection caps as a decision: per address, in total, and descriptors reused."""

from __future__ import annotations

from services.wire.admission import Admission
from services.wire.ids import canonical_address


def test_an_address_over_its_cap_is_refused_and_others_are_not() -> None:
    admission = Admission(per_address=2, total=10)
    for fd in (5, 6):
        admission.opened(fd, "10.0.0.1")
        assert admission.admit("10.0.0.1")
    admission.opened(7, "10.0.0.1")
    assert not admission.admit("10.0.0.1")
    admission.opened(8, "10.0.0.2")
    assert admission.admit("10.0.0.2")
    assert admission.take_refused() == {"10.0.0.1": 1} and admission.take_refused() == {}
    admission.closed(7)
    admission.closed(5)
    admission.opened(9, "10.0.0.1")
    assert admission.admit("10.0.0.1")


def test_the_total_cap_holds_whatever_the_addresses() -> None:
    admission = Admission(per_address=100, total=3)
    for fd in range(3):
        admission.opened(fd, f"10.0.0.{fd}")
    admission.opened(3, "10.0.0.9")
    assert not admission.admit("10.0.0.9")
    admission.closed(0)
    assert admission.admit("10.0.0.9") and admission.live == 3


def test_a_reused_descriptor_counts_once_and_unknown_closes_are_ignored() -> None:
    admission = Admission(per_address=1, total=10)
    admission.opened(4, "10.0.0.1")
    admission.opened(4, "10.0.0.2")  # fd 4 closed and reused before the close was heard
    admission.closed(99)
    assert admission.by_address == {"10.0.0.2": 1} and admission.live == 1


def test_mapped_ipv6_is_the_same_host_as_ipv4() -> None:
    assert canonical_address("::ffff:10.0.0.1") == "10.0.0.1"
    assert canonical_address("[::1]") == "::1"
    assert canonical_address("") == ""
