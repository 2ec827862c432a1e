"""A small Django project configured in-process, for the Django tests.

Django can be configured once per process, so every Django test module shares this one:
two databases, ``default`` (a temporary SQLite file) and ``pg`` (a PostgreSQL database
created for this run, ``coatcheck_django_<random>``, dropped at the end), both migrated, and
a router whose `Router.alias` says which one the ORM (and so Django's db session backend)
uses. The views below are the project's URLconf.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from tests.services import MYSQL_URL, POSTGRES_URL, require_listening

SECRET_KEY = secrets.token_urlsafe(40)
OLD_SECRET_KEY = secrets.token_urlsafe(40)
PG_DATABASE = f"coatcheck_django_{secrets.token_hex(6)}"
MYSQL_DATABASE = f"coatcheck_django_{secrets.token_hex(6)}"
PASSWORD = "correct horse battery staple"
_tmp = tempfile.mkdtemp(prefix="coatcheck-django-")
atexit.register(shutil.rmtree, _tmp, ignore_errors=True)
SQLITE_PATH = os.path.join(_tmp, "db.sqlite3")


class Router:
    """Sends every model to `alias` (the database a test is about)."""

    alias = "default"

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return Router.alias

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return Router.alias

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return True


def _pg_settings() -> dict[str, Any]:
    parts = urlsplit(POSTGRES_URL)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": PG_DATABASE,
        "USER": parts.username or "postgres",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
    }


def _mysql_settings() -> dict[str, Any]:
    parts = urlsplit(MYSQL_URL)
    return {
        "ENGINE": "django.db.backends.mysql",
        "NAME": MYSQL_DATABASE,
        "USER": parts.username or "root",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 3306),
        "OPTIONS": {"charset": "utf8mb4"},
    }


if not settings.configured:
    # Django's MySQL backend is written for mysqlclient, which needs a C toolchain and the
    # MariaDB headers; PyMySQL (pure Python) stands in for it, as its docs describe.
    import pymysql

    pymysql.install_as_MySQLdb()

    settings.configure(
        DEBUG=False,
        SECRET_KEY=SECRET_KEY,
        SECRET_KEY_FALLBACKS=[OLD_SECRET_KEY],
        ALLOWED_HOSTS=["testserver"],
        USE_TZ=True,
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": SQLITE_PATH},
            "pg": _pg_settings(),
            "mysql": _mysql_settings(),
        },
        DATABASE_ROUTERS=[f"{__name__}.Router"],
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "django.contrib.messages",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        MESSAGE_STORAGE="django.contrib.messages.storage.session.SessionStorage",
        ROOT_URLCONF=__name__,
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],  # fast; tests only
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()

from django.contrib import messages  # noqa: E402
from django.contrib.auth import authenticate, get_user_model, login, logout  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

_migrated: set[str] = set()


def use_database(alias: str) -> None:
    """Point the ORM (users, Django's db session backend) at `alias`, migrated on first use."""
    Router.alias = alias
    if alias not in _migrated:
        call_command("migrate", database=alias, verbosity=0, interactive=False)
        _migrated.add(alias)


def new_user(prefix: str = "user") -> Any:
    """A fresh user in the current database (unique name: the databases outlive tests)."""
    return get_user_model().objects.create_user(f"{prefix}-{secrets.token_hex(4)}", password=PASSWORD)


def django_pg() -> Iterator[str]:
    """(The `django_pg` fixture.) The ``pg`` alias: a PostgreSQL database created for this run and dropped at its end."""
    import psycopg

    require_listening("PostgreSQL", POSTGRES_URL, 5432)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    try:
        yield "pg"
    finally:
        connections["pg"].close()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')


def django_mysql() -> Iterator[str]:
    """(The `django_mysql` fixture.) The ``mysql`` alias: a MariaDB/MySQL database created
    for this run and dropped at its end."""
    import pymysql

    require_listening("MySQL/MariaDB", MYSQL_URL, 3306)
    parts = urlsplit(MYSQL_URL)

    def admin(statement: str) -> None:
        conn = pymysql.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
        )
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement)
        finally:
            conn.close()

    admin(f"CREATE DATABASE `{MYSQL_DATABASE}` CHARACTER SET utf8mb4")
    try:
        yield "mysql"
    finally:
        connections["mysql"].close()
        admin(f"DROP DATABASE IF EXISTS `{MYSQL_DATABASE}`")


def mysql_url() -> str:
    return urlsplit(MYSQL_URL)._replace(path=f"/{MYSQL_DATABASE}").geturl()


def pg_url() -> str:
    parts = urlsplit(POSTGRES_URL)
    return parts._replace(path=f"/{PG_DATABASE}").geturl()


# ---- views ------------------------------------------------------------------------------
def login_view(request: HttpRequest, username: str) -> HttpResponse:
    user = authenticate(request, username=username, password=PASSWORD)
    if user is None:
        return HttpResponse("bad credentials", status=403)
    login(request, user)
    return HttpResponse("ok")


def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse("ok")


def whoami(request: HttpRequest) -> HttpResponse:
    user = request.user
    return HttpResponse(user.get_username() if user.is_authenticated else "anonymous")


def data_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(dict(request.session.items()))


def set_view(request: HttpRequest, key: str, value: str) -> HttpResponse:
    request.session[key] = json.loads(value)
    return HttpResponse("ok")


def read_view(request: HttpRequest, key: str) -> JsonResponse:
    return JsonResponse({"value": request.session.get(key)})


def flush_view(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return HttpResponse("ok")


def cycle_view(request: HttpRequest) -> HttpResponse:
    request.session.cycle_key()
    return HttpResponse("ok")


def add_message(request: HttpRequest, text: str) -> HttpResponse:
    messages.success(request, text)
    return HttpResponse("ok")


def read_messages(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"messages": [str(m) for m in messages.get_messages(request)]})


urlpatterns = [
    path("login/<str:username>/", login_view),
    path("logout/", logout_view),
    path("whoami/", whoami),
    path("data/", data_view),
    path("set/<str:key>/<str:value>/", set_view),
    path("read/<str:key>/", read_view),
    path("flush/", flush_view),
    path("cycle/", cycle_view),
    path("message/<str:text>/", add_message),
    path("messages/", read_messages),
]
