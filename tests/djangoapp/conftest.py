"""Configures the in-process Django project (tests/djangoapp/project.py) before any Django
test module imports Django's models, and provides its fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.djangoapp import project


@pytest.fixture(scope="session")
def django_pg() -> Iterator[str]:
    """The ``pg`` database alias (a PostgreSQL database made for this run, dropped after it)."""
    yield from project.django_pg()


@pytest.fixture(scope="session")
def django_mysql() -> Iterator[str]:
    """The ``mysql`` database alias (a MariaDB database made for this run, dropped after it)."""
    yield from project.django_mysql()
