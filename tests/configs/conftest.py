"""What the reference-config tests share: catalog datasets served by tfds.testing.mock_data."""
import pytest
import tensorflow_datasets as tfds

from jaxgen import data


@pytest.fixture
def mock_tfds(request):
    """Catalog datasets served by tfds.testing.mock_data (random examples with the real features;
    the test module's MOCK_EXAMPLES per split), kept out of the pipeline's load cache for the other
    tests."""
    data.clear_cache()
    with tfds.testing.mock_data(num_examples=request.module.MOCK_EXAMPLES):
        yield
    data.clear_cache()
