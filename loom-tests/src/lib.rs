//! Loom models of shapebuf's concurrency protocols (see tests/).
