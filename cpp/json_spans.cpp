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

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
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

// p[i] is a quote: the offset just past the closing quote, or kFail. A quote after an odd
// run of backslashes is escaped (each backslash escapes the next byte, as in the parser;
// the run cannot reach back past the opening quote).
size_t skip_string(const uint8_t* p, size_t n, size_t i) {
  for (++i; i < n;) {
    const void* found = std::memchr(p + i, '"', n - i);
    if (found == nullptr) return kFail;
    size_t q = static_cast<size_t>(static_cast<const uint8_t*>(found) - p);
    size_t b = q;
    while (p[b - 1] == '\\') --b;
    if ((q - b) % 2 == 0) return q + 1;
    i = q + 1;
  }
  return kFail;
}

// Bytes the bracket scan stops at; everything else inside a value is the parser's business.
const std::array<bool, 256> kStructural = [] {
  std::array<bool, 256> t{};
  for (unsigned char c : std::string("\"{}[]")) t[c] = true;
  return t;
}();

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
    while (i < n && !kStructural[p[i]]) ++i;
    if (i == n) break;
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

using Spans = std::vector<size_t>;

// The object at p[start] (after whitespace) into out: [end, then key_start, key_end,
// value_start, value_end per member], end just past the closing brace; false when it is
// not one. The object value of the member whose key text is expand (quotes included) is
// scanned the same way into inner (one pass over its bytes, not two).
bool object_spans(const uint8_t* p, size_t n, size_t start, Spans& out, const std::string& expand,
                  std::optional<Spans>& inner) {
  out.assign(1, 0);
  size_t i = skip_ws(p, n, start);
  if (i >= n || p[i] != '{') return false;
  i = skip_ws(p, n, i + 1);
  if (i < n && p[i] == '}') {
    out[0] = i + 1;
    return true;
  }
  while (i < n) {
    if (p[i] != '"') return false;
    size_t key_end = skip_string(p, n, i);
    if (key_end == kFail) return false;
    size_t colon = skip_ws(p, n, key_end);
    if (colon >= n || p[colon] != ':') return false;
    size_t value = skip_ws(p, n, colon + 1);
    if (value >= n) return false;
    size_t value_end;
    if (!expand.empty() && p[value] == '{' && key_end - i == expand.size() &&
        std::memcmp(p + i, expand.data(), expand.size()) == 0) {
      Spans members;
      std::optional<Spans> none;
      if (!object_spans(p, n, value, members, std::string(), none)) return false;
      value_end = members[0];
      inner = std::move(members);
    } else {
      value_end = skip_value(p, n, value);
      if (value_end == kFail) return false;
    }
    out.insert(out.end(), {i, key_end, value, value_end});
    i = skip_ws(p, n, value_end);
    if (i >= n) return false;
    if (p[i] == '}') {
      out[0] = i + 1;
      return true;
    }
    if (p[i] != ',') return false;
    i = skip_ws(p, n, i + 1);
  }
  return false;
}

}  // namespace

void register_json_spans(py::module_& m) {
  m.def(
      "json_object_spans",
      [](const py::buffer& data, size_t start, const py::bytes& expand) -> py::object {
        py::buffer_info b = data.request();
        if (b.ndim != 1 || b.itemsize != 1 || b.strides[0] != 1)
          throw py::value_error("json_object_spans needs contiguous bytes");
        size_t n = static_cast<size_t>(b.size);
        const uint8_t* p = static_cast<const uint8_t*>(b.ptr);
        std::string key = expand;
        Spans out;
        std::optional<Spans> inner;
        bool ok;
        {
          py::gil_scoped_release release;
          ok = start <= n && object_spans(p, n, start, out, key, inner);
        }
        if (!ok) return py::none();
        return py::make_tuple(out, inner ? py::cast(*inner) : py::object(py::none()));
      },
      py::arg("data"), py::arg("start"), py::arg("expand") = py::bytes(),
      "Spans of the members of the JSON object at data[start:] (after whitespace), as (spans, "
      "inner): spans is [end, then key_start, key_end, value_start, value_end per member]; inner "
      "the same for the object value of the member whose key text (quotes included) is expand, "
      "or None. None when the text there is not an object whose strings and brackets close.");
}

}  // namespace dicube
