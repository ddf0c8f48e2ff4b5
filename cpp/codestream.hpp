// Marker-level reading of a JPEG 2000 main header, and dicube's checksum COM segment.
//
// Every codestream dicube writes carries, last in its main header, a COM segment holding the
// CRC-32C of all other bytes of the codestream. Decoders that do not know it ignore it
// (COM is informative); ours verifies it before decoding, so a truncated or altered
// frame is reported instead of decoding to wrong pixels.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dicube {

// JPEG 2000 markers (ITU-T T.800 Table A.2) that dicube reads.
namespace marker {
constexpr uint16_t SOC = 0xFF4F, CAP = 0xFF50, SIZ = 0xFF51, COD = 0xFF52, TLM = 0xFF55, QCD = 0xFF5C,
                   COM = 0xFF64, SOT = 0xFF90, SOD = 0xFF93, EOC = 0xFFD9;
}

// Big-endian integers of marker segments.
inline uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

// ceil(v / 2^s): extents of reduced resolutions, bands and code-block grids.
inline uint32_t ceil_shift(uint64_t v, uint32_t s) {
  return static_cast<uint32_t>((v + (uint64_t(1) << s) - 1) >> s);
}

struct ComponentInfo {
  uint32_t bit_depth = 0;
  bool is_signed = false;
  uint32_t dx = 1, dy = 1;
};

struct HeaderInfo {
  uint32_t width = 0, height = 0;        // image extent minus image offset
  uint32_t tile_width = 0, tile_height = 0;
  uint32_t num_tiles = 0;
  std::vector<ComponentInfo> components;
  uint16_t rsiz = 0;
  bool has_cap = false;                  // CAP marker: Part 15 (HT) capabilities
  uint32_t levels = 0;
  uint32_t block_width = 0, block_height = 0;
  uint8_t block_style = 0;
  uint8_t progression = 0;               // 0 LRCP, 1 RLCP, 2 RPCL, 3 PCRL, 4 CPRL
  uint16_t layers = 0;
  bool color_transform = false;
  bool reversible = false;               // 5/3 wavelet
  bool has_tlm = false;
  uint32_t tlm_tile_parts = 0;           // number of tile-parts the TLM segments list
  bool has_checksum = false;             // dicube's CRC-32C COM segment
  uint32_t checksum = 0;
  size_t checksum_begin = 0, checksum_end = 0;  // byte range of that COM segment
  size_t header_length = 0;              // offset of the first SOT
};

// Parse the main header (SOC up to the first SOT); throws CodecFailure when malformed.
HeaderInfo parse_main_header(const uint8_t* data, size_t size);

// Verify dicube's checksum when present; throws CodecFailure on mismatch.
void verify_checksum(const uint8_t* data, size_t size, const HeaderInfo& info);

// Insert the checksum COM segment at the end of the main header of a freshly written codestream.
std::string add_checksum(const uint8_t* data, size_t size);

}  // namespace dicube
