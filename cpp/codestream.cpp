#include "codestream.hpp"

#include <cstdio>
#include <cstring>

#include "crc32c.hpp"
#include "errors.hpp"

namespace dicube {
namespace {

using namespace marker;
constexpr char kChecksumTag[] = "dicube-crc32c:";  // followed by 8 hex digits
constexpr size_t kTagLen = sizeof(kChecksumTag) - 1;
// DICOM Rows/Columns are 16-bit; refusing larger extents also stops a corrupt SIZ
// from asking for gigabytes before any pixel is read.
constexpr uint32_t kMaxExtent = 65535;


[[noreturn]] void fail(const std::string& what) { throw CodecFailure("invalid codestream: " + what); }

void parse_siz(const uint8_t* s, size_t len, HeaderInfo& h) {
  if (len < 38) fail("SIZ segment too short");
  h.rsiz = be16(s);
  uint32_t xsiz = be32(s + 2), ysiz = be32(s + 6), xo = be32(s + 10), yo = be32(s + 14);
  uint32_t xt = be32(s + 18), yt = be32(s + 22), xto = be32(s + 26), yto = be32(s + 30);
  uint16_t csiz = be16(s + 34);
  if (xsiz <= xo || ysiz <= yo) fail("empty image extent in SIZ");
  h.width = xsiz - xo;
  h.height = ysiz - yo;
  if (h.width > kMaxExtent || h.height > kMaxExtent)
    fail("image extent " + std::to_string(h.width) + "x" + std::to_string(h.height) +
         " exceeds 65535");
  if (xt == 0 || yt == 0 || xto > xo || yto > yo || xto + xt <= xo || yto + yt <= yo)
    fail("bad tile grid in SIZ");
  h.tile_width = xt;
  h.tile_height = yt;
  uint64_t tx = (static_cast<uint64_t>(xsiz) - xto + xt - 1) / xt;
  uint64_t ty = (static_cast<uint64_t>(ysiz) - yto + yt - 1) / yt;
  if (tx * ty > 65535) fail("too many tiles in SIZ");
  h.num_tiles = static_cast<uint32_t>(tx * ty);
  if (csiz == 0 || csiz > 4) fail("unsupported number of components: " + std::to_string(csiz));
  if (len != 36u + 3u * csiz) fail("SIZ length does not match its component count");
  for (uint16_t c = 0; c < csiz; ++c) {
    const uint8_t* q = s + 36 + 3 * c;
    ComponentInfo ci;
    ci.bit_depth = (q[0] & 0x7F) + 1u;
    ci.is_signed = (q[0] & 0x80) != 0;
    ci.dx = q[1];
    ci.dy = q[2];
    if (ci.bit_depth > 32) fail("component precision above 32 bits");
    if (ci.dx == 0 || ci.dy == 0) fail("zero sub-sampling factor in SIZ");
    h.components.push_back(ci);
  }
}

void parse_cod(const uint8_t* s, size_t len, HeaderInfo& h) {
  if (len < 10) fail("COD segment too short");
  h.progression = s[1];
  h.layers = be16(s + 2);
  h.color_transform = s[4] != 0;
  h.levels = s[5];
  if (h.levels > 32) fail("more than 32 decomposition levels");
  if (s[6] > 8 || s[7] > 8 || s[6] + s[7] > 8) fail("bad code-block size in COD");
  h.block_width = 1u << (s[6] + 2);
  h.block_height = 1u << (s[7] + 2);
  h.block_style = s[8];
  h.reversible = s[9] == 1;
  if (h.progression > 4) fail("unknown progression order in COD");
}

void parse_tlm(const uint8_t* s, size_t len, HeaderInfo& h) {
  if (len < 2) fail("TLM segment too short");
  uint8_t stlm = s[1];
  uint32_t st = (stlm >> 4) & 3, sp = (stlm >> 6) & 1;
  if (st == 3) fail("bad Stlm in TLM");
  uint32_t entry = st + (sp ? 4 : 2);
  if ((len - 2) % entry) fail("TLM length is not a whole number of entries");
  h.has_tlm = true;
  h.tlm_tile_parts += static_cast<uint32_t>((len - 2) / entry);
}

bool parse_checksum(const uint8_t* s, size_t len, HeaderInfo& h) {
  // Rcom (2 bytes, 1 = Latin text) + tag + 8 hex digits
  if (len != 2 + kTagLen + 8 || be16(s) != 1 || std::memcmp(s + 2, kChecksumTag, kTagLen) != 0)
    return false;
  uint32_t v = 0;
  for (size_t i = 0; i < 8; ++i) {
    char c = static_cast<char>(s[2 + kTagLen + i]);
    uint32_t d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else fail("malformed dicube checksum segment");
    v = v << 4 | d;
  }
  h.has_checksum = true;
  h.checksum = v;
  return true;
}

}  // namespace

HeaderInfo parse_main_header(const uint8_t* data, size_t size) {
  HeaderInfo h;
  if (size < 4 || be16(data) != SOC) fail("no SOC marker at the start (not a JPEG 2000 codestream)");
  if (be16(data + 2) != SIZ) fail("SIZ marker does not follow SOC");
  bool have_cod = false;
  size_t pos = 2;
  while (true) {
    if (pos + 4 > size) fail("main header truncated");
    uint16_t marker = be16(data + pos);
    if (marker == SOT) break;
    if ((marker >> 8) != 0xFF || marker < 0xFF30) fail("bad marker in main header");
    size_t len = be16(data + pos + 2);
    if (len < 2 || pos + 2 + len > size) fail("marker segment runs past the end");
    const uint8_t* seg = data + pos + 4;
    size_t seg_len = len - 2;
    switch (marker) {
      case SIZ:
        if (pos != 2) fail("second SIZ marker");
        parse_siz(seg, seg_len, h);
        break;
      case COD:
        parse_cod(seg, seg_len, h);
        have_cod = true;
        break;
      case CAP: h.has_cap = true; break;
      case TLM: parse_tlm(seg, seg_len, h); break;
      case COM:
        if (!h.has_checksum && parse_checksum(seg, seg_len, h)) {
          h.checksum_begin = pos;
          h.checksum_end = pos + 2 + len;
        }
        break;
      default: break;
    }
    pos += 2 + len;
  }
  if (h.components.empty()) fail("no SIZ segment");
  if (!have_cod) fail("no COD segment in main header");
  h.header_length = pos;
  return h;
}

void verify_checksum(const uint8_t* data, size_t size, const HeaderInfo& h) {
  if (!h.has_checksum) return;
  uint32_t crc = crc32c(data, h.checksum_begin);
  crc = crc32c(data + h.checksum_end, size - h.checksum_end, crc);
  if (crc != h.checksum) {
    char msg[96];
    std::snprintf(msg, sizeof(msg), "checksum mismatch (stored %08x, computed %08x): ",
                  h.checksum, crc);
    throw CodecFailure(std::string(msg) + "codestream truncated or corrupted");
  }
}

std::string add_checksum(const uint8_t* data, size_t size) {
  // Placed last in the main header (just before the first SOT) so that the markers
  // other decoders look for first (SIZ, CAP, COD) keep their usual places.
  const size_t at = parse_main_header(data, size).header_length;
  uint32_t crc = crc32c(data, size);
  char seg[4 + 2 + kTagLen + 8 + 1];
  uint16_t lcom = static_cast<uint16_t>(2 + 2 + kTagLen + 8);
  seg[0] = static_cast<char>(0xFF);
  seg[1] = static_cast<char>(0x64);
  seg[2] = static_cast<char>(lcom >> 8);
  seg[3] = static_cast<char>(lcom & 0xFF);
  seg[4] = 0;
  seg[5] = 1;
  std::memcpy(seg + 6, kChecksumTag, kTagLen);
  std::snprintf(seg + 6 + kTagLen, 9, "%08x", crc);
  std::string out;
  out.reserve(size + sizeof(seg) - 1);
  out.append(reinterpret_cast<const char*>(data), at);
  out.append(seg, sizeof(seg) - 1);
  out.append(reinterpret_cast<const char*>(data) + at, size - at);
  return out;
}

}  // namespace dicube
