//! The dco data path: workers, peers, routing, I/O, and the IPC server.

pub mod core;
pub mod events;
pub mod filter;
pub mod firewall;
pub mod gro;
pub mod ip;
pub mod ipc;
pub mod mss;
pub mod netlink;
pub mod peer;
pub mod route;
pub mod stats;
pub mod table;
pub mod testkit;
pub mod udp;
pub mod worker;
