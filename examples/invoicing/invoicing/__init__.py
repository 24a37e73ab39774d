"""An example application that keeps its own tables in Relay's database."""
