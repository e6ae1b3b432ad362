"""The controller's database: runs (and, with the controller, agents, cases, suites).

Stage: the end of the flow, in server mode.  SQLAlchemy 2 (async) over SQLite by
default (a file, zero setup) or PostgreSQL by URL; the schema is created and
upgraded by Alembic migrations shipped in ``harness/db/migrations``.  A run is
stored as its full JSON record plus the columns lists filter and sort on.
"""

from harness.db.engine import create_engine, migrate, normalise_url
from harness.db.runs import DbRunSink, RunPage, RunRepository

__all__ = [
    "DbRunSink",
    "RunPage",
    "RunRepository",
    "create_engine",
    "migrate",
    "normalise_url",
]
