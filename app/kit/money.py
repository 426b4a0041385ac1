"""Money in the public API: a ``Decimal`` written out as a plain decimal string.

``str(Decimal("0E-12"))`` is ``"0E-12"``; clients (and people) expect ``"0.000000000000"``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer

Money = Annotated[
    Decimal, PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json")
]
