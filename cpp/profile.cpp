#include "profile.hpp"

#include <algorithm>
#include <vector>

#include "jph_codec.hpp"
#include "regions.hpp"

namespace dicube {
namespace {

using namespace marker;

struct Walk {
  uint32_t width = 0, height = 0, depth = 0, comps = 0, levels = 0;
  uint32_t progression = 0, log_block_w = 0, log_block_h = 0;
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
  w.progression = s[1];
  w.log_block_w = s[6] + 2u;
  w.log_block_h = s[7] + 2u;
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

// --- packets ---------------------------------------------------------------------------
// OpenJPH 0.9 trusts the code-block lengths of packet headers: one longer than what is left
// of its tile-part makes it zero-fill past its buffer (heap corruption); two that overflow
// 32 bits make its block decoder read far out of bounds. So the packet headers are read
// here as OpenJPH reads them (one layer, one precinct per resolution, no SOP/EPH: our
// profile), and every length is checked against the bytes really left.

// Packet-header bits as OpenJPH reads them: after a 0xFF byte the next one gives 7 bits.
struct Bits {
  const uint8_t* p;
  size_t left;
  uint32_t tmp = 0;
  int avail = 0;
  bool unstuff = false, overrun = false;

  void next() {
    if (left == 0) {
      overrun = true;
      tmp = 0;
      avail = 8 - unstuff;
      unstuff = false;
      return;
    }
    tmp = *p++;
    --left;
    avail = 8 - unstuff;
    unstuff = tmp == 0xFF;
  }
  uint32_t bit() {
    if (avail == 0) next();
    return (tmp >> --avail) & 1;
  }
  uint32_t bits(int n) {
    uint32_t v = 0;
    while (n) {
      if (avail == 0) next();
      int t = std::min(avail, n);
      v = v << t;
      avail -= t;
      n -= t;
      v |= (tmp >> avail) & ((1u << t) - 1);
    }
    return v;
  }
  void terminate() {
    if (unstuff) next();
    tmp = 0;
    avail = 0;
  }
};

struct Band {
  uint32_t blocks_w = 0, blocks_h = 0;  // code-blocks across and down (one precinct)
};

// Extent of a high-pass band at level d along one axis of a tile at the origin.
uint32_t high_extent(uint32_t n, uint32_t d) {
  const uint64_t half = uint64_t(1) << (d - 1);
  return n > half ? ceil_shift(n - half, d) : 0;
}

uint32_t log2ceil(uint32_t x) {
  uint32_t t = 0;
  while ((uint64_t(1) << t) < x) ++t;
  return t;
}

// One packet (resolution r of a component); false with `why` set when OpenJPH would not
// read it safely. `left` is what remains of the tile-part, updated as OpenJPH does.
bool read_packet(const Walk& w, uint32_t r, const uint8_t*& p, size_t& left, std::string& why) {
  Band bands[3];
  int num_bands = 0;
  auto blocks = [&](uint32_t bw, uint32_t bh) {
    Band b;
    if (bw && bh) {
      b.blocks_w = ceil_shift(bw, w.log_block_w);
      b.blocks_h = ceil_shift(bh, w.log_block_h);
    }
    return b;
  };
  if (r == 0) {
    bands[num_bands++] = blocks(ceil_shift(w.width, w.levels), ceil_shift(w.height, w.levels));
  } else {
    const uint32_t d = w.levels - r + 1;
    const uint32_t lw = ceil_shift(w.width, d), lh = ceil_shift(w.height, d);
    const uint32_t hw = high_extent(w.width, d), hh = high_extent(w.height, d);
    bands[num_bands++] = blocks(hw, lh);
    bands[num_bands++] = blocks(lw, hh);
    bands[num_bands++] = blocks(hw, hh);
  }
  Bits bb{p, left};
  thread_local std::vector<uint64_t> lengths;  // per included code-block, in data order
  lengths.clear();
  bool first = true;
  for (int s = 0; s < num_bands; ++s) {
    const Band& band = bands[s];
    if (band.blocks_w == 0 || band.blocks_h == 0) continue;
    if (first) {
      first = false;
      if (bb.bit() == 0) {  // empty packet
        bb.terminate();
        p = bb.p;
        left = bb.left;
        return true;
      }
    }
    const uint32_t levels = 1 + std::max(log2ceil(band.blocks_w), log2ceil(band.blocks_h));
    if (levels > 15) return why = "too many code-blocks", false;
    // Tag trees: level l has ceil(n / 2^l) nodes along each axis; level `levels` is a root
    // set to 0. Four trees (inclusion, its read flags, missing MSBs, their read flags) share
    // one buffer kept per thread: this check runs before every decode.
    uint32_t stride[16];
    size_t offset[17];
    offset[0] = 0;
    for (uint32_t l = 0; l <= levels; ++l) {
      stride[l] = ceil_shift(band.blocks_w, l);
      offset[l + 1] = offset[l] + static_cast<size_t>(stride[l]) * ceil_shift(band.blocks_h, l);
    }
    const size_t nodes = offset[levels + 1];
    thread_local std::vector<uint8_t> trees;
    trees.assign(4 * nodes, 0);
    uint8_t* const inc = trees.data();
    uint8_t* const inc_seen = inc + nodes;
    uint8_t* const msb = inc_seen + nodes;
    uint8_t* const msb_seen = msb + nodes;
    auto at = [&](uint32_t x, uint32_t y, uint32_t l) {
      return offset[l] + (x >> l) + (y >> l) * static_cast<size_t>(stride[l]);
    };
    for (uint32_t y = 0; y < band.blocks_h; ++y) {
      for (uint32_t x = 0; x < band.blocks_w; ++x) {
        bool empty = false;
        for (uint32_t l = levels; l-- > 0;) {
          const size_t i = at(x, y, l);
          if (inc[i] == 1) { empty = true; break; }
          if (!inc_seen[i]) {
            const uint32_t b = bb.bit();
            empty = b == 0;
            inc[i] = static_cast<uint8_t>(1 - b);
            inc_seen[i] = 1;
          }
          if (empty) break;
        }
        if (empty) continue;
        uint32_t mmsbs = 0;
        for (uint32_t lp1 = levels; lp1 > 0; --lp1) {
          const uint32_t l = lp1 - 1;
          mmsbs = msb[at(x, y, lp1)];
          const size_t i = at(x, y, l);
          if (!msb_seen[i]) {
            while (bb.bit() == 0) {
              if (bb.overrun) return why = "packet header runs past its tile-part", false;
              ++mmsbs;
            }
            msb[i] = static_cast<uint8_t>(mmsbs);
            msb_seen[i] = 1;
          }
        }
        uint32_t passes = 1;
        if (bb.bit()) {
          passes = 2;
          if (bb.bit()) {
            uint32_t v = bb.bits(2);
            passes = 3 + v;
            if (v == 3) {
              v = bb.bits(5);
              passes = 6 + v;
              if (v == 31) passes = 37 + bb.bits(7);
            }
          }
        }
        int bits1 = 3;
        while (bb.bit()) {
          if (bb.overrun || ++bits1 > 32) return why = "code-block length field", false;
        }
        const int extra = passes > 2 ? 1 : 0;
        if (bits1 + extra > 32) return why = "code-block length field", false;
        uint64_t length = bb.bits(bits1);
        if (passes > 1) length += bb.bits(bits1 + extra);
        if (bb.overrun) return why = "packet header runs past its tile-part", false;
        lengths.push_back(length);
      }
    }
  }
  bb.terminate();
  if (bb.overrun) return why = "packet header runs past its tile-part", false;
  for (uint64_t n : lengths) {
    if (n > bb.left) return why = "code-block data runs past its tile-part", false;
    bb.p += n;
    bb.left -= static_cast<size_t>(n);
  }
  p = bb.p;
  left = bb.left;
  return true;
}

std::string check_packets(const Walk& w, const std::vector<Span>& payloads) {
  // One precinct per resolution (OpenJPH's default precinct of 2^15): larger images are
  // left to the isolated decoder.
  if (w.width > 32768 || w.height > 32768) return "image larger than one precinct";
  // Packet order of one layer and one precinct per resolution: resolution-major for
  // LRCP, RLCP and RPCL, component-major for PCRL and CPRL (ties go to the lower index).
  const bool by_res = w.progression <= 2;
  const uint32_t total = (w.levels + 1) * w.comps;
  uint32_t k = 0;
  std::string why;
  for (const Span& tp : payloads) {
    const uint8_t* p = tp.data;
    size_t left = tp.size;
    while (left > 0 && k < total) {
      const uint32_t r = by_res ? k / w.comps : k % (w.levels + 1);
      if (!read_packet(w, r, p, left, why)) return why;
      ++k;
    }
  }
  return {};
}

// Tile-parts of the one tile: SOT (Lsot 10, Isot 0, TPsot 0, 1, ...) directly followed by
// SOD, each Psot ending where the next tile-part starts, the last one before EOC.
std::string check_tile_parts(const uint8_t* data, size_t size, size_t pos, const Walk& w) {
  if (size < pos + 2 || be16(data + size - 2) != EOC) return "no EOC at the end";
  const size_t end = size - 2;
  uint32_t count = 0, declared = 0;
  std::vector<uint32_t> lengths;
  std::vector<Span> payloads;
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
    payloads.push_back(Span{data + pos + 14, len - 14});
    pos += len;
    ++count;
  }
  if (count == 0) return "no tile-part";
  if (declared != 0 && declared != count) return "TNsot does not match the tile-parts";
  if (!w.tlm_lengths.empty() && w.tlm_lengths != lengths) return "TLM does not match the tile-parts";
  return check_packets(w, payloads);
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
