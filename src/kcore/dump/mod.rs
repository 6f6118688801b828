//! Crash-dump and snapshot formats (in progress).
