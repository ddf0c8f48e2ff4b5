# OpenJPH versions dicube accepts.
# 0.9.0 is Debian 12's libopenjph-dev and the oldest we build and test against.
set(OPENJPH_MIN_VERSION 0.9.0)
# Newer releases (0.10.x onwards) can write TLM markers and split tile-parts at
# resolutions, which DICOM's "HTJ2K with RPCL options" syntax needs. CMakeLists.txt
# probes the headers for that API at configure time (DICUBE_OJPH_HAS_TLM).
