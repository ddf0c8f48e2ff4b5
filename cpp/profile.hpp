// dicube's codestream profile: what our writer (any supported OpenJPH version, any of our
// EncodeOptions) can produce. OpenJPH trusts many header fields (a crafted SIZ or QCD makes
// it read out of bounds or abort), so only codestreams inside this profile are decoded
// in-process; any other one is "foreign" and decoded in an isolated process.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace dicube {

// Empty when the codestream is inside the profile, else the first reason it is not.
// Checks every marker segment of the main header and the tile-part structure (SOT/SOD
// chain up to EOC); packet data is not parsed (see assert_guard.hpp for that).
std::string profile_violation(const uint8_t* data, size_t size);

inline bool in_profile(const uint8_t* data, size_t size) { return profile_violation(data, size).empty(); }

}  // namespace dicube
