"""A servicer's pending core: NotReady (UNAVAILABLE, retried) until start-up sets it."""

from __future__ import annotations

import pytest

from services.common.errors import NotReady
from services.common.readiness import Pending


def test_pending_refuses_until_set_and_take_ends_serving() -> None:
    slot: Pending[str] = Pending("the model is still loading")
    assert not slot.ready
    with pytest.raises(NotReady, match="still loading"):
        slot.get()
    slot.set("core")
    assert slot.ready and slot.get() == "core"
    assert slot.take() == "core"
    with pytest.raises(NotReady):
        slot.get()
