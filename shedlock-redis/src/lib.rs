//! Redis provider (being written).
