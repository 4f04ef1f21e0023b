//! Connection tracking and a stateful firewall for the data path.
