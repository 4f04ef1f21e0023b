//! nvlist IPC (libnv packed format) with if_ovpn's command set, its transport, and the typed client.
