"""baseline

Drafted by `relay-peewee makemigration` from the models and the database.
"""

from __future__ import annotations

from typing import Any

from peewee import CharField, DateTimeField, ForeignKeyField, Model, TextField


def up(migrator: Any, db: Any) -> None:
    class User(Model):
        username = CharField(unique=True)
        password = CharField()
        email = CharField()
        join_date = DateTimeField()

        class Meta:
            database = db
            table_name = "user"

    db.create_tables([User])

    class Message(Model):
        user = ForeignKeyField(User)
        content = TextField()
        pub_date = DateTimeField(index=True)

        class Meta:
            database = db
            table_name = "message"

    db.create_tables([Message])

    class Relationship(Model):
        from_user = ForeignKeyField(User)
        to_user = ForeignKeyField(User)

        class Meta:
            database = db
            table_name = "relationship"
            indexes = ((("from_user", "to_user"), True),)

    db.create_tables([Relationship])


def check_down(migrator: Any, db: Any) -> None:
    # Refused while the tables down() would drop hold rows (an adopted app's data).
    migrator.refuse_if_rows(["user", "message", "relationship"])


def down(migrator: Any, db: Any) -> None:
    migrator.migrate(migrator.drop_table("relationship"))
    migrator.migrate(migrator.drop_table("message"))
    migrator.migrate(migrator.drop_table("user"))
