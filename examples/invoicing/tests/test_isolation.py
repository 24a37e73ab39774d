"""The application's tables keep tenants apart, on every backend of the plugin.

``relay_db`` has applied Relay's migrations and then this application's
(``[tool.relay_peewee]`` in pyproject.toml); on ``postgres_rls`` the test
connects as an application role that row-level security binds.
"""

from __future__ import annotations

import pytest
from invoicing.models import Customer, Invoice, Payment
from peewee import Database, IntegrityError

from relay_peewee import CrossTenantWrite, tenant_context
from relay_peewee.models import Tenant
from relay_peewee.testing import TenantPair, assert_only_tenant, bound_by_row_level_security


def books(pair: TenantPair, tenant: Tenant) -> Invoice:
    """The same customer address and invoice number in each tenant: uniques are per tenant."""
    with tenant_context(tenant):
        owner = pair.rows_of(tenant).users[0]
        customer = Customer.create(name="Ann", email="ann@example.com")
        invoice = Invoice.create(number="INV-1", customer=customer, owner=owner, total=100)
        Payment.create(invoice=invoice, amount=40)
    return invoice


def test_each_tenant_sees_only_its_own_invoices(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    books(two_tenants, a)
    books(two_tenants, b)
    for tenant in (a, b):
        with tenant_context(tenant):
            invoices = list(Invoice.select())
            assert [i.number for i in invoices] == ["INV-1"]
            assert_only_tenant(invoices, tenant)
            assert_only_tenant(list(Payment.select().join(Invoice)), tenant)
            assert_only_tenant([i.owner for i in invoices], tenant)


def test_no_reference_into_another_tenant_through_the_orm(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    theirs = books(two_tenants, b)
    with tenant_context(a), pytest.raises(CrossTenantWrite):
        Payment.create(invoice=theirs.id, amount=1)
    with tenant_context(a), pytest.raises(CrossTenantWrite):
        Invoice.create(
            number="X", customer=theirs.customer_id, owner=two_tenants.rows_of(a).users[0], total=1
        )


def test_no_reference_into_another_tenant_through_raw_sql(
    relay_db: Database, two_tenants: TenantPair
) -> None:
    a, b = two_tenants.a, two_tenants.b
    theirs = books(two_tenants, b)
    p = relay_db.param
    with pytest.raises(IntegrityError), tenant_context(a), relay_db.atomic():
        relay_db.execute_sql(
            f"INSERT INTO payments (id, tenant_id, invoice_id, amount) VALUES ('x', {p}, {p}, 1)",
            (a.id, theirs.id),
        )


def test_row_level_security_hides_other_tenants_rows_from_raw_sql(
    relay_db: Database, two_tenants: TenantPair
) -> None:
    if not bound_by_row_level_security(relay_db):
        pytest.skip("row-level security binds only the postgres_rls backend's role")
    books(two_tenants, two_tenants.a)
    books(two_tenants, two_tenants.b)
    with tenant_context(two_tenants.a), relay_db.atomic():
        for table in ("customers", "invoices", "payments"):
            tenants = relay_db.execute_sql(f"SELECT DISTINCT tenant_id FROM {table}").fetchall()
            assert tenants == [(two_tenants.a.id,)]
