"""``cache_entries`` keeps room on each page (migration 0028_ingest2), so the new row version
an exact hit writes (``hit_count``, ``last_hit_at``) stays on its page as a heap-only tuple
and no index of the table (GIN band keys, the scope index with the vector) gets an entry."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def test_cache_entries_are_stored_with_room_for_a_hits_update(db: Session) -> None:
    options = db.scalar(text("SELECT reloptions FROM pg_class WHERE relname = 'cache_entries'"))
    assert options is not None
    assert "fillfactor=70" in options


def test_the_hit_columns_are_in_no_index(db: Session) -> None:
    # An update is heap-only only while none of the columns it changes is indexed.
    definitions = db.scalars(
        text("SELECT indexdef FROM pg_indexes WHERE tablename = 'cache_entries'")
    ).all()
    assert definitions
    assert not [d for d in definitions if "hit_count" in d or "last_hit_at" in d]
