from __future__ import annotations

import uuid

from api.ids import is_id, new_id


def test_ids_are_uuid7_and_strictly_increasing() -> None:
    ids = [new_id() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 and is_id(i) for i in ids)


def test_other_strings_are_not_ids() -> None:
    assert not is_id(str(uuid.uuid4()))
    assert not is_id("x")
