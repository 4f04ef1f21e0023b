//! The OpenVPN control channel as a sans-IO state machine, and the config it is driven by.

pub mod client;
pub mod config;
pub mod dataplane;
pub mod key_method;
pub mod link;
pub mod packet;
pub mod pool;
pub mod push;
pub mod reliable;
pub mod server;
pub mod session;
pub mod setup;
pub mod static_key;
pub mod status;
pub mod tls;
pub mod wrap;
