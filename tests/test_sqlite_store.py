import pytest

from coatcheck.stores import SQLiteStore
from coatcheck.testing import StoreConformance


class TestSQLiteStoreConformance(StoreConformance):
    @pytest.fixture(autouse=True)
    def _db_path(self, tmp_path):
        self.path = tmp_path / "sessions.db"

    async def make_store(self) -> SQLiteStore:
        return SQLiteStore(self.path)
