"""Database objects relay_peewee itself creates that run with more than the caller's rights.

A ``SECURITY DEFINER`` function runs as its owner; when the owner bypasses
row-level security (the migrating owner does), the function can read or write
every tenant. The audit therefore reports every such function the
application role may execute - except the ones registered here, which a
migration of this package creates for a narrow cross-tenant need (say, "which
tenant owns this API key hash") and which the audit checks against the
definition registered, so that a hand edit is reported, not trusted.

A project function is declared here, in ``KNOWN_FUNCTIONS`` below, and the
migration that creates it builds its ``CREATE FUNCTION`` from the entry -
so the audit knows it without importing any migration::

    KNOWN_FUNCTIONS = {
        "relay_tenant_for_api_key": KnownFunction(
            name="relay_tenant_for_api_key",
            arguments="key_hash text",           # pg_get_function_identity_arguments
            body="SELECT tenant_id FROM api_keys WHERE api_keys.key_hash = $1",
        ),
    }

An application's own function can be declared at run time with
``register_function(KnownFunction(...))`` before the audit runs.

The audit accepts the function when its identity arguments and body
(whitespace collapsed) match, its ``search_path`` is pinned (``SET
search_path = ...``) and ``EXECUTE`` is not granted to ``PUBLIC``. This module
imports nothing of the package, so migrations and the audit can both import it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KNOWN_FUNCTIONS", "KnownFunction", "matches", "normalise_body", "register_function"]


@dataclass(frozen=True)
class KnownFunction:
    name: str
    # As pg_get_function_identity_arguments() prints them, e.g. "key_hash text".
    arguments: str
    # The function's source (pg_proc.prosrc); compared with whitespace collapsed.
    body: str


# name -> the definition the audit expects; the migrations that create them read them here.
KNOWN_FUNCTIONS: dict[str, KnownFunction] = {
    # 0011: refuses a usage event naming another tenant's skill. A trigger
    # function: it must see every tenant's skills, and returns nothing to the caller.
    "relay_usage_events_skill_tenant": KnownFunction(
        name="relay_usage_events_skill_tenant",
        arguments="",
        body="""
BEGIN
    IF NEW.skill_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM skills s
         WHERE s.id = NEW.skill_id AND s.tenant_id IS DISTINCT FROM NEW.tenant_id
    ) THEN
        RAISE EXCEPTION USING ERRCODE = '23503',
            MESSAGE = 'usage_events.skill_id names a skill of another tenant';
    END IF;
    RETURN NEW;
END
""",
    ),
}


def register_function(function: KnownFunction) -> KnownFunction:
    """Declare ``function`` as created by relay_peewee; returns it for the migration's use."""
    KNOWN_FUNCTIONS[function.name] = function
    return function


def normalise_body(body: str) -> str:
    return " ".join(body.split()).rstrip(";").strip()


def matches(function: KnownFunction, arguments: str, body: str) -> bool:
    return function.arguments == arguments and normalise_body(function.body) == normalise_body(body)
