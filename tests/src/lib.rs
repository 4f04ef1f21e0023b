//! Shared harness for end-to-end tests: network namespaces, PKI, stock OpenVPN processes.
