"""The ledger's revisions, one file each (loaded by Alembic by path, not imported)."""
