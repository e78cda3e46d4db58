//! HTTP boot (being written).
