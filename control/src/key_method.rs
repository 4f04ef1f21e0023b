//! Key method 2: the first TLS application-data record each side sends, the OCC options
//! string in it, and the client's peer-info.
//!
//! ```text
//! u32 0 | u8 2 | [pre_master 48, client only] | random1 32 | random2 32 |
//! u16 len + options NUL | u16 len + username NUL | u16 len + password NUL |
//! u16 len + peer_info NUL          (a string of length 0 is written as 00 00)
//! ```
//!
//! Limits are OpenVPN 2.6's: the options string is 1..=512 bytes with its NUL, and a
//! username or password longer than 4096 bytes is not a protocol error but a failed
//! authentication ([`Credentials::TooLong`]), so the server can answer `AUTH_FAILED`.
//! 2.6 ignores bytes after the peer-info; so do we. Every stock 2.x peer writes all four
//! length-prefixed fields, and a record that stops short inside or between them is
//! rejected here with [`KeyMethodError::Truncated`].

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::config::{DataCipher, Digest, KeyDirection, Options, Role, TlsWrap};

/// The key-method byte (masked with 0x0F on receive).
pub const KEY_METHOD_2: u8 = 2;
/// Maximum options string length including its NUL (`TLS_OPTIONS_LEN`).
pub const TLS_OPTIONS_LEN: usize = 512;
/// Maximum username/password length including the NUL (`USER_PASS_LEN` with PKCS#11, as
/// Debian builds it).
pub const USER_PASS_LEN: usize = 4096;
/// Length of the client's pre-master secret.
pub const PRE_MASTER_LEN: usize = 48;
/// Length of each random.
pub const RANDOM_LEN: usize = 32;

/// Who wrote a record (the layout differs: only the client sends a pre-master secret).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// The TLS client (OpenVPN client).
    Client,
    /// The TLS server.
    Server,
}

/// Errors reading or writing a key-method-2 record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyMethodError {
    /// The record ends inside or before a field.
    #[error("key-method-2 record truncated in {field}: need {need} more bytes, {have} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes that were left.
        have: usize,
    },
    /// The key-method byte is not 2.
    #[error("unknown key method {0:#04x} (only key method 2 exists)")]
    BadKeyMethod(u8),
    /// The options string length is 0 or more than 512.
    #[error("OCC options string length {0} is outside 1..=512")]
    OptionsLength(usize),
    /// A string to be written is too long for its field.
    #[error("{field} is {len} bytes with its NUL, more than the {max} allowed")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length with NUL.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A string to be written contains a NUL byte.
    #[error("{0} contains a NUL byte")]
    EmbeddedNul(&'static str),
    /// A server record must not carry a pre-master secret and a client record must.
    #[error("the {0:?} record's key source has the wrong shape (pre_master is client-only)")]
    WrongKeySource(Sender),
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
}

/// Key material sent in the record. Wiped on drop; `Debug` prints no bytes.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct KeySource {
    /// The client's 48-byte pre-master secret (`None` in a server record).
    pub pre_master: Option<[u8; PRE_MASTER_LEN]>,
    /// First random (master-secret seed).
    pub random1: [u8; RANDOM_LEN],
    /// Second random (key-expansion seed).
    pub random2: [u8; RANDOM_LEN],
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySource")
            .field(
                "pre_master",
                &self.pre_master.as_ref().map(|_| "<48 bytes>"),
            )
            .field("random1", &"<32 bytes>")
            .field("random2", &"<32 bytes>")
            .finish()
    }
}

impl KeySource {
    /// Fresh random material for `sender` (with a pre-master secret for the client).
    pub fn random(sender: Sender) -> Result<Self, KeyMethodError> {
        use ring::rand::{SecureRandom, SystemRandom};
        let rng = SystemRandom::new();
        let mut ks = KeySource {
            pre_master: None,
            random1: [0; 32],
            random2: [0; 32],
        };
        if sender == Sender::Client {
            let mut pm = [0u8; PRE_MASTER_LEN];
            rng.fill(&mut pm).map_err(|_| KeyMethodError::Random)?;
            ks.pre_master = Some(pm);
            pm.zeroize();
        }
        rng.fill(&mut ks.random1)
            .map_err(|_| KeyMethodError::Random)?;
        rng.fill(&mut ks.random2)
            .map_err(|_| KeyMethodError::Random)?;
        Ok(ks)
    }
}

