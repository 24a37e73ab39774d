"""The application's tables as they were before tenancy.

IF NOT EXISTS: a database that already has them (the application ran for
years before adopting relay_peewee) keeps them as they are, rows and all.
``invoice_notes`` is a table the application does not model; its ON DELETE
CASCADE reference must survive every later migration, rows included.
"""

from __future__ import annotations

from typing import Any

from relay_peewee.database import is_postgres

POSTGRES = [
    """CREATE TABLE IF NOT EXISTS customers (
        id text PRIMARY KEY, name text NOT NULL, email text NOT NULL,
        CONSTRAINT customers_email_key UNIQUE (email))""",
    """CREATE TABLE IF NOT EXISTS invoices (
        id text PRIMARY KEY, number text NOT NULL UNIQUE,
        customer_id text NOT NULL REFERENCES customers (id),
        owner_id text REFERENCES users (id) ON DELETE SET NULL,
        total integer NOT NULL CHECK (total >= 0))""",
    """CREATE TABLE IF NOT EXISTS payments (
        id text PRIMARY KEY,
        invoice_id text NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
        amount integer NOT NULL CHECK (amount > 0))""",
    """CREATE TABLE IF NOT EXISTS invoice_notes (
        id serial PRIMARY KEY,
        invoice_id text NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
        body text NOT NULL)""",
    """CREATE OR REPLACE VIEW invoice_balances AS
        SELECT i.id, i.number, i.total - COALESCE(SUM(p.amount), 0) AS balance
        FROM invoices i LEFT JOIN payments p ON p.invoice_id = i.id GROUP BY i.id, i.number""",
]
SQLITE = [
    """CREATE TABLE IF NOT EXISTS customers (
        id TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE)""",
    """CREATE TABLE IF NOT EXISTS invoices (
        id TEXT NOT NULL PRIMARY KEY, number TEXT NOT NULL UNIQUE,
        customer_id TEXT NOT NULL REFERENCES customers (id),
        owner_id TEXT REFERENCES users (id) ON DELETE SET NULL,
        total INTEGER NOT NULL CHECK (total >= 0))""",
    """CREATE TABLE IF NOT EXISTS payments (
        id TEXT NOT NULL PRIMARY KEY,
        invoice_id TEXT NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
        amount INTEGER NOT NULL CHECK (amount > 0))""",
    """CREATE TABLE IF NOT EXISTS invoice_notes (
        id INTEGER PRIMARY KEY,
        invoice_id TEXT NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
        body TEXT NOT NULL)""",
    """CREATE VIEW IF NOT EXISTS invoice_balances AS
        SELECT i.id, i.number, i.total - COALESCE(SUM(p.amount), 0) AS balance
        FROM invoices i LEFT JOIN payments p ON p.invoice_id = i.id GROUP BY i.id, i.number""",
    """CREATE TRIGGER IF NOT EXISTS payments_positive BEFORE UPDATE OF amount ON payments
        WHEN NEW.amount <= 0 BEGIN SELECT RAISE(ABORT, 'a payment is positive'); END""",
]


def up(migrator: Any, db: Any) -> None:
    migrator.step("invoicing: the pre-tenancy tables")
    migrator.migrate(*[migrator.sql(s) for s in (POSTGRES if is_postgres(db) else SQLITE)])


def check_down(migrator: Any, db: Any) -> None:
    # The tables were the application's before this ran (IF NOT EXISTS): never drop rows.
    migrator.refuse_if_rows(["invoice_notes", "payments", "invoices", "customers"])


def down(migrator: Any, db: Any) -> None:
    for table in ("invoice_balances",):
        migrator.migrate(migrator.sql(f"DROP VIEW IF EXISTS {table}"))
    for table in ("invoice_notes", "payments", "invoices", "customers"):
        migrator.migrate(migrator.sql(f"DROP TABLE IF EXISTS {table}"))
