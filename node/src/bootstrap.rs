//! First-start set-up: the server admin, the cookie secret, the server uuid and
//! the system databases of a single node.

use crate::settings::Settings;
use anyhow::Context;
use chaise_api::config_store::ConfigStore;
use chaise_cluster::{ClusterError, Coordinator};

/// Creates the admin from `COUCHDB_USER`/`COUCHDB_PASSWORD`, or a random one when
/// no admin exists, and makes sure a cookie secret is set (`COUCHDB_SECRET`).
pub fn ensure_credentials(settings: &Settings) -> anyhow::Result<()> {
    let config = &settings.config;
    if let (Ok(user), Ok(pw)) = (
        std::env::var("COUCHDB_USER"),
        std::env::var("COUCHDB_PASSWORD"),
    ) {
        if !user.is_empty() {
            let current = config.get("admins", &user);
            let same = current
                .as_deref()
                .is_some_and(|h| chaise_api::auth::password::verify_admin_password(&pw, h));
            if !same {
                config
                    .set("admins", &user, &pw, true)
                    .context("storing the admin from COUCHDB_USER")?;
            }
        }
    }
    if config.section("admins").is_empty() {
        let pw = hex::encode(rand::random::<[u8; 12]>());
        config
            .set("admins", "admin", &pw, true)
            .context("storing the generated admin")?;
        println!("No server admin was configured: created admin 'admin' with password '{pw}'");
        println!(
            "(stored hashed in {}; this is the only time it is shown)",
            settings.data_dir.join("local.ini").display()
        );
    }
    match std::env::var("COUCHDB_SECRET") {
        Ok(secret) if !secret.is_empty() => {
            if config.get("chttpd_auth", "secret").as_deref() != Some(secret.as_str()) {
                config.set("chttpd_auth", "secret", &secret, true)?;
            }
        }
        _ => {
            if config.get("chttpd_auth", "secret").is_none() {
                config.set(
                    "chttpd_auth",
                    "secret",
                    &hex::encode(rand::random::<[u8; 16]>()),
                    true,
                )?;
            }
        }
    }
    Ok(())
}

/// The server uuid (`[couchdb] uuid`), generated once and persisted.
pub fn ensure_uuid(config: &ConfigStore) -> anyhow::Result<String> {
    if let Some(u) = config.get("couchdb", "uuid") {
        return Ok(u);
    }
    let u = hex::encode(rand::random::<[u8; 16]>());
    config.set("couchdb", "uuid", &u, true)?;
    Ok(u)
}

/// With `[couchdb] single_node = true` (the default), creates `_users` and
/// `_replicator` as CouchDB does on a lone node.
pub async fn ensure_system_dbs(
    settings: &Settings,
    coordinator: &Coordinator,
) -> anyhow::Result<()> {
    if settings.config.get_or("couchdb", "single_node", "true") != "true" {
        return Ok(());
    }
    let security = br#"{"members":{"roles":["_admin"]},"admins":{"roles":["_admin"]}}"#.to_vec();
    for db in ["_users", "_replicator"] {
        match coordinator
            .create_db(db, Some(1), None, Default::default(), security.clone())
            .await
        {
            Ok(_) | Err(ClusterError::DbExists) => {}
            Err(e) => return Err(e).with_context(|| format!("creating {db}")),
        }
    }
    Ok(())
}
