"""``relay_peewee.catalog``, at the path the engine and migration scripts import it from.

The reads live below both the engine and ``tenancy`` (which asks which
foreign keys the database enforces), so that neither imports the other.
"""

from __future__ import annotations

from ..catalog import *  # noqa: F403
from ..catalog import __all__ as __all__
