"""What the Django database stores share: the table name rules and the missing-table error."""

from __future__ import annotations

import re

from ..errors import ConfigurationError

DEFAULT_TABLE = "django_session"  # django.contrib.sessions.models.Session
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


def check_table_name(table: str) -> str:
    if not isinstance(table, str) or not _TABLE_NAME.match(table):
        raise ConfigurationError(
            f"Django session table name {table!r} is not allowed: use letters, digits and '_' "
            f"(Django's is {DEFAULT_TABLE!r}; a custom session model's is its db_table)"
        )
    return table


def missing_table(table: str, where: str) -> ConfigurationError:
    return ConfigurationError(
        f"{where}: the table {table!r} does not exist. Django owns it and coatcheck never creates it: "
        "add 'django.contrib.sessions' to INSTALLED_APPS and run `python manage.py migrate`, "
        "or point the store at the Django project's database"
    )
