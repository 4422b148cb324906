//! notary-server: the Notary v1 metadata server (spec §4-7) as a library.
//!
//! - [`api::router`] is the Notary HTTP API alone (`/v2/<gun>/_trust/…`), which a
//!   registry mounts beside its own routes with [`api::mount`];
//! - [`service::Service`] validates and stores updates, signs what the server manages,
//!   and hands verified trust data to other crates ([`service::Service::trusted`]);
//! - [`storage`] is SQLite (a file in WAL mode, or in memory) or PostgreSQL shared by
//!   several replicas (each follows the changefeed to drop cached state another replica
//!   changed); [`trust`] signs timestamps and server-managed snapshots, in process with
//!   keys sealed in the database or through a notary-signer;
//! - [`daemon`] is the standalone server (Go configuration, TLS, metrics, serve loop);
//!   the binary is a thin `main` over it.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod api;
pub mod auth;
pub mod daemon;
pub mod error;
pub mod service;
pub mod storage;
pub mod trust;

pub use api::{ApiOptions, mount, router};
pub use daemon::config;
