//! OpenVPN 2.6 data channel: wire format, AEAD, key material, replay protection.
