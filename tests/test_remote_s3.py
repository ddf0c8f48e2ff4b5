"""Reading .dcbs objects by s3:// URL from moto's S3 server on loopback: settings from the
AWS_* environment or from ``storage_options``; requests counted by our sources."""
from __future__ import annotations

import numpy as np
import pytest

import dicube
from dicube.data import DcbsDataset
from dicube.exceptions import CubeFileNotFoundError, SourceError
from dicube.storage.reader import DcbsReader
from dicube.storage.sources import REMOTE_FIRST_READ, TransferStats
from preview_servers import s3_env, start_moto  # noqa: F401  (s3_env: a fixture)


@pytest.fixture(scope="module")
def moto(tmp_path_factory, dcbs_samples):
    server = start_moto(tmp_path_factory.mktemp("moto"))
    try:
        server.create_bucket("cubes")
        import obstore

        store = server.store("cubes")
        data = dcbs_samples["sample_10"].read_bytes()
        for key in ("ct/a.dcbs", "ct/sub/b.dcbs", "other/c.dcbs"):
            obstore.put(store, key, data)
        obstore.put(store, "ct/readme.txt", b"not a cube")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ref(dcbs_samples):
    return dicube.load(dcbs_samples["sample_10"])


def test_load_from_s3_equals_local(s3_env, ref, dcbs_samples):
    stats = TransferStats()
    img = dicube.load("s3://cubes/ct/a.dcbs", stats=stats)
    assert np.array_equal(img.raw_image, ref.raw_image)
    assert img.dicom_meta.to_json() == ref.dicom_meta.to_json()
    assert stats.requests == 2 and stats.bytes == dcbs_samples["sample_10"].stat().st_size
    stats = TransferStats()
    assert dicube.load_meta("s3://cubes/ct/a.dcbs", stats=stats).to_json() == ref.dicom_meta.to_json()
    assert stats.requests == 1 and stats.bytes == REMOTE_FIRST_READ


def test_selected_frames_from_s3_in_one_request(s3_env, ref):
    with DcbsReader("s3://cubes/ct/a.dcbs") as r:
        got = r.read_frames(slice(4, 9))
        need = int(r.layout.index["length"][4:9].sum())
        assert r.stats.requests == 2 and r.stats.bytes == REMOTE_FIRST_READ + need
    assert np.array_equal(got, ref.raw_image[4:9])


def test_storage_options_instead_of_environment(moto, monkeypatch, ref):
    for k in list(moto.env) + ["AWS_DEFAULT_REGION", "AWS_PROFILE"]:
        monkeypatch.delenv(k, raising=False)
    opts = {"endpoint": moto.endpoint, "access_key_id": "testing",
            "secret_access_key": "testing", "region": "us-east-1"}
    img = dicube.load("s3://cubes/ct/a.dcbs", frames=[1], storage_options=opts)
    assert np.array_equal(img.raw_image, ref.raw_image[[1]])
    with pytest.raises(SourceError, match="invalid storage options"):
        dicube.load("s3://cubes/ct/a.dcbs", storage_options={"no_such_setting": 1})


def test_dataset_from_s3_prefix(s3_env, ref):
    ds = DcbsDataset.from_folder("s3://cubes/ct", mode="slice", random=False)
    assert ds.paths == ["s3://cubes/ct/a.dcbs", "s3://cubes/ct/sub/b.dcbs"]
    s = ds[13]
    assert s.path == "s3://cubes/ct/sub/b.dcbs" and s.frames == (3, 4)
    assert np.array_equal(s.image, ref.raw_image[3])


def test_missing_object_is_a_typed_error_naming_it(s3_env):
    with pytest.raises(CubeFileNotFoundError, match="s3://cubes/ct/nope.dcbs"):
        dicube.load("s3://cubes/ct/nope.dcbs")
