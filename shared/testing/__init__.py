"""Helpers for the test suite and for users testing their own extensions."""
