# OpenJPH versions dicube accepts.
# 0.9.0 is Debian 12's libopenjph-dev and the oldest we build and test against.
set(OPENJPH_MIN_VERSION 0.9.0)
# Newer releases (tested: 0.31.0) can write TLM markers and split tile-parts at
# resolutions, which DICOM's "HTJ2K with RPCL options" syntax needs. CMakeLists.txt
# probes that API by linking a test program (DICUBE_OJPH_HAS_TLM), not by version.
