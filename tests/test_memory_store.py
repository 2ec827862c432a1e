from coatcheck.stores import MemoryStore
from coatcheck.testing import StoreConformance


class TestMemoryStoreConformance(StoreConformance):
    async def make_store(self) -> MemoryStore:
        return MemoryStore()
