// Python bindings of dicube's native core: HTJ2K codec (OpenJPH) and CRC-32C.
// Thin by design: argument checking and convenience live in dicube/codecs/jph.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>
#include <thread>

#include <unistd.h>

#include <ojph_version.h>

#include "assert_guard.hpp"
#include "buffers.hpp"
#include "build_info.hpp"
#include "codestream.hpp"
#include "crc32c.hpp"
#include "errors.hpp"
#include "isolate.hpp"
#include "jph_codec.hpp"
#include "json_spans.hpp"
#include "parallel.hpp"
#include "profile.hpp"
#include "regions.hpp"
#include "to_xyz.hpp"
#include "zstd_planes.hpp"

namespace py = pybind11;
using namespace dicube;

namespace {

SampleType sample_type(const py::dtype& dt) {
  char kind = dt.kind();
  auto size = dt.itemsize();
  if (kind == 'u' && size == 1) return SampleType::U8;
  if (kind == 'i' && size == 1) return SampleType::I8;
  if (kind == 'u' && size == 2) return SampleType::U16;
  if (kind == 'i' && size == 2) return SampleType::I16;
  if (kind == 'u' && size == 4) return SampleType::U32;
  if (kind == 'i' && size == 4) return SampleType::I32;
  throw CodecFailure("unsupported sample type " + std::string(py::str(dt)) +
                     " (use uint8, int8, uint16, int16, uint32 or int32)");
}

// View of an array of images: `lead` leading axes (0 for one image, 1 for a batch),
// then rows, cols and an optional samples axis. Must be C-contiguous and native-endian.
ImageView image_view(const py::array& a, int lead, bool writable, size_t& count) {
  if (!(a.flags() & py::array::c_style)) throw CodecFailure("array must be C-contiguous");
  if (writable && !a.writeable()) throw CodecFailure("output array is read-only");
  if (a.dtype().byteorder() == '>') throw CodecFailure("big-endian arrays are not supported");
  int nd = static_cast<int>(a.ndim()) - lead;
  if (nd != 2 && nd != 3) throw CodecFailure("expected images of shape (rows, cols) or (rows, cols, samples)");
  ImageView v;
  v.data = const_cast<void*>(a.data());
  v.type = sample_type(a.dtype());
  v.rows = static_cast<uint32_t>(a.shape(lead));
  v.cols = static_cast<uint32_t>(a.shape(lead + 1));
  v.comps = nd == 3 ? static_cast<uint32_t>(a.shape(lead + 2)) : 1;
  count = lead ? static_cast<size_t>(a.shape(0)) : 1;
  return v;
}

unsigned resolve_threads(int n) {
  if (n > 0) return static_cast<unsigned>(n);
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? hw : 1;
}

EncodeOptions encode_options(uint32_t bits_stored, uint32_t levels, uint32_t bw, uint32_t bh,
                             const std::string& progression, bool color_transform, bool tlm, bool checksum) {
  EncodeOptions o;
  o.bits_stored = bits_stored;
  o.levels = levels;
  o.block_width = bw;
  o.block_height = bh;
  o.progression = progression;
  o.color_transform = color_transform;
  o.tlm = tlm;
  o.checksum = checksum;
  return o;
}

// Run one frame's codec work; every failure becomes a CodecFailure naming the frame.
// OpenJPH also throws plain std::runtime_error from some paths, whatever its handlers do.
Span span_of(const py::buffer_info& b) {
  return Span{static_cast<const uint8_t*>(b.ptr), static_cast<size_t>(b.size * b.itemsize)};
}

// Whether any codestream lacks dicube's checksum, i.e. reaches OpenJPH unverified.
ImageView output_view(const py::array& out, size_t frames) {
  size_t count;
  ImageView v = image_view(out, 1, true, count);
  if (count != frames)
    throw CodecFailure("output holds " + std::to_string(count) + " frames, " + std::to_string(frames) +
                       " codestreams given");
  return v;
}

const uint32_t* crc_data(const std::optional<py::array_t<uint32_t, py::array::c_style>>& crcs, size_t n) {
  if (!crcs) return nullptr;
  if (static_cast<size_t>(crcs->size()) != n) throw CodecFailure("crcs and frames differ in count");
  return crcs->data();
}

// Encode every image of a (frames, rows, cols[, samples]) volume on worker threads.
template <typename Encode>
py::list encode_each(const py::array& volume, int threads, Encode encode) {
  size_t count;
  ImageView v = image_view(volume, 1, false, count);
  std::vector<std::string> out(count);
  {
    py::gil_scoped_release release;
    parallel_for(count, resolve_threads(threads), [&](size_t i) {
      for_frame(i, [&] { out[i] = encode(frame_at(v, i)); });
    });
  }
  py::list result(count);
  for (size_t i = 0; i < count; ++i) result[i] = py::bytes(out[i]);
  return result;
}

FrameCodec frame_codec(int codec) {
  if (codec != static_cast<int>(FrameCodec::HTJ2K) && codec != static_cast<int>(FrameCodec::ZSTD_PLANES))
    throw CodecFailure("unknown frame codec " + std::to_string(codec));
  return static_cast<FrameCodec>(codec);
}

std::vector<Region> regions_of(const py::array_t<uint64_t, py::array::c_style>& offsets,
                               const py::array_t<uint64_t, py::array::c_style>& lengths) {
  if (offsets.size() != lengths.size()) throw CodecFailure("offsets and lengths differ in count");
  std::vector<Region> r(static_cast<size_t>(offsets.size()));
  for (size_t i = 0; i < r.size(); ++i) r[i] = Region{offsets.data()[i], lengths.data()[i]};
  return r;
}

py::dict header_dict(const HeaderInfo& h) {
  static const char* orders[] = {"LRCP", "RLCP", "RPCL", "PCRL", "CPRL"};
  py::dict d;
  d["rows"] = h.height;
  d["columns"] = h.width;
  d["components"] = h.components.size();
  d["bits_stored"] = h.components[0].bit_depth;
  d["signed"] = h.components[0].is_signed;
  d["uniform_components"] = std::all_of(h.components.begin(), h.components.end(), [&](const ComponentInfo& c) {
    return c.bit_depth == h.components[0].bit_depth && c.is_signed == h.components[0].is_signed &&
           c.dx == 1 && c.dy == 1;
  });
  d["tiles"] = h.num_tiles;
  d["levels"] = h.levels;
  d["block_size"] = py::make_tuple(h.block_width, h.block_height);
  d["block_style"] = h.block_style;
  d["progression"] = orders[h.progression];
  d["layers"] = h.layers;
  d["color_transform"] = h.color_transform;
  d["reversible"] = h.reversible;
  d["high_throughput"] = h.has_cap && (h.rsiz & 0x4000) != 0;
  d["tlm"] = h.has_tlm;
  d["tlm_tile_parts"] = h.tlm_tile_parts;
  d["checksum"] = h.has_checksum ? py::object(py::int_(h.checksum)) : py::object(py::none());
  d["header_length"] = h.header_length;
  return d;
}

// A C-contiguous array on a reusable block (buffers.hpp), given back when the array goes.
struct HeldBlock {
  void* ptr;
  size_t capacity;
  long pid;
};

py::array reusable_empty(const std::vector<py::ssize_t>& shape, const py::dtype& dt) {
  size_t bytes = static_cast<size_t>(dt.itemsize());
  for (py::ssize_t n : shape) {
    if (n < 0) throw py::value_error("negative dimension");
    if (n && bytes > SIZE_MAX / static_cast<size_t>(n)) throw py::value_error("array is too big");
    bytes *= static_cast<size_t>(n);
  }
  size_t capacity = 0;
  void* p = nullptr;
  try {
    p = take_block(std::max<size_t>(bytes, 1), capacity);
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
    throw py::error_already_set();
  }
  auto* held = new HeldBlock{p, capacity, static_cast<long>(getpid())};
  py::capsule owner(held, [](void* v) {
    auto* h = static_cast<HeldBlock*>(v);
    give_block(h->ptr, h->capacity, h->pid);
    delete h;
  });
  return py::array(dt, shape, p, owner);
}

const void* rescale_data(const std::optional<py::array>& a, const py::array& out, size_t nz, const char* what) {
  if (!a) return nullptr;
  if (a->ndim() != 1 || static_cast<size_t>(a->shape(0)) != nz || !a->dtype().is(out.dtype()) ||
      !(a->flags() & py::array::c_style))
    throw py::value_error(std::string(what) + " must be a contiguous 1-D array of the output type, one value per slice");
  return a->data();
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "dicube's native core: lossless HTJ2K through OpenJPH, CRC-32C.";
  install_openjph_handlers();

  // Handles, not objects: nothing to release after the interpreter has finalized.
  py::module_ exceptions = py::module_::import("dicube.exceptions");
  static py::handle codec_error = py::object(exceptions.attr("CodecError")).release();
  static py::handle corrupt_error = py::object(exceptions.attr("CorruptFileError")).release();
  static py::handle invalid_error = py::object(exceptions.attr("InvalidCubeFileError")).release();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ChecksumFailure& e) {
      py::object exc = corrupt_error(py::str(e.what()));
      exc.attr("frame") = e.frame;
      PyErr_SetObject(corrupt_error.ptr(), exc.ptr());
    } catch (const ReadFailure& e) {
      PyErr_SetObject(invalid_error.ptr(), py::str(e.what()).ptr());
    } catch (const CodecFailure& e) {
      PyErr_SetObject(codec_error.ptr(), py::str(e.what()).ptr());
    } catch (const std::bad_alloc&) {
      PyErr_SetObject(codec_error.ptr(), py::str("out of memory while coding an image").ptr());
    }
  });

  m.attr("openjph_version") = DICUBE_OJPH_VERSION;
  m.attr("openjph_library") = DICUBE_OJPH_LIBRARY;
  m.attr("openjph_loaded_library") = openjph_loaded_library();
  int level = openjph_cpu_ext_level();
  m.attr("cpu_ext_level") = level < 0 ? py::object(py::none()) : py::object(py::int_(level));
