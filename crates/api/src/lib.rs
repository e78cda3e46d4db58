//! API types and client.
