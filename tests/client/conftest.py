"""Fixtures of the SDK tests: the server tests' scorer (the shipped one, or a smoke one trained once)."""

from tests.server.conftest import scorer  # noqa: F401 - a fixture, shared with the server's end-to-end tests
