//! Replicas: every registry process registers itself in the shared database's `replicas`
//! table under a random id and heartbeats there; `GET /api/v0/meta/cluster_status` (admins)
//! answers DTR's shape from that table: `{"current_issues": [...], "replica_health":
//! {"<id>": "OK" | "unreachable"}, "replicas": [...]}`. Replicas hold no state of their own
//! (metadata in the database, blobs in shared storage), so this is only reporting: nothing
//! elects a leader or depends on a replica being listed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::Serialize;
use sqlx::Row as _;

use crate::Registry;
use crate::access::Need;
use crate::error::{Code, RegistryError};
use crate::meta::{Db, now, with_pool};

/// A replica is unreachable after this many missed heartbeats.
pub const MISSED_HEARTBEATS: i64 = 3;
/// Rows of replicas silent for this long are removed (a replica that comes back
/// registers again).
const FORGET_AFTER_SECS: i64 = 24 * 3600;
/// Most replicas listed.
const MAX_LISTED: i64 = 1000;

/// A new random replica id (12 hex digits, as DTR's).
pub fn new_replica_id() -> String {
    let mut b = [0u8; 6];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        // No randomness: fall back on time and pid (ids only need to differ).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let x = t as u64 ^ u64::from(std::process::id()) << 32;
        b.copy_from_slice(&x.to_be_bytes()[2..]);
    }
    hex::encode(b)
}

/// One row of the `replicas` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Replica {
    /// Random id chosen at start.
    pub id: String,
    /// Where it listens (as configured).
    pub address: String,
    /// Start time (Unix seconds).
    pub started_at: i64,
    /// Last heartbeat (Unix seconds).
    pub heartbeat_at: i64,
    /// Seconds between its heartbeats.
    pub heartbeat_interval: i64,
    /// Its version.
    pub version: String,
}

impl Replica {
    /// Whether its last heartbeat is recent enough at `now`.
    pub fn healthy(&self, now: i64) -> bool {
        now - self.heartbeat_at <= MISSED_HEARTBEATS * self.heartbeat_interval.max(1)
    }
}

/// Registers (or refreshes) a replica row.
pub async fn register(db: &Db, r: &Replica) -> Result<(), sqlx::Error> {
    let _w = db.write().await;
    const Q: &str = "INSERT INTO replicas (id, address, started_at, heartbeat_at, heartbeat_interval, version) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET address = excluded.address, heartbeat_at = excluded.heartbeat_at, heartbeat_interval = excluded.heartbeat_interval, version = excluded.version";
    with_pool!(db, pool => {
        sqlx::query(Q).bind(&r.id).bind(&r.address).bind(r.started_at).bind(r.heartbeat_at)
            .bind(r.heartbeat_interval).bind(&r.version).execute(pool).await.map(|_| ())
    })
}

/// Records a heartbeat; `false` when the row is gone (forgotten as dead).
pub async fn heartbeat(db: &Db, id: &str, at: i64) -> Result<bool, sqlx::Error> {
    let _w = db.write().await;
    with_pool!(db, pool => {
        Ok(sqlx::query("UPDATE replicas SET heartbeat_at = $2 WHERE id = $1")
            .bind(id).bind(at).execute(pool).await?.rows_affected() == 1)
    })
}

/// Removes replicas silent since before `before`.
pub async fn forget_silent(db: &Db, before: i64) -> Result<u64, sqlx::Error> {
    let _w = db.write().await;
    with_pool!(db, pool => {
        Ok(sqlx::query("DELETE FROM replicas WHERE heartbeat_at < $1").bind(before).execute(pool).await?.rows_affected())
    })
}

/// The registered replicas, oldest first.
pub async fn replicas(db: &Db) -> Result<Vec<Replica>, sqlx::Error> {
    const Q: &str = "SELECT id, address, started_at, heartbeat_at, heartbeat_interval, version FROM replicas ORDER BY started_at, id LIMIT $1";
    with_pool!(db, pool => {
        Ok(sqlx::query(Q).bind(MAX_LISTED).fetch_all(pool).await?.into_iter().map(|r| Replica {
            id: r.get(0), address: r.get(1), started_at: r.get(2), heartbeat_at: r.get(3),
            heartbeat_interval: r.get(4), version: r.get(5),
        }).collect())
    })
}

