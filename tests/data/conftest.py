"""What the pipeline tests share."""
import pytest

from jaxgen.data import pipeline


@pytest.fixture
def fresh_data_dir(monkeypatch, tmp_path):
    """A test of its own default data dir and an empty load cache (used by the modules that mark
    themselves with it; the other data tests share the suite's built datasets)."""
    monkeypatch.setenv("JAXGEN_DATA_DIR", str(tmp_path / "datasets"))
    pipeline.clear_cache()
    yield
    pipeline.clear_cache()
