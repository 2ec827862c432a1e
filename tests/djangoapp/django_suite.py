"""Run Django's own backend-agnostic session tests against ``coatcheck.django``.

Usage (what ``.ci/django-sessions-tests`` does)::

    python -m tests.djangoapp.django_suite <dir holding Django's tests/sessions_tests> [store URL]

Django's test code comes from the released source distribution of the installed Django,
downloaded at CI time and never committed. From it this runs `SessionTestsMixin` (every
test a session backend must pass) with ``backend = coatcheck.django.SessionStore``, and
`SessionMiddlewareTests` with ``SESSION_ENGINE = "coatcheck.django"``.
"""

from __future__ import annotations

import sys
import unittest

# Tests that are not about a session backend's behaviour, each with the reason it is left out.
EXCLUDED = {
    "test_empty_session_saved": "reads Django's own django_session model (db backend) directly",
}


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    sys.path.insert(0, argv[1])
    store_url = argv[2] if len(argv) > 2 else "memory://"

    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="coatcheck-django-suite-" + "x" * 40,
        USE_TZ=True,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "sessions_tests",
        ],
        SESSION_ENGINE="coatcheck.django",
        COATCHECK_STORE=store_url,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()

    from django.test import SimpleTestCase
    from django.test.runner import DiscoverRunner
    from sessions_tests.tests import SessionMiddlewareTests, SessionTestsMixin

    from coatcheck.django import SessionStore

    class CoatcheckSessionTests(SessionTestsMixin, SimpleTestCase):  # type: ignore[misc]
        backend = SessionStore

    runner = DiscoverRunner(verbosity=2)
    runner.setup_test_environment()
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for case in (CoatcheckSessionTests, SessionMiddlewareTests):
        for test in loader.loadTestsFromTestCase(case):
            name = getattr(test, "_testMethodName", "")
            if name in EXCLUDED:
                print(f"left out: {name}: {EXCLUDED[name]}")
            else:
                suite.addTest(test)
    databases = runner.setup_databases()
    try:
        result = runner.run_suite(suite)
    finally:
        runner.teardown_databases(databases)
        runner.teardown_test_environment()
    print(
        f"Django's session tests against coatcheck.django ({store_url}): {result.testsRun} run, "
        f"{len(result.failures)} failed, {len(result.errors)} errors, {len(result.skipped)} skipped"
    )
    return 0 if result.wasSuccessful() and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
