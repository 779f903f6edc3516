"""Prefect flows: compose the stage tasks. No subprocess or SDK calls here."""