/// Registers this process (`registry.replica_id`) and heartbeats every `interval_secs`
/// until the registry is dropped.
pub async fn start(
    registry: &Arc<Registry>,
    address: &str,
    interval_secs: u64,
) -> Result<(), sqlx::Error> {
    let interval_secs = interval_secs.clamp(1, 3600);
    let started = now();
    let me = Replica {
        id: registry.replica_id.clone(),
        address: address.chars().take(256).collect(),
        started_at: started,
        heartbeat_at: started,
        heartbeat_interval: interval_secs as i64,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    register(&registry.db, &me).await?;
    tracing::info!(replica = %me.id, address = %me.address, "replica registered");
    let weak: Weak<Registry> = Arc::downgrade(registry);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(interval_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut beats: u64 = 0;
        loop {
            tick.tick().await;
            let Some(reg) = weak.upgrade() else { break };
            let at = now();
            match heartbeat(&reg.db, &me.id, at).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(replica = %me.id, "replica row was removed: registering again");
                    let again = Replica {
                        heartbeat_at: at,
                        ..me.clone()
                    };
                    if let Err(e) = register(&reg.db, &again).await {
                        metrics::counter!("registry_cluster_heartbeat_failures_total").increment(1);
                        tracing::warn!(replica = %me.id, error = %e, "could not register");
                    }
                }
                Err(e) => {
                    metrics::counter!("registry_cluster_heartbeat_failures_total").increment(1);
                    tracing::warn!(replica = %me.id, error = %e, "heartbeat failed");
                }
            }
            beats += 1;
            if beats % 100 == 1 {
                match forget_silent(&reg.db, at - FORGET_AFTER_SECS).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "forgot replicas silent for a day"),
                    Err(e) => tracing::warn!(error = %e, "could not prune the replicas table"),
                }
            }
        }
    });
    Ok(())
}

/// Records the address this replica actually listens on (once bound: the configured one
/// may name port 0). Failures are logged: the address is informative only.
pub async fn advertise(registry: &Registry, address: &str) {
    let address: String = address.chars().take(256).collect();
    let r = {
        let _w = registry.db.write().await;
        with_pool!(registry.db, pool => {
            sqlx::query("UPDATE replicas SET address = $2 WHERE id = $1")
                .bind(&registry.replica_id).bind(&address).execute(pool).await.map(|_| ())
        })
    };
    if let Err(e) = r {
        tracing::warn!(replica = %registry.replica_id, error = %e, "could not record this replica's address");
    }
}

/// `/api/v0/meta/cluster_status`.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/api/v0/meta/cluster_status", any(cluster_status))
        .with_state(registry)
}

#[derive(Serialize)]
struct Issue {
    critical: bool,
    description: String,
}

#[derive(Serialize)]
struct ReplicaStatus {
    #[serde(flatten)]
    replica: Replica,
    healthy: bool,
    seconds_since_heartbeat: i64,
}

async fn cluster_status(
    State(reg): State<Arc<Registry>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return RegistryError::new(Code::Unsupported, "method not allowed on this route")
            .with_status(StatusCode::METHOD_NOT_ALLOWED)
            .into_response();
    }
    if let Err(e) = reg.access.check(&headers, &[Need::Admin]).await {
        return e.into_response();
    }
    let list = match replicas(&reg.db).await {
        Ok(l) => l,
        Err(e) => return RegistryError::unavailable("database", e).into_response(),
    };
    let at = now();
    let mut issues = Vec::new();
    let mut health = serde_json::Map::new();
    let mut rows = Vec::with_capacity(list.len());
    for r in list {
        let healthy = r.healthy(at);
        let silent = at - r.heartbeat_at;
        if !healthy {
            issues.push(Issue {
                critical: false,
                description: format!(
                    "replica {} ({}) has not sent a heartbeat for {silent} s",
                    r.id, r.address
                ),
            });
        }
        health.insert(
            r.id.clone(),
            serde_json::Value::from(if healthy { "OK" } else { "unreachable" }),
        );
        rows.push(ReplicaStatus {
            replica: r,
            healthy,
            seconds_since_heartbeat: silent,
        });
    }
    let storage = reg.store.health().await;
    if let Err(e) = &storage {
        issues.push(Issue {
            critical: true,
            description: format!("replica {} cannot reach blob storage: {e}", reg.replica_id),
        });
    }
    let healthy = rows.iter().filter(|r| r.healthy).count();
    metrics::gauge!("registry_cluster_replicas_healthy").set(healthy as f64);
    metrics::gauge!("registry_cluster_replicas_unreachable").set((rows.len() - healthy) as f64);
    let body = serde_json::json!({
        "replica_id": reg.replica_id,
        "current_issues": issues,
        "replica_health": health,
        "replicas": rows,
        "storage": reg.store.describe(),
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn health_follows_missed_heartbeats() {
        let r = Replica {
            id: new_replica_id(),
            address: "a".into(),
            started_at: 100,
            heartbeat_at: 100,
            heartbeat_interval: 5,
            version: "x".into(),
        };
        assert_eq!(r.id.len(), 12);
        assert!(r.healthy(115));
        assert!(!r.healthy(116));
        assert_ne!(new_replica_id(), new_replica_id());
    }
}
