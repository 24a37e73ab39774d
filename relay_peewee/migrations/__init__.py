"""relay_peewee's numbered migrations, applied in order by relay_peewee.migrator.

Each file defines ``up(migrator, db)`` and ``down(migrator, db)``, as
``playhouse.migrations`` expects; ``migrator`` is the backend migrator from
``relay_peewee.migrator.backends``. Files are frozen once released: they
never import the current models, which may have moved on since.
"""
