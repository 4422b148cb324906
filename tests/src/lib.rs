//! Shared helpers for real-client tests.
