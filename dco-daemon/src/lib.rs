//! The dco data path: workers, peers, routing, I/O, and the IPC server.
