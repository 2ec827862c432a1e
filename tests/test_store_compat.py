"""`coatcheck.stores.compat.adopt_store`: compat="express" pairs a base store with its twin."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from coatcheck.errors import ConfigurationError
from coatcheck.express import ExpressFormat
from coatcheck.stores import CookieStore, MemoryStore, RedisStore
from coatcheck.stores.compat import adopt_store
from coatcheck.stores.express_redis import ExpressRedisStore
from tests.helpers import make_settings


def express_format() -> ExpressFormat:
    return ExpressFormat(make_settings())


def test_a_redis_store_gets_connect_redis_layout_on_its_own_connections() -> None:
    base = RedisStore("redis://127.0.0.1:6379/0")
    adopted = adopt_store(base, express_format())
    assert isinstance(adopted, ExpressRedisStore)
    assert adopted.redis is base and adopted.prefix == "sess:"
    asyncio.run(base.close())


def test_a_mongo_store_gets_connect_mongo_layout() -> None:
    pytest.importorskip("pymongo")
    from coatcheck.stores.express_mongo import ExpressMongoStore
    from coatcheck.stores.mongo import MongoStore

    base = MongoStore("mongodb://127.0.0.1:1/app")
    adopted = adopt_store(base, express_format())
    assert isinstance(adopted, ExpressMongoStore) and adopted.mongo is base
    assert adopted.collection_name == "sessions"


def test_a_third_party_store_keeps_the_layout_through_with_format() -> None:
    class Shared:
        def with_format(self, record_format: ExpressFormat) -> Any:
            self.format = record_format
            return self

    fmt = express_format()
    store = Shared()
    assert adopt_store(store, fmt) is store and store.format is fmt


@pytest.mark.parametrize(
    ("store", "message"),
    [(MemoryStore(), "RedisStore \\(connect-redis\\) or MongoStore"), (CookieStore(), "cookie-session")],
)
def test_stores_node_cannot_share_are_refused_at_start_up(store: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        adopt_store(store, express_format())


def test_base_stores_never_load_their_express_twins() -> None:
    code = (
        "import sys, asyncio\n"
        "from coatcheck.stores import RedisStore, SQLiteStore\n"
        "import coatcheck.stores.redis, coatcheck.stores.compat\n"
        "assert 'coatcheck.stores.express_redis' not in sys.modules\n"
        "assert 'coatcheck.stores.express_mongo' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
