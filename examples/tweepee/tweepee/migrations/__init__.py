"""The application's numbered migrations; `relay-peewee migrate` runs them after the core's."""
