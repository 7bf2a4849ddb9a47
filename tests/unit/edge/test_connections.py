"""ConnectionTable: the cap, who is evicted at it, and who never is."""

from __future__ import annotations

import pytest

from bluegreen.edge.connections import ConnectionTable


class Conn:
    def __init__(self, name: str) -> None:
        self.name = name
        self.busy = False
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True

    def __repr__(self) -> str:
        return self.name


def table_of(cap: int, *names: str) -> tuple[ConnectionTable, list[Conn]]:
    table = ConnectionTable(cap)
    conns = [Conn(n) for n in names]
    for conn in conns:
        assert table.admit(conn)
    return table, conns


def test_below_the_cap_everyone_is_admitted() -> None:
    table, conns = table_of(3, "a", "b", "c")
    assert len(table) == 3
    assert not any(c.evicted for c in conns)


def test_at_the_cap_the_least_recently_active_is_evicted() -> None:
    table, (a, b) = table_of(2, "a", "b")
    c = Conn("c")
    assert table.admit(c)
    assert a.evicted
    assert not b.evicted
    assert len(table) == 2


def test_a_request_makes_a_connection_the_most_recently_active() -> None:
    table, (a, b) = table_of(2, "a", "b")
    table.request_began(a)  # a began a request after b was accepted
    table.admit(Conn("c"))
    assert b.evicted
    assert not a.evicted


def test_a_connection_with_a_request_in_flight_is_never_evicted() -> None:
    table, (a, b) = table_of(2, "a", "b")
    a.busy = True  # oldest, but busy: skipped
    c = Conn("c")
    assert table.admit(c)
    assert b.evicted
    assert not a.evicted
    c.busy = True
    d = Conn("d")
    assert not table.admit(d)  # everyone busy: the newcomer is the one refused
    assert not a.evicted
    assert not c.evicted
    assert len(table) == 2


def test_a_busy_connection_is_skipped_once_then_waits_its_turn() -> None:
    table, (a, b, c) = table_of(3, "a", "b", "c")
    a.busy = True
    table.admit(Conn("d"))  # skips a (moving it behind c), evicts b
    a.busy = False
    table.admit(Conn("e"))  # c is now the least recently active, a behind it
    assert [x.evicted for x in (a, b, c)] == [False, True, True]


def test_discard_frees_a_place_and_is_idempotent() -> None:
    table, (a,) = table_of(1, "a")
    table.discard(a)
    table.discard(a)
    table.request_began(a)  # a late callback of a closed connection does not bring it back
    b = Conn("b")
    assert table.admit(b)
    assert not a.evicted
    assert len(table) == 1


def test_the_cap_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ConnectionTable(0)