/// Username and password from `auth-user-pass`. Wiped on drop; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct UserPass {
    /// Username (may be empty).
    pub username: Zeroizing<String>,
    /// Password (may be empty).
    pub password: Zeroizing<String>,
}

impl fmt::Debug for UserPass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPass")
            .field("username", &self.username.as_str())
            .field("password", &"<hidden>")
            .finish()
    }
}

/// The username/password fields of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// Both fields empty (`00 00 00 00`): certificate-only authentication.
    Absent,
    /// At least one field present.
    Given(UserPass),
    /// A field longer than [`USER_PASS_LEN`]: 2.6 treats this as failed authentication
    /// ("Username or password is too long") and answers `AUTH_FAILED`.
    TooLong {
        /// Declared username length.
        username_len: usize,
        /// Declared password length.
        password_len: usize,
    },
}

/// A key-method-2 record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMethod2 {
    /// Key material (pre-master only from the client).
    pub key_source: KeySource,
    /// The OCC options string (compared for warnings only).
    pub options: String,
    /// Username/password (client records).
    pub credentials: Credentials,
    /// The client's peer-info text (`IV_...=...\n` lines); `None` when empty.
    pub peer_info: Option<String>,
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], KeyMethodError> {
        if self.b.len() < n {
            return Err(KeyMethodError::Truncated {
                field,
                need: n,
                have: self.b.len(),
            });
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn u16(&mut self, field: &'static str) -> Result<usize, KeyMethodError> {
        let b = self.take(2, field)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// A length-prefixed string; the text ends at the first NUL as in C.
    fn string(&mut self, len: usize, field: &'static str) -> Result<String, KeyMethodError> {
        let b = self.take(len, field)?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        Ok(String::from_utf8_lossy(&b[..end]).into_owned())
    }
}

impl KeyMethod2 {
    /// Parses a record written by `from`.
    pub fn parse(bytes: &[u8], from: Sender) -> Result<Self, KeyMethodError> {
        let mut r = Reader { b: bytes };
        // 2.6 skips the leading u32 without looking at it.
        r.take(4, "leading zero u32")?;
        let km = r.take(1, "key method")?[0];
        if km & 0x0F != KEY_METHOD_2 {
            return Err(KeyMethodError::BadKeyMethod(km));
        }
        let mut ks = KeySource {
            pre_master: None,
            random1: [0; 32],
            random2: [0; 32],
        };
        if from == Sender::Client {
            let mut pm = [0u8; PRE_MASTER_LEN];
            pm.copy_from_slice(r.take(PRE_MASTER_LEN, "pre_master")?);
            ks.pre_master = Some(pm);
            pm.zeroize();
        }
        ks.random1.copy_from_slice(r.take(RANDOM_LEN, "random1")?);
        ks.random2.copy_from_slice(r.take(RANDOM_LEN, "random2")?);

        let olen = r.u16("options length")?;
        if olen == 0 || olen > TLS_OPTIONS_LEN {
            return Err(KeyMethodError::OptionsLength(olen));
        }
        let options = r.string(olen, "options")?;

        let ulen = r.u16("username length")?;
        let user = if ulen > USER_PASS_LEN {
            r.take(ulen, "username")?;
            None
        } else {
            Some(Zeroizing::new(r.string(ulen, "username")?))
        };
        let plen = r.u16("password length")?;
        let pass = if plen > USER_PASS_LEN {
            r.take(plen, "password")?;
            None
        } else {
            Some(Zeroizing::new(r.string(plen, "password")?))
        };
        let credentials = match (user, pass) {
            (Some(u), Some(p)) if ulen == 0 && plen == 0 => {
                drop((u, p));
                Credentials::Absent
            }
            (Some(username), Some(password)) => Credentials::Given(UserPass { username, password }),
            _ => Credentials::TooLong {
                username_len: ulen,
                password_len: plen,
            },
        };

        let ilen = r.u16("peer-info length")?;
        // An empty string (length 0, or text starting with NUL) means no peer-info.
        let peer_info = if ilen == 0 {
            None
        } else {
            Some(r.string(ilen, "peer-info")?).filter(|s| !s.is_empty())
        };
        Ok(KeyMethod2 {
            key_source: ks,
            options,
            credentials,
            peer_info,
        })
    }

    /// Writes the record as `sender` (the layout follows `sender`, and the key source must
    /// match it). The result is meant for one TLS write (one TLS record).
    pub fn encode(&self, sender: Sender) -> Result<Zeroizing<Vec<u8>>, KeyMethodError> {
        if (sender == Sender::Client) != self.key_source.pre_master.is_some() {
            return Err(KeyMethodError::WrongKeySource(sender));
        }
        let mut out = Zeroizing::new(Vec::with_capacity(200 + self.options.len()));
        out.extend_from_slice(&[0, 0, 0, 0, KEY_METHOD_2]);
        if let Some(pm) = &self.key_source.pre_master {
            out.extend_from_slice(pm);
        }
        out.extend_from_slice(&self.key_source.random1);
        out.extend_from_slice(&self.key_source.random2);
        put_string(&mut out, "options", &self.options, TLS_OPTIONS_LEN, false)?;
        match &self.credentials {
            Credentials::Absent => out.extend_from_slice(&[0, 0, 0, 0]),
            Credentials::Given(up) => {
                // Present-but-empty is written as a lone NUL, so it reads back as given.
                put_string(&mut out, "username", &up.username, USER_PASS_LEN, false)?;
                put_string(&mut out, "password", &up.password, USER_PASS_LEN, false)?;
            }
            Credentials::TooLong {
                username_len,
                password_len,
            } => {
                return Err(KeyMethodError::FieldTooLong {
                    field: "credentials",
                    len: (*username_len).max(*password_len),
                    max: USER_PASS_LEN,
                });
            }
        }
        match &self.peer_info {
            None => out.extend_from_slice(&[0, 0]),
            Some(pi) => put_string(&mut out, "peer-info", pi, usize::from(u16::MAX), true)?,
        }
        Ok(out)
    }
}

/// Writes `u16 len+1 | bytes | NUL`; an empty string is written as `00 00` when
/// `empty_is_absent`.
fn put_string(
    out: &mut Vec<u8>,
    field: &'static str,
    s: &str,
    max: usize,
    empty_is_absent: bool,
) -> Result<(), KeyMethodError> {
    if s.is_empty() && empty_is_absent {
        out.extend_from_slice(&[0, 0]);
        return Ok(());
    }
    if s.as_bytes().contains(&0) {
        return Err(KeyMethodError::EmbeddedNul(field));
    }
    let len = s.len() + 1;
    if len > max {
        return Err(KeyMethodError::FieldTooLong { field, len, max });
    }
    // `max` never exceeds u16::MAX, so this fits.
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
    Ok(())
}

/// The inputs of the legacy TLS1-PRF data-key derivation (§5.2), taken from both records
/// and both session ids, in the order `crypto::keys::Key2::from_tls1_prf` wants them.
#[derive(Debug)]
pub struct Tls1PrfInputs<'a> {
    /// The client's pre-master secret.
    pub pre_master: &'a [u8; PRE_MASTER_LEN],
    /// Client random1.
    pub client_random1: &'a [u8; RANDOM_LEN],
    /// Server random1.
    pub server_random1: &'a [u8; RANDOM_LEN],
    /// Client random2.
    pub client_random2: &'a [u8; RANDOM_LEN],
    /// Server random2.
    pub server_random2: &'a [u8; RANDOM_LEN],
    /// The client's session id.
    pub client_sid: [u8; 8],
    /// The server's session id.
    pub server_sid: [u8; 8],
}

impl<'a> Tls1PrfInputs<'a> {
    /// Collects the inputs; fails if `client` has no pre-master secret.
    pub fn new(
        client: &'a KeySource,
        server: &'a KeySource,
        client_sid: [u8; 8],
        server_sid: [u8; 8],
    ) -> Result<Self, KeyMethodError> {
        let pre_master = client
            .pre_master
            .as_ref()
            .ok_or(KeyMethodError::WrongKeySource(Sender::Client))?;
        Ok(Self {
            pre_master,
            client_random1: &client.random1,
            server_random1: &server.random1,
            client_random2: &client.random2,
            server_random2: &server.random2,
            client_sid,
            server_sid,
        })
    }
}

// ---------------------------------------------------------------------------------------
// OCC options string
// ---------------------------------------------------------------------------------------

/// What the OCC options string depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OccParams {
    /// `tls-client` or `tls-server` at the end.
    pub role: Role,
    /// `tun-mtu` (or the second `tun-mtu` argument when given).
    pub tun_mtu: u16,
    /// `auth` digest.
    pub auth: Digest,
    /// A legacy `cipher` that is also in data-ciphers (announced as `cipher X`).
    pub cipher: Option<DataCipher>,
    /// tls-auth in use (adds `,tls-auth`).
    pub tls_auth: bool,
    /// tls-auth key direction (adds `,keydir N`).
    pub key_direction: Option<KeyDirection>,
}

