"""peewee's Flask "twitter" example's models, each tenant-scoped by one change:
``Model`` became ``TenantModel``.

The tables keep peewee's default names (``user``, ``relationship``,
``message``), serial ids and plain ``ForeignKeyField``s. ``makemigration``
drafted the migration that makes them tenant-scoped in place: ``tenant_id``
on each, a username unique per tenant instead of across all, and every
foreign key made ``(tenant_id, column) -> user (tenant_id, id)``, so the
database itself refuses a row that points into another tenant.
"""

from __future__ import annotations

from peewee import CharField, DateTimeField, ForeignKeyField, TextField

from relay_peewee import TenantModel


class User(TenantModel):
    username = CharField()
    password = CharField()
    email = CharField()
    join_date = DateTimeField()

    class Meta:
        # Two tenants may each have an "alice"; one tenant only one.
        tenant_unique = [("username",)]


class Relationship(TenantModel):
    from_user = ForeignKeyField(User, backref="relationships")
    to_user = ForeignKeyField(User, backref="related_to")

    class Meta:
        indexes = ((("from_user", "to_user"), True),)


class Message(TenantModel):
    user = ForeignKeyField(User, backref="messages")
    content = TextField()
    pub_date = DateTimeField(index=True)
