"""Testing an application that uses relay_peewee: the pytest plugin and what it offers.

The plugin (``plugin``: options, markers and the fixtures ``relay_db``,
``two_tenants``, ``inside_tenant``, ``relay_db_url``) is registered through
the ``pytest11`` entry point, so a suite has it without any import. Its
rooms:

* ``backends``: which backends a test runs on, throw-away PostgreSQL
  databases, the roles of ``postgres_rls``;
* ``templates``: migrate once per session and backend, copy per test
  (``template_copies``: PostgreSQL copies reset between tests);
* ``sample_data``: the two populated tenants of ``two_tenants``;
* ``assertions``: checks that read past the ORM's scoping;
* ``factories``: test factories, one per tenant table.

Everything a test imports is re-exported here.
"""

from __future__ import annotations

from .assertions import (
    TenantSnapshot,
    assert_only_tenant,
    assert_tenant_untouched,
    assert_unchanged,
    bound_by_row_level_security,
    snapshot_tenant,
)
from .backends import (
    BACKENDS,
    backend_params,
    chosen_backends,
    postgres_server_url,
    throwaway_postgres_database,
)
from .plugin import FRESH_MARK, MARKERS
from .sample_data import SAMPLE_SLUGS, SampleRows, TenantPair, populate_tenant
from .templates import application_config, build_schema

__all__ = [
    "BACKENDS",
    "FRESH_MARK",
    "MARKERS",
    "SAMPLE_SLUGS",
    "SampleRows",
    "TenantPair",
    "TenantSnapshot",
    "application_config",
    "assert_only_tenant",
    "assert_tenant_untouched",
    "assert_unchanged",
    "backend_params",
    "bound_by_row_level_security",
    "build_schema",
    "chosen_backends",
    "populate_tenant",
    "postgres_server_url",
    "snapshot_tenant",
    "throwaway_postgres_database",
]
