// CRC-32C (Castagnoli), the checksum dicube embeds in its codestreams and files.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dicube {

// Continue a CRC-32C over more bytes: crc32c(b, crc32c(a)) == crc32c(a + b). Start with 0.
uint32_t crc32c(const uint8_t* data, size_t size, uint32_t crc = 0);

}  // namespace dicube
