"""The application's models: tenant-scoped like Relay's, by deriving from TenantModel.

``invoices.owner_id`` references Relay's ``users``; ``invoices`` and
``payments`` reference the application's own ``customers`` and
``invoices``. Each reference is a ``TenantForeignKeyField``, so the database
refuses a row that points into another tenant.
"""

from __future__ import annotations

import uuid

from peewee import IntegerField, TextField

from relay_peewee import TenantForeignKeyField, TenantModel
from relay_peewee.models import User


def new_id() -> str:
    return str(uuid.uuid4())


class Customer(TenantModel):
    id = TextField(primary_key=True, default=new_id)
    name = TextField()
    email = TextField()

    class Meta:
        table_name = "customers"
        # An address is unique within a tenant, no longer across all of them;
        # ("id",) is the key tenant-consistent references point at.
        tenant_unique = [("email",), ("id",)]


class Invoice(TenantModel):
    id = TextField(primary_key=True, default=new_id)
    number = TextField()
    customer = TenantForeignKeyField(Customer, backref="invoices", index=False)
    owner = TenantForeignKeyField(User, null=True, backref="invoices", index=False)
    total = IntegerField()

    class Meta:
        table_name = "invoices"
        tenant_unique = [("number",), ("id",)]


class Payment(TenantModel):
    id = TextField(primary_key=True, default=new_id)
    invoice = TenantForeignKeyField(Invoice, backref="payments", on_delete="CASCADE", index=False)
    amount = IntegerField()

    class Meta:
        table_name = "payments"
