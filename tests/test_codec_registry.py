"""A new frame codec is one module plus one registry line: a test codec (id 250, raw
little-endian samples, defined here only) is saved, loaded, partly loaded and served as
DICOM with no edit to dicube.core.io, the reader or the streaming reader."""
from __future__ import annotations

import io
import types

import numpy as np
import pydicom
import pytest

import dicube
from dicube.codecs import registry
from dicube.exceptions import CodecError, DataConsistencyError, InvalidCubeFileError
from dicube.storage.reader import DcbsReader


def _raw_codec():
    def encode(volume, bits_stored, num_threads):
        le = np.ascontiguousarray(volume, volume.dtype.newbyteorder("<"))
        return [le[i].tobytes() for i in range(len(le))], volume.dtype.itemsize * 8

    def decode(buffer, offsets, lengths, out, *, crcs=None, num_threads=None, verify=True):
        mv = memoryview(buffer)
        for k, (o, n) in enumerate(zip(np.asarray(offsets).tolist(), np.asarray(lengths).tolist())):
            if n != out[k].nbytes:
                raise CodecError(f"frame {k} holds {n} bytes, expected {out[k].nbytes}")
            out[k] = np.frombuffer(mv[o:o + n], out.dtype.newbyteorder("<")).reshape(out.shape[1:])

    return types.SimpleNamespace(
        CODEC_ID=250, NAME="raw-le", SAVE_NAME="raw-le", FALLBACK=None, CHECKS_CRCS=False,
        encode=encode, decode=decode, decode_file=None, header=None,
        transfer_syntax=lambda facts: None)


@pytest.fixture
def raw_codec():
    codec = _raw_codec()
    registry.register(codec)
    yield codec
    registry.unregister(codec.CODEC_ID)


def test_a_registered_codec_saves_loads_and_streams(raw_codec, sample_10, tmp_path):
    image = dicube.load_from_dicom_folder(sample_10)
    path = tmp_path / "raw.dcbs"
    size = dicube.save(image, path, codec="raw-le")
    assert size > image.raw_image.nbytes  # stored uncompressed
    with DcbsReader(path) as r:
        assert r.frame_codec == 250
    back = dicube.load(path)
    np.testing.assert_array_equal(back.raw_image, image.raw_image)
    part = dicube.load(path, frames=[7, 2])
    np.testing.assert_array_equal(part.raw_image, image.raw_image[[7, 2]])
    with dicube.DcbStreamingReader(path) as stream:
        data = stream.get_dicom_for_frame(3)  # not a DICOM codestream: served native
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    np.testing.assert_array_equal(ds.pixel_array, image.raw_image[3])


def test_a_registered_codec_checks_frame_crcs_before_decoding(raw_codec, sample_10, tmp_path):
    path = tmp_path / "raw.dcbs"
    dicube.save(dicube.load_from_dicom_folder(sample_10), path, codec="raw-le")
    with DcbsReader(path) as r:  # flip one byte of frame 4 (its CRC-32C no longer matches)
        at = r.layout.header.frames_offset + int(r.layout.index[4]["offset"]) + 10
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(dicube.exceptions.CorruptFileError, match="checksum mismatch in frame 4"):
        dicube.load(path)


def test_unregistered_codec_ids_and_names_are_refused(sample_10, tmp_path):
    path = tmp_path / "raw.dcbs"
    with pytest.raises(DataConsistencyError, match=r"unknown frame codec 'raw-le' \(use one of "
                                                   r"\('htj2k', 'zstd'\)\)"):
        dicube.save(dicube.load_from_dicom_folder(sample_10), path, codec="raw-le")
    codec = _raw_codec()
    registry.register(codec)
    try:
        dicube.save(dicube.load_from_dicom_folder(sample_10), path, codec="raw-le")
        with pytest.raises(ValueError, match="already registered"):
            registry.register(codec)
    finally:
        registry.unregister(250)
    with pytest.raises(InvalidCubeFileError, match="inconsistent header: frame codec 250"):
        dicube.load(path)
    assert registry.save_names() == ("htj2k", "zstd")