#ifdef DICUBE_OJPH_HAS_TLM
  m.attr("has_tlm") = true;
#else
  m.attr("has_tlm") = false;
#endif
  m.attr("max_bits_stored") = max_bits_stored();
  static const char* guard_names[] = {"no-asserts", "installed", "failed"};
  m.attr("assert_guard") = guard_names[static_cast<int>(assert_guard())];

  m.def(
      "encode",
      [](const py::array& image, uint32_t bits_stored, uint32_t levels, uint32_t bw, uint32_t bh,
         const std::string& progression, bool color_transform, bool tlm, bool checksum) {
        size_t count;
        ImageView v = image_view(image, 0, false, count);
        EncodeOptions o = encode_options(bits_stored, levels, bw, bh, progression, color_transform, tlm, checksum);
        std::string out;
        {
          py::gil_scoped_release release;
          clear_openjph_message();
          try {
            out = encode_image(v, o);
          } catch (const CodecFailure&) {
            throw;
          } catch (const std::exception& e) {
            throw CodecFailure(describe_openjph_failure(e));
          }
        }
        return py::bytes(out);
      },
      py::arg("image"), py::arg("bits_stored"), py::arg("levels"), py::arg("block_width"),
      py::arg("block_height"), py::arg("progression"), py::arg("color_transform"), py::arg("tlm"),
      py::arg("checksum"));

  m.def(
      "encode_batch",
      [](const py::array& volume, uint32_t bits_stored, uint32_t levels, uint32_t bw, uint32_t bh,
         const std::string& progression, bool color_transform, bool tlm, bool checksum, int threads) {
        EncodeOptions o = encode_options(bits_stored, levels, bw, bh, progression, color_transform, tlm, checksum);
        return encode_each(volume, threads, [&](const ImageView& f) { return encode_image(f, o); });
      },
      py::arg("volume"), py::arg("bits_stored"), py::arg("levels"), py::arg("block_width"),
      py::arg("block_height"), py::arg("progression"), py::arg("color_transform"), py::arg("tlm"),
      py::arg("checksum"), py::arg("num_threads"));

  m.def(
      "encode_planes_batch",
      [](const py::array& volume, int level, int threads) {
        return encode_each(volume, threads, [&](const ImageView& f) { return encode_planes(f, level); });
      },
      py::arg("volume"), py::arg("level"), py::arg("num_threads"),
      "Frames as zstd-compressed byte planes (the .dcbs 'zstd' frame codec).");

  m.def(
      "header",
      [](const py::buffer& data) {
        py::buffer_info b = data.request();
        Span s = span_of(b);
        return header_dict(parse_main_header(s.data, s.size));
      },
      py::arg("data"), "Main-header facts of a codestream (raises CodecError when malformed).");

  m.def(
      "profile_violation",
      [](const py::buffer& data) -> std::optional<std::string> {
        py::buffer_info b = data.request();
        Span s = span_of(b);
        std::string why = profile_violation(s.data, s.size);
        if (why.empty()) return std::nullopt;
        return why;
      },
      py::arg("data"), "None when the codestream is inside dicube's writer profile, else why not.");

  m.def(
      "reduced_size",
      [](const py::buffer& data, uint32_t skip) {
        py::buffer_info b = data.request();
        Span s = span_of(b);
        uint32_t rows, cols;
        reduced_size(parse_main_header(s.data, s.size), skip, rows, cols);
        return py::make_tuple(rows, cols);
      },
      py::arg("data"), py::arg("skip_levels"));

  m.def(
      "decode_batch",
      [](const py::sequence& codestreams, const py::array& out, uint32_t skip, bool verify, bool resilient,
         int threads, int isolate) {
        std::vector<py::buffer_info> infos;
        infos.reserve(codestreams.size());
        for (auto item : codestreams) infos.push_back(py::reinterpret_borrow<py::buffer>(item).request());
        std::vector<Span> spans;
        for (auto& b : infos) spans.push_back(span_of(b));
        DecodeOptions o{skip, verify, resilient};
        ImageView v = output_view(out, spans.size());
        py::gil_scoped_release release;
        decode_spans(FrameCodec::HTJ2K, spans, nullptr, v, o, resolve_threads(threads), isolate);
      },
      py::arg("codestreams"), py::arg("out"), py::arg("skip_levels"), py::arg("verify"), py::arg("resilient"),
      py::arg("num_threads"), py::arg("isolate"));

  m.def(
      "decode_regions",
      [](const py::buffer& buffer, const py::array_t<uint64_t, py::array::c_style>& offsets,
         const py::array_t<uint64_t, py::array::c_style>& lengths,
         const std::optional<py::array_t<uint32_t, py::array::c_style>>& crcs, const py::array& out, uint32_t skip,
         bool verify, bool resilient, int threads, int codec) {
        py::buffer_info b = buffer.request();
        Span whole = span_of(b);
        std::vector<Span> spans;
        for (const Region& r : regions_of(offsets, lengths)) {
          if (r.offset > whole.size || r.length > whole.size - r.offset)
            throw CodecFailure("frame " + std::to_string(spans.size()) + " lies outside the buffer");
          spans.push_back(Span{whole.data + r.offset, static_cast<size_t>(r.length)});
        }
        const uint32_t* c = crc_data(crcs, spans.size());
        ImageView v = output_view(out, spans.size());
        DecodeOptions o{skip, verify, resilient};
        py::gil_scoped_release release;
        decode_spans(frame_codec(codec), spans, c, v, o, resolve_threads(threads), 2);
      },
      py::arg("buffer"), py::arg("offsets"), py::arg("lengths"), py::arg("crcs"), py::arg("out"),
      py::arg("skip_levels"), py::arg("verify"), py::arg("resilient"), py::arg("num_threads"), py::arg("codec"),
      "Decode codestreams stored at byte ranges of one buffer into out (frames, rows, cols[, samples]).");

  m.def(
      "decode_file_regions",
      [](int fd, uint64_t base, const py::array_t<uint64_t, py::array::c_style>& offsets,
         const py::array_t<uint64_t, py::array::c_style>& lengths,
         const std::optional<py::array_t<uint32_t, py::array::c_style>>& crcs, const py::array& out, uint32_t skip,
         int threads, int codec) {
        std::vector<Region> regions = regions_of(offsets, lengths);
        const uint32_t* c = crc_data(crcs, regions.size());
        ImageView v = output_view(out, regions.size());
        DecodeOptions o{skip, true, false};
        py::gil_scoped_release release;
        return decode_file_regions(frame_codec(codec), fd, base, regions, c, v, o, resolve_threads(threads));
      },
      py::arg("fd"), py::arg("base"), py::arg("offsets"), py::arg("lengths"), py::arg("crcs"), py::arg("out"),
      py::arg("skip_levels"), py::arg("num_threads"), py::arg("codec"),
      "Read (pread) and decode codestreams at byte ranges base+offset of an open file; False when one "
      "is outside dicube's writer profile (decode those from a buffer instead, which isolates them).");

  m.def(
      "crc32c",
      [](const py::buffer& data, uint32_t crc) {
        py::buffer_info b = data.request();
        Span s = span_of(b);
        py::gil_scoped_release release;
        return crc32c(s.data, s.size, crc);
      },
      py::arg("data"), py::arg("crc") = 0, "CRC-32C of a bytes-like object, continuing from crc.");

  register_json_spans(m);

  m.def("empty", &reusable_empty, py::arg("shape"), py::arg("dtype"),
        "An uninitialised C-contiguous array whose memory is reused within the process once "
        "freed (no page zeroing on first touch).");
  m.def("kept_bytes", &cached_bytes, "Bytes of freed arrays of empty() kept for reuse.");
  m.def("trim", &trim_blocks, "Release the memory kept for reuse by empty().");

  m.def(
      "to_xyz",
      [](const py::array& raw, py::array out, const std::optional<py::array>& slope,
         const std::optional<py::array>& inter, int threads) {
        if (raw.ndim() != 3 || out.ndim() != 3) throw py::value_error("to_xyz needs 3-D arrays");
        if (!(raw.flags() & py::array::c_style) || !(out.flags() & py::array::c_style) || !out.writeable())
          throw py::value_error("to_xyz needs C-contiguous arrays, the output writeable");
        if (raw.dtype().byteorder() == '>' || out.dtype().byteorder() == '>')
          throw py::value_error("big-endian arrays are not supported");
        const SampleType in = sample_type(raw.dtype());
        const char kind = out.dtype().kind();
        const auto size = out.dtype().itemsize();
        if (kind != 'f' || (size != 4 && size != 8)) throw py::value_error("to_xyz writes float32 or float64");
        const size_t nz = raw.shape(0), ny = raw.shape(1), nx = raw.shape(2);
        if (static_cast<size_t>(out.shape(0)) != nx || static_cast<size_t>(out.shape(1)) != ny ||
            static_cast<size_t>(out.shape(2)) != nz)
          throw py::value_error("output shape must be the input's reversed");
        const void* s = rescale_data(slope, out, nz, "slope");
        const void* b = rescale_data(inter, out, nz, "intercept");
        void* o = out.mutable_data();
        py::gil_scoped_release release;
        to_xyz(raw.data(), in, o, size == 4 ? RealType::F32 : RealType::F64, nz, ny, nx, s, b,
               resolve_threads(threads));
      },
      py::arg("raw"), py::arg("out"), py::arg("slope"), py::arg("intercept"), py::arg("num_threads"),
      "out[x, y, z] = raw[z, y, x] * slope[z] + intercept[z] (None: left out), in out's float type.");
}
