//! Request handlers, one file per group of CouchDB endpoints.

pub mod all_docs;
pub mod attachment;
pub mod bulk;
pub mod changes;
pub mod cluster_setup;
pub mod database;
pub mod db_updates;
pub mod document;
pub mod node;
pub mod server;
pub mod session;
pub mod users;
