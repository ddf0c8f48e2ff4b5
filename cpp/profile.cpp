#include "profile.hpp"

#include <vector>

#include "jph_codec.hpp"

namespace dicube {
namespace {

constexpr uint16_t SOC = 0xFF4F, SIZ = 0xFF51, CAP = 0xFF50, COD = 0xFF52, QCD = 0xFF5C, TLM = 0xFF55,
                   COM = 0xFF64, SOT = 0xFF90, SOD = 0xFF93, EOC = 0xFFD9;

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

struct Walk {
  uint32_t width = 0, height = 0, depth = 0, comps = 0, levels = 0;
  bool mct = false, siz = false, cap = false, cod = false, qcd = false;
  std::vector<uint32_t> tlm_lengths;  // Ptlm of every TLM entry, in order
};

std::string hex(uint16_t m) {
  static const char d[] = "0123456789ABCDEF";
  return std::string("0x") + d[m >> 12] + d[(m >> 8) & 15] + d[(m >> 4) & 15] + d[m & 15];
}

std::string check_siz(const uint8_t* s, size_t len, Walk& w) {
  if (len < 38) return "short SIZ";
  w.comps = be16(s + 34);
  if (w.comps != 1 && w.comps != 3) return "SIZ with " + std::to_string(w.comps) + " components";
  if (len != 36u + 3u * w.comps) return "SIZ length";
  if (be16(s) != 0x4000) return "Rsiz is not plain HTJ2K";
  w.width = be32(s + 2);
  w.height = be32(s + 6);
  if (w.width == 0 || w.height == 0 || w.width > 65535 || w.height > 65535) return "image extent";
  if (be32(s + 10) || be32(s + 14) || be32(s + 26) || be32(s + 30)) return "image or tile offset";
  if (be32(s + 18) != w.width || be32(s + 22) != w.height) return "more than one tile";
  for (uint32_t c = 0; c < w.comps; ++c) {
    const uint8_t* q = s + 36 + 3 * c;
    if (q[0] != s[36]) return "components of different precision";
    if (q[1] != 1 || q[2] != 1) return "sub-sampled component";
  }
  w.depth = (s[36] & 0x7Fu) + 1;
  if (w.depth > max_bits_stored()) return "precision of " + std::to_string(w.depth) + " bits";
  w.siz = true;
  return {};
}

std::string check_cap(const uint8_t* s, size_t len, Walk& w) {
  // Pcap: Part 15 only; Ccap15: HT-only block coding, low 5 bits for the magnitude bound.
  if (w.cap || len != 6 || be32(s) != 0x00020000 || (be16(s + 4) & ~0x1Fu) != 0) return "CAP";
  w.cap = true;
  return {};
}

std::string check_cod(const uint8_t* s, size_t len, Walk& w) {
  if (w.cod || len != 10) return "COD length (precinct sizes?)";
  if (s[0] != 0) return "COD Scod (precincts, SOP or EPH)";
  if (s[1] > 4) return "progression order";
  if (be16(s + 2) != 1) return "more than one quality layer";
  if (s[4] > 1 || (s[4] == 1 && w.comps != 3)) return "colour transform";
  w.mct = s[4] == 1;
  w.levels = s[5];
  if (w.levels > max_safe_levels(w.width, w.height)) return std::to_string(w.levels) + " decomposition levels";
  if (s[6] > 8 || s[7] > 8 || s[6] + s[7] > 8) return "code-block size";
  if (s[8] != 0x40) return "code-block style is not plain HT";
  if (s[9] != 1) return "not the reversible 5/3 wavelet";
  w.cod = true;
  return {};
}

std::string check_qcd(const uint8_t* s, size_t len, Walk& w) {
  // Reversible: no quantisation, one guard bit, one exponent byte per sub-band. OpenJPH sets
  // each exponent to B + X, B = precision (+1 with the colour transform), X = 0..4 from the
  // wavelet's gains; bounding it keeps Kmax, the bit-planes a decoder reads, small.
  if (w.qcd || !w.cod) return "QCD missing its COD, or repeated";
  if (len != 2u + 3u * w.levels || s[0] != 0x20) return "QCD is not reversible with one guard bit";
  const uint32_t b = w.depth + (w.mct ? 1 : 0);
  for (size_t i = 1; i < len; ++i) {
    uint32_t e = s[i] >> 3;
    if ((s[i] & 7) || e < b || e > b + 5) return "QCD exponent";
  }
  w.qcd = true;
  return {};
}

std::string check_tlm(const uint8_t* s, size_t len, Walk& w) {
  if (len < 2) return "TLM";
  const uint32_t st = (s[1] >> 4) & 3, sp = (s[1] >> 6) & 1;
  if (st == 3 || (s[1] & 0x8F)) return "TLM Stlm";
  const size_t entry = st + (sp ? 4 : 2);
  if ((len - 2) % entry) return "TLM length";
  for (size_t p = 2; p < len; p += entry) {
    for (size_t k = 0; k < st; ++k)
      if (s[p + k]) return "TLM names a tile other than 0";
    w.tlm_lengths.push_back(sp ? be32(s + p + st) : be16(s + p + st));
  }
  return {};
}

std::string check_main(const uint8_t* data, size_t size, size_t& pos, Walk& w) {
  if (size < 4 || be16(data) != SOC || be16(data + 2) != SIZ) return "no SOC and SIZ";
  pos = 2;
  while (true) {
    if (pos + 4 > size) return "main header truncated";
    const uint16_t marker = be16(data + pos);
    if (marker == SOT) break;
    const size_t len = be16(data + pos + 2);
    if (len < 2 || pos + 2 + len > size) return "marker segment length";
    const uint8_t* s = data + pos + 4;
    std::string bad;
    if (marker == SIZ) bad = pos == 2 ? check_siz(s, len - 2, w) : "second SIZ";
    else if (!w.siz) bad = "SIZ not first";
    else if (marker == CAP) bad = check_cap(s, len - 2, w);
    else if (marker == COD) bad = check_cod(s, len - 2, w);
    else if (marker == QCD) bad = check_qcd(s, len - 2, w);
    else if (marker == TLM) bad = check_tlm(s, len - 2, w);
    else if (marker != COM) bad = "marker " + hex(marker) + " in the main header";
    if (!bad.empty()) return bad;
    pos += 2 + len;
  }
  if (!w.cap || !w.cod || !w.qcd) return "CAP, COD or QCD missing";
  return {};
}

// Tile-parts of the one tile: SOT (Lsot 10, Isot 0, TPsot 0, 1, ...) directly followed by
// SOD, each Psot ending where the next tile-part starts, the last one before EOC.
std::string check_tile_parts(const uint8_t* data, size_t size, size_t pos, const Walk& w) {
  if (size < pos + 2 || be16(data + size - 2) != EOC) return "no EOC at the end";
  const size_t end = size - 2;
  uint32_t count = 0, declared = 0;
  std::vector<uint32_t> lengths;
  while (pos < end) {
    if (pos + 14 > end || be16(data + pos) != SOT || be16(data + pos + 2) != 10) return "bad SOT";
    const uint32_t psot = be32(data + pos + 6);
    const uint32_t tpsot = data[pos + 10], tnsot = data[pos + 11];
    if (be16(data + pos + 4) != 0) return "tile index other than 0";
    if (tpsot != count) return "tile-parts out of sequence";
    if (count == 0) declared = tnsot;
    else if (tnsot != declared) return "inconsistent TNsot";
    if (be16(data + pos + 12) != SOD) return "marker in a tile-part header";
    const size_t len = psot ? psot : end - pos;
    if (len < 14 || len > end - pos) return "Psot";
    if (psot == 0 && pos + len != end) return "Psot";
    lengths.push_back(static_cast<uint32_t>(len));
    pos += len;
    ++count;
  }
  if (count == 0) return "no tile-part";
  if (declared != 0 && declared != count) return "TNsot does not match the tile-parts";
  if (!w.tlm_lengths.empty() && w.tlm_lengths != lengths) return "TLM does not match the tile-parts";
  return {};
}

}  // namespace

std::string profile_violation(const uint8_t* data, size_t size) {
  Walk w;
  size_t pos = 0;
  std::string bad = check_main(data, size, pos, w);
  if (bad.empty()) bad = check_tile_parts(data, size, pos, w);
  return bad;
}

}  // namespace dicube