impl OccParams {
    /// The parameters for a parsed config.
    pub fn from_options(o: &Options) -> Self {
        let (tls_auth, key_direction) = match o.tls_wrap() {
            TlsWrap::Auth { key, .. } => (true, key.direction),
            _ => (false, None),
        };
        OccParams {
            role: o.role,
            tun_mtu: o.occ_mtu.unwrap_or(o.tun_mtu),
            auth: o.auth,
            cipher: o.cipher.filter(|c| o.data_ciphers.contains(c)),
            tls_auth,
            key_direction,
        }
    }

    /// The `link-mtu` value 2.6 announces (its old-style frame size for the configured
    /// cipher, or for BF-CBC when no `cipher` is set).
    pub fn link_mtu(&self) -> u32 {
        let payload = u32::from(self.tun_mtu);
        let opcode = 1;
        let packet_id = 4;
        match self.cipher {
            // AEAD: tag 16, plus the IV (12) and block size (1) old clients counted.
            Some(_) => payload + opcode + packet_id + 16 + 12 + 1,
            // BF-CBC placeholder: 8 block + 8 IV, then HMAC of `auth`.
            None => payload + 16 + opcode + packet_id + self.auth.output_len() as u32,
        }
    }

    /// Builds the options string as stock 2.6 sends it, e.g.
    /// `V4,dev-type tun,link-mtu 1541,tun-mtu 1500,proto UDPv4,auth SHA1,keysize 128,key-method 2,tls-client`.
    pub fn options_string(&self) -> String {
        let mut s = format!(
            "V4,dev-type tun,link-mtu {},tun-mtu {},proto UDPv4",
            self.link_mtu(),
            self.tun_mtu
        );
        if self.tls_auth
            && let Some(d) = self.key_direction
        {
            s.push_str(",keydir ");
            s.push_str(d.as_str());
        }
        match self.cipher {
            Some(c) => {
                s.push_str(&format!(
                    ",cipher {},auth [null-digest],keysize {}",
                    c.name(),
                    c.key_len() * 8
                ));
            }
            None => s.push_str(&format!(",auth {},keysize 128", self.auth.name())),
        }
        if self.tls_auth {
            s.push_str(",tls-auth");
        }
        s.push_str(",key-method 2");
        s.push_str(match self.role {
            Role::Client => ",tls-client",
            Role::Server => ",tls-server",
        });
        s
    }

