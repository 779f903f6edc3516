"""Revisions of the inventory schema (Alembic loads them by path; this file only packages them)."""
