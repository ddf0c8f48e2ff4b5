// Member spans of a JSON object, found without building it: the scan behind dicube's lazy
// per-slice metadata (DicomMeta keeps each per-slice element as its JSON text until used).
//
// Why a scanner in C++: a span can only be trusted if strings and brackets are delimited
// exactly as a JSON parser delimits them, over the whole object (a value split in the wrong
// place can still parse, as another value). That takes one pass over every byte, which is
// a few lines here and too slow in Python. The scan checks only the structure it reports:
// strings (a backslash escapes the next byte), nesting of {} and [] (matched, at most
// kMaxDepth deep), and the object's own "key": value, ... syntax. Everything inside a
// value (numbers, literals, escapes, UTF-8, missing commas) is left to the parser that
// reads the span later. For valid JSON the spans are exactly the parser's members; for
// text the scan cannot delimit it returns None and the caller parses the whole document.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace py = pybind11;

namespace dicube {
namespace {

constexpr size_t kFail = SIZE_MAX;
// orjson's nesting limit: deeper text is refused by the parser anyway.
constexpr size_t kMaxDepth = 1024;

inline bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

inline size_t skip_ws(const uint8_t* p, size_t n, size_t i) {
  while (i < n && is_ws(p[i])) ++i;
  return i;
}

// p[i] is a quote: the offset just past the closing quote, or kFail.
size_t skip_string(const uint8_t* p, size_t n, size_t i) {
  for (++i; i < n; ++i) {
    uint8_t c = p[i];
    if (c == '\\') {
      ++i;  // the escaped byte, whatever it is (an invalid escape fails in the parser)
    } else if (c == '"') {
      return i + 1;
    }
  }
  return kFail;
}

// A value starting at p[i] (not whitespace): the offset just past it, or kFail.
size_t skip_value(const uint8_t* p, size_t n, size_t i) {
  uint8_t c = p[i];
  if (c == '"') return skip_string(p, n, i);
  if (c != '{' && c != '[') {  // a scalar: its extent (the parser checks the token)
    size_t j = i;
    while (j < n && !is_ws(p[j]) && p[j] != ',' && p[j] != '}' && p[j] != ']' && p[j] != '"' &&
           p[j] != ':' && p[j] != '{' && p[j] != '[')
      ++j;
    return j == i ? kFail : j;
  }
  std::vector<uint8_t> closers;
  while (i < n) {
    c = p[i];
    if (c == '"') {
      i = skip_string(p, n, i);
      if (i == kFail) return kFail;
      continue;
    }
    if (c == '{' || c == '[') {
      if (closers.size() == kMaxDepth) return kFail;
      closers.push_back(c == '{' ? '}' : ']');
    } else if (c == '}' || c == ']') {
      if (closers.empty() || closers.back() != c) return kFail;
      closers.pop_back();
      if (closers.empty()) return i + 1;
    }
    ++i;
  }
  return kFail;
}

// The object at p[start] (after whitespace): [end, then key_start, key_end, value_start,
// value_end per member], end just past the closing brace; nullopt when it is not one.
std::optional<std::vector<size_t>> object_spans(const uint8_t* p, size_t n, size_t start) {
  std::vector<size_t> out{0};
  size_t i = skip_ws(p, n, start);
  if (i >= n || p[i] != '{') return std::nullopt;
  i = skip_ws(p, n, i + 1);
  if (i < n && p[i] == '}') {
    out[0] = i + 1;
    return out;
  }
  while (i < n) {
    if (p[i] != '"') return std::nullopt;
    size_t key_end = skip_string(p, n, i);
    if (key_end == kFail) return std::nullopt;
    size_t colon = skip_ws(p, n, key_end);
    if (colon >= n || p[colon] != ':') return std::nullopt;
    size_t value = skip_ws(p, n, colon + 1);
    if (value >= n) return std::nullopt;
    size_t value_end = skip_value(p, n, value);
    if (value_end == kFail) return std::nullopt;
    out.insert(out.end(), {i, key_end, value, value_end});
    i = skip_ws(p, n, value_end);
    if (i >= n) return std::nullopt;
    if (p[i] == '}') {
      out[0] = i + 1;
      return out;
    }
    if (p[i] != ',') return std::nullopt;
    i = skip_ws(p, n, i + 1);
  }
  return std::nullopt;
}

}  // namespace

void register_json_spans(py::module_& m) {
  m.def(
      "json_object_spans",
      [](const py::buffer& data, size_t start) -> std::optional<std::vector<size_t>> {
        py::buffer_info b = data.request();
        if (b.ndim != 1 || b.itemsize != 1 || (b.ndim == 1 && b.strides[0] != 1))
          throw py::value_error("json_object_spans needs contiguous bytes");
        size_t n = static_cast<size_t>(b.size);
        if (start > n) return std::nullopt;
        const uint8_t* p = static_cast<const uint8_t*>(b.ptr);
        py::gil_scoped_release release;
        return object_spans(p, n, start);
      },
      py::arg("data"), py::arg("start"),
      "Spans of the members of the JSON object at data[start:] (after whitespace): [end, then "
      "key_start, key_end, value_start, value_end per member], or None when the text there is "
      "not an object whose strings and brackets close.");
}

}  // namespace dicube
