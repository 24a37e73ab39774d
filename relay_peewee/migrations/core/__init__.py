"""The tenancy core alone: what ``[tool.relay_peewee] relay_schema = false`` migrates.

``tenants`` (with its default tenant), ``audit_logs`` (append-only, isolated
per tenant on PostgreSQL, timestamped by the database) and the host lookup
``relay_find_tenant`` - exactly as Relay's own migrations leave them, and
none of Relay's nine data tables. An application's own migrations then
tenantize its tables on top of it.

The history records these under this package's name
(``relay_peewee.migrations.core:0001_tenants``), never under Relay's bare
names: that is how every command tells which of the two sets a database
uses, and refuses to switch a database from one to the other.
"""
