"""Synthetic (never real) health data for demonstrations and tests."""
