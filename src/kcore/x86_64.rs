//! x86_64 virtual-to-physical translation (in progress).
