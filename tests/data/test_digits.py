"""The `digits` TFDS builder writes exactly `digits_arrays`, readable without TensorFlow."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgen.data.digits import NUM_LEVELS, Digits, digits_arrays


@pytest.fixture(scope="module")
def builder(tmp_path_factory):
    b = Digits(data_dir=str(tmp_path_factory.mktemp("tfds")), file_format="array_record")
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return b


def test_split_rule():
    train, test = digits_arrays("train"), digits_arrays("test")
    assert train[0].shape == (1437, 8, 8, 1) and test[0].shape == (360, 8, 8, 1)
    assert train[0].dtype == np.uint8 and train[1].dtype == np.int64
    assert train[0].max() == NUM_LEVELS - 1 and set(np.unique(test[1])) == set(range(10))
    with pytest.raises(ValueError, match="splits"):
        digits_arrays("validation")


@pytest.mark.parametrize("split", ["train", "test"])
def test_builder_round_trips_digits_arrays(builder, split):
    images, labels = digits_arrays(split)
    source = tfds.data_source("digits", split=split, data_dir=builder.data_dir_root)
    assert len(source) == len(labels) == builder.info.splits[split].num_examples
    got = [source[i] for i in range(len(source))]
    assert np.array_equal(np.stack([g["image"] for g in got]), images)
    assert np.array_equal(np.asarray([g["label"] for g in got]), labels)


def test_builder_info(builder):
    features = builder.info.features
    assert features["label"].num_classes == 10
    assert features["image"].shape == (8, 8, 1) and features["image"].np_dtype == np.uint8
    assert builder.info.supervised_keys == ("image", "label")
    assert str(builder.info.file_format.value) == "array_record"


def test_features_encode_and_decode_without_tensorflow(builder):
    """Serialize and deserialize one record on TFDS's numpy path (TensorFlow is not installed in
    the dev environment, so this fails if either step needed it)."""
    from tensorflow_datasets.core import example_serializer

    features = builder.info.features
    images, labels = digits_arrays("test")
    encoded = features.encode_example({"image": images[7], "label": labels[7]})
    serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
    decoded = features.deserialize_example_np(serializer.serialize_example(encoded))
    assert np.array_equal(decoded["image"], images[7]) and decoded["label"] == labels[7]