    /// The string we expect from the peer: ours with the role (and tls-auth key direction)
    /// swapped. A difference is only worth a warning, as in 2.6.
    pub fn expected_remote_string(&self) -> String {
        let mut p = self.clone();
        p.role = match self.role {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        };
        p.key_direction = self.key_direction.map(|d| match d {
            KeyDirection::Normal => KeyDirection::Inverse,
            KeyDirection::Inverse => KeyDirection::Normal,
        });
        p.options_string()
    }
}

/// Compares a received OCC string with the expected one the way 2.6 does: strings of
/// different versions (first two characters) are not compared. Returns the differing
/// comma-separated items (`(ours, theirs)`) for a warning; empty means equal.
pub fn occ_differences(expected: &str, received: &str) -> Vec<String> {
    if expected.get(..2) != received.get(..2) {
        return Vec::new();
    }
    let ours: Vec<&str> = expected.split(',').collect();
    let theirs: Vec<&str> = received.split(',').collect();
    let mut out = Vec::new();
    for t in &theirs {
        if !ours.contains(t) {
            out.push(format!("peer has '{t}'"));
        }
    }
    for o in &ours {
        if !theirs.contains(o) {
            out.push(format!("peer lacks '{o}'"));
        }
    }
    out
}

/// Extracts the argument of `key` from an OCC options string (e.g. `cipher`), as 2.6's
/// `options_string_extract_option` does for poor man's NCP.
pub fn occ_option<'a>(options: &'a str, key: &str) -> Option<&'a str> {
    options.split(',').find_map(|item| {
        let (k, v) = item.split_once(' ')?;
        (k == key).then_some(v)
    })
}

