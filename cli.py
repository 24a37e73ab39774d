"""Run the relay-peewee CLI from a checkout: ``python cli.py migrate``."""

from relay_peewee.cli import main

if __name__ == "__main__":
    main()
