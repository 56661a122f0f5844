from __future__ import annotations

from api.failopen import Breaker


def test_a_tripped_breaker_skips_for_its_cooldown_then_tries_again() -> None:
    now = [100.0]
    breaker = Breaker(cooldown=5, clock=lambda: now[0])
    assert not breaker.is_open
    breaker.trip()
    assert breaker.is_open
    now[0] += 4.9
    assert breaker.is_open
    now[0] += 0.2
    assert not breaker.is_open