// ---------------------------------------------------------------------------------------
// Peer info
// ---------------------------------------------------------------------------------------

/// One `IV_PROTO` capability bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IvProtoFlag {
    /// Bit 1: P_DATA_V2 and a pushed peer-id.
    DataV2,
    /// Bit 2: PUSH_REPLY may come without PUSH_REQUEST.
    RequestPush,
    /// Bit 3: TLS keying-material export (tls-ekm).
    TlsKeyExport,
    /// Bit 4: `AUTH_PENDING,timeout N`.
    AuthPendingKw,
    /// Bit 5: P2P NCP.
    NcpP2p,
    /// Bit 6: the `dns` option.
    DnsOption,
    /// Bit 7: `EXIT` on the control channel; `protocol-flags`.
    CcExitNotify,
    /// Bit 8: `AUTH_FAILED,TEMP`.
    AuthFailTemp,
    /// Bit 9: dynamic tls-crypt.
    DynTlsCrypt,
    /// Bit 10: epoch data format (2.7).
    DataEpoch,
    /// Bit 11: `dns` option v2 (2.7).
    DnsOptionV2,
    /// Bit 12: push updates (2.7).
    PushUpdate,
}

impl IvProtoFlag {
    /// Every flag, in bit order.
    pub const ALL: [IvProtoFlag; 12] = [
        IvProtoFlag::DataV2,
        IvProtoFlag::RequestPush,
        IvProtoFlag::TlsKeyExport,
        IvProtoFlag::AuthPendingKw,
        IvProtoFlag::NcpP2p,
        IvProtoFlag::DnsOption,
        IvProtoFlag::CcExitNotify,
        IvProtoFlag::AuthFailTemp,
        IvProtoFlag::DynTlsCrypt,
        IvProtoFlag::DataEpoch,
        IvProtoFlag::DnsOptionV2,
        IvProtoFlag::PushUpdate,
    ];

    /// The bit value.
    pub fn bit(self) -> u32 {
        1 << (self as u32 + 1)
    }
}

/// The `IV_PROTO` value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IvProto(pub u32);

impl IvProto {
    /// What this implementation supports as a client: DATA_V2, REQUEST_PUSH,
    /// TLS_KEY_EXPORT, CC_EXIT_NOTIFY, AUTH_FAIL_TEMP (= 398). Not announced: auth-pending
    /// keywords (no web auth), the `dns` option, dynamic tls-crypt.
    pub const SUPPORTED_CLIENT: IvProto = IvProto(2 | 4 | 8 | 128 | 256);

    /// True if `flag` is set.
    pub fn has(self, flag: IvProtoFlag) -> bool {
        self.0 & flag.bit() != 0
    }

    /// The set flags, in bit order.
    pub fn flags(self) -> Vec<IvProtoFlag> {
        IvProtoFlag::ALL
            .into_iter()
            .filter(|f| self.has(*f))
            .collect()
    }

    /// Bits set that no known flag names (bit 0 included).
    pub fn unknown_bits(self) -> u32 {
        IvProtoFlag::ALL
            .iter()
            .fold(self.0, |acc, f| acc & !f.bit())
    }
}

/// Parsed peer-info: `KEY=value` lines in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The variables in the order received.
    pub vars: Vec<(String, String)>,
}

