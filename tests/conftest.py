from __future__ import annotations

import secrets

import pytest

from tests.services import MYSQL_URL, POSTGRES_URL, REDIS_URL, require_listening


@pytest.fixture
def secret() -> str:
    """A fresh strong secret for each test."""
    return secrets.token_urlsafe(32)


@pytest.fixture
def redis_url() -> str:
    """The shared Redis (COATCHECK_REDIS_URL, default 127.0.0.1:6379)."""
    return require_listening("Redis", REDIS_URL, 6379)


@pytest.fixture
def postgres_url() -> str:
    return require_listening("PostgreSQL", POSTGRES_URL, 5432)


@pytest.fixture
def mysql_url() -> str:
    """The shared MySQL/MariaDB (COATCHECK_MYSQL_URL, default root@127.0.0.1:3306/test)."""
    return require_listening("MySQL/MariaDB", MYSQL_URL, 3306)