impl PeerInfo {
    /// Parses `KEY=value\n` lines; lines without `=` are skipped; a later duplicate does
    /// not replace the first (2.6 looks up the first match).
    pub fn parse(text: &str) -> Self {
        let vars = text
            .split('\n')
            .filter_map(|l| {
                let l = l.trim_end_matches('\r');
                let (k, v) = l.split_once('=')?;
                (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
            })
            .collect();
        PeerInfo { vars }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `IV_PROTO` (0 when absent or not a number).
    pub fn iv_proto(&self) -> IvProto {
        IvProto(self.get("IV_PROTO").and_then(leading_int).unwrap_or(0))
    }

    /// `IV_NCP` (0 when absent).
    pub fn ncp_version(&self) -> u32 {
        self.get("IV_NCP").and_then(leading_int).unwrap_or(0)
    }

    /// `IV_CIPHERS` split on `:`.
    pub fn ciphers(&self) -> Option<Vec<&str>> {
        self.get("IV_CIPHERS")
            .map(|v| v.split(':').filter(|c| !c.is_empty()).collect())
    }

    /// `IV_MTU`, when it is a number.
    pub fn mtu(&self) -> Option<u32> {
        self.get("IV_MTU").and_then(leading_int)
    }

    /// `IV_VER`.
    pub fn version(&self) -> Option<&str> {
        self.get("IV_VER")
    }

    /// `IV_PLAT`.
    pub fn platform(&self) -> Option<&str> {
        self.get("IV_PLAT")
    }

    /// True if the peer negotiates ciphers (`IV_NCP >= 2` or `IV_CIPHERS`), as 2.6's
    /// `tls_peer_supports_ncp`.
    pub fn supports_ncp(&self) -> bool {
        self.ncp_version() >= 2 || self.get("IV_CIPHERS").is_some()
    }
}

/// `sscanf("%d")`-like: the leading decimal digits.
fn leading_int(v: &str) -> Option<u32> {
    let end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    v[..end].parse().ok()
}

/// Builds the peer-info a client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfoBuilder {
    /// `IV_VER`: the OpenVPN protocol level we implement.
    pub version: String,
    /// `IV_PLAT`.
    pub platform: String,
    /// `IV_MTU`: the largest tunnel MTU we accept in a push (`tun-max-mtu`, 1600 in 2.6).
    pub max_mtu: u16,
    /// `IV_CIPHERS` (and `IV_NCP=2` when both AES-GCM sizes are in it).
    pub ciphers: Vec<DataCipher>,
    /// `IV_PROTO`.
    pub iv_proto: IvProto,
    /// Extra `UV_*`/`IV_GUI_VER` lines.
    pub extra: Vec<(String, String)>,
}

impl PeerInfoBuilder {
    /// A client's defaults for these data ciphers.
    pub fn client(ciphers: &[DataCipher]) -> Self {
        PeerInfoBuilder {
            version: "2.6.14".into(),
            platform: "linux".into(),
            max_mtu: 1600,
            ciphers: ciphers.to_vec(),
            iv_proto: IvProto::SUPPORTED_CLIENT,
            extra: Vec::new(),
        }
    }

    /// The text, in 2.6's order (IV_VER, IV_PLAT, IV_TCPNL, IV_MTU, IV_NCP, IV_CIPHERS,
    /// IV_PROTO, extras), each line ending in `\n`. No compression stubs: like a DCO
    /// client we do not announce them.
    pub fn build(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "IV_VER={}\nIV_PLAT={}\nIV_TCPNL=1\n",
            self.version, self.platform
        ));
        s.push_str(&format!("IV_MTU={}\n", self.max_mtu));
        if self.ciphers.contains(&DataCipher::Aes128Gcm)
            && self.ciphers.contains(&DataCipher::Aes256Gcm)
        {
            s.push_str("IV_NCP=2\n");
        }
        s.push_str(&format!(
            "IV_CIPHERS={}\n",
            DataCipher::list_string(&self.ciphers)
        ));
        s.push_str(&format!("IV_PROTO={}\n", self.iv_proto.0));
        for (k, v) in &self.extra {
            s.push_str(&format!("{k}={v}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests;
