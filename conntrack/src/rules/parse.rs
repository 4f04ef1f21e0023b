//! Parser for the rules file: one statement per line, nftables-like words.

use super::{Action, ByteSet, IcmpxCode, Match, Net, Policy, RejectWith, Rule, RuleSet};
use crate::ctx::CtState;
use crate::packet::Family;
use crate::tuple::CtDir;
use crate::wire;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A syntax or meaning error, with 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {msg}")]
pub struct RuleError {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub col: u32,
    /// What is wrong, and what to write instead where we can tell.
    pub msg: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok<'a> {
    Word(&'a str),
    Str(String),
    LBrace,
    RBrace,
    Comma,
    Ne,
    EqEq,
}

#[derive(Debug, Clone)]
struct Token<'a> {
    tok: Tok<'a>,
    col: u32,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-')
}

/// Split a line into tokens; `#` starts a comment outside strings.
fn lex(line: &str, lineno: u32) -> Result<(Vec<Token<'_>>, u32, usize), RuleError> {
    let mut toks = Vec::new();
    let mut it = line.char_indices().peekable();
    let mut col = 0u32;
    let mut code_end = line.len();
    let err = |col: u32, msg: String| RuleError {
        line: lineno,
        col,
        msg,
    };
    while let Some((i, c)) = it.next() {
        col += 1;
        match c {
            '#' => {
                code_end = i;
                break;
            }
            c if c.is_whitespace() => {}
            '{' => toks.push(Token {
                tok: Tok::LBrace,
                col,
            }),
            '}' => toks.push(Token {
                tok: Tok::RBrace,
                col,
            }),
            ',' => toks.push(Token {
                tok: Tok::Comma,
                col,
            }),
            '!' | '=' => {
                if it.peek().map(|&(_, n)| n) == Some('=') {
                    it.next();
                    toks.push(Token {
                        tok: if c == '!' { Tok::Ne } else { Tok::EqEq },
                        col,
                    });
                    col += 1;
                } else {
                    return Err(err(col, format!("unexpected '{c}' (use '!=' or '==')")));
                }
            }
            '"' => {
                let start = col;
                let mut s = String::new();
                let mut closed = false;
                while let Some((_, c)) = it.next() {
                    col += 1;
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => {
                            col += 1;
                            match it.next() {
                                Some((_, e @ ('"' | '\\'))) => s.push(e),
                                Some((_, e)) => {
                                    return Err(err(col, format!("unknown escape '\\{e}'")));
                                }
                                None => break,
                            }
                        }
                        c => s.push(c),
                    }
                }
                if !closed {
                    return Err(err(start, "unterminated string".into()));
                }
                toks.push(Token {
                    tok: Tok::Str(s),
                    col: start,
                });
            }
            c if is_word_char(c) => {
                let start = col;
                let mut end = i + c.len_utf8();
                while let Some(&(j, n)) = it.peek() {
                    if !is_word_char(n) {
                        break;
                    }
                    it.next();
                    col += 1;
                    end = j + n.len_utf8();
                }
                toks.push(Token {
                    tok: Tok::Word(&line[i..end]),
                    col: start,
                });
            }
            c => return Err(err(col, format!("unexpected character '{c}'"))),
        }
    }
    Ok((toks, col + 1, code_end))
}

fn describe(t: &Tok<'_>) -> String {
    match t {
        Tok::Word(w) => format!("'{w}'"),
        Tok::Str(s) => format!("\"{s}\""),
        Tok::LBrace => "'{'".into(),
        Tok::RBrace => "'}'".into(),
        Tok::Comma => "','".into(),
        Tok::Ne => "'!='".into(),
        Tok::EqEq => "'=='".into(),
    }
}

/// What a rule implies about family, protocol and path, to catch contradictions.
#[derive(Default)]
struct Implied {
    family: Option<(Family, u32)>,
    proto: Option<(u8, u32)>,
    src_peer: Option<(bool, u32)>,
    dst_peer: Option<(bool, u32)>,
}

struct LineParser<'a> {
    toks: Vec<Token<'a>>,
    pos: usize,
    line: u32,
    eol_col: u32,
    implied: Implied,
    matches: Vec<Match>,
}

type R<T> = Result<T, RuleError>;

impl<'a> LineParser<'a> {
    fn err(&self, col: u32, msg: impl Into<String>) -> RuleError {
        RuleError {
            line: self.line,
            col,
            msg: msg.into(),
        }
    }

    fn peek(&self) -> Option<&Token<'a>> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn col(&self) -> u32 {
        self.peek().map_or(self.eol_col, |t| t.col)
    }

    /// Next token must be a word; returns it and its column.
    fn word(&mut self, what: &str) -> R<(&'a str, u32)> {
        match self.next() {
            Some(Token {
                tok: Tok::Word(w),
                col,
            }) => Ok((w, col)),
            Some(t) => Err(self.err(
                t.col,
                format!("expected {what}, found {}", describe(&t.tok)),
            )),
            None => Err(self.err(self.eol_col, format!("expected {what} at end of line"))),
        }
    }

    /// Optional `!=` / `==`; returns whether negated.
    fn op(&mut self) -> bool {
        match self.peek().map(|t| &t.tok) {
            Some(Tok::Ne) => {
                self.pos += 1;
                true
            }
            Some(Tok::EqEq) => {
                self.pos += 1;
                false
            }
            _ => false,
        }
    }

    /// A value list: `v`, `v,v,...` or `{ v, v, ... }`.
    fn values<T>(
        &mut self,
        what: &str,
        mut one: impl FnMut(&Self, &Tok<'a>, u32) -> R<T>,
    ) -> R<Vec<T>> {
        let mut out = Vec::new();
        let braced = matches!(self.peek().map(|t| &t.tok), Some(Tok::LBrace));
        if braced {
            self.pos += 1;
        }
        loop {
            let t = match self.next() {
                Some(t) => t,
                None => {
                    let msg = if braced {
                        format!("expected {what} or '}}' at end of line")
                    } else {
                        format!("expected {what} at end of line")
                    };
                    return Err(self.err(self.eol_col, msg));
                }
            };
            match t.tok {
                Tok::RBrace if braced && !out.is_empty() => return Ok(out),
                Tok::RBrace | Tok::LBrace | Tok::Comma | Tok::Ne | Tok::EqEq => {
                    return Err(self.err(
                        t.col,
                        format!("expected {what}, found {}", describe(&t.tok)),
                    ));
                }
                ref tok => out.push(one(self, tok, t.col)?),
            }
            match self.peek().map(|t| &t.tok) {
                Some(Tok::Comma) => {
                    self.pos += 1;
                    if braced && matches!(self.peek().map(|t| &t.tok), Some(Tok::RBrace)) {
                        self.pos += 1;
                        return Ok(out);
                    }
                }
                Some(Tok::RBrace) if braced => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ if braced => {
                    let c = self.col();
                    return Err(self.err(c, "expected ',' or '}' in set"));
                }
                _ => return Ok(out),
            }
        }
    }

    fn imply_family(&mut self, f: Family, col: u32) -> R<()> {
        match self.implied.family {
            Some((g, _)) if g != f => Err(self.err(
                col,
                format!(
                    "this matches {} only but the rule already matches {} only",
                    f.name(),
                    g.name()
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.implied.family = Some((f, col));
                Ok(())
            }
        }
    }

    fn imply_proto(&mut self, p: u8, col: u32) -> R<()> {
        match self.implied.proto {
            Some((q, _)) if q != p => Err(self.err(
                col,
                format!(
                    "this matches protocol {} but the rule already matches protocol {}",
                    wire::proto_name(p),
                    wire::proto_name(q)
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.implied.proto = Some((p, col));
                Ok(())
            }
        }
    }

    fn imply_side(&mut self, dst: bool, is_peer: bool, col: u32) -> R<()> {
        let slot = if dst {
            &mut self.implied.dst_peer
        } else {
            &mut self.implied.src_peer
        };
        match *slot {
            Some((v, _)) if v != is_peer => {
                let side = if dst { "destination" } else { "source" };
                Err(self.err(
                    col,
                    format!(
                        "contradicts an earlier match on whether the {side} is a peer or the host"
                    ),
                ))
            }
            Some(_) => Ok(()),
            None => {
                *slot = Some((is_peer, col));
                let m = if dst {
                    Match::DstIsPeer(is_peer)
                } else {
                    Match::SrcIsPeer(is_peer)
                };
                self.matches.push(m);
                Ok(())
            }
        }
    }

    fn ct(&mut self) -> R<()> {
        let (w, col) = self.word("'state' or 'direction' after 'ct'")?;
        match w {
            "state" => {
                let neg = self.op();
                let states = self.values("a state (new, established, related, invalid, untracked)", |p, t, c| {
                    let Tok::Word(w) = t else {
                        return Err(p.err(c, format!("expected a state, found {}", describe(t))));
                    };
                    Ok(match *w {
                        "new" => CtState::New,
                        "established" => CtState::Established,
                        "related" => CtState::Related,
                        "invalid" => CtState::Invalid,
                        "untracked" => CtState::Untracked,
                        _ => {
                            return Err(p.err(
                                c,
                                format!("unknown state '{w}' (use new, established, related, invalid or untracked)"),
                            ));
                        }
                    })
                })?;
                let mut mask = states.iter().fold(0u8, |m, s| m | s.bit());
                if neg {
                    mask = !mask & 0x1f;
                }
                self.matches.push(Match::CtState(mask));
            }
            "direction" => {
                let neg = self.op();
                let (d, c) = self.word("'original' or 'reply'")?;
                let mut dir = match d {
                    "original" => CtDir::Original,
                    "reply" => CtDir::Reply,
                    _ => {
                        return Err(
                            self.err(c, format!("expected 'original' or 'reply', found '{d}'"))
                        );
                    }
                };
                if neg {
                    dir = match dir {
                        CtDir::Original => CtDir::Reply,
                        CtDir::Reply => CtDir::Original,
                    };
                }
                self.matches.push(Match::CtDirection(dir));
            }
            _ => {
                return Err(self.err(
                    col,
                    format!("unknown 'ct' match '{w}' (use 'ct state' or 'ct direction')"),
                ));
            }
        }
        Ok(())
    }

    fn addr(&mut self, family: Family, fcol: u32) -> R<()> {
        let (w, col) = self.word(match family {
            Family::Ipv4 => "'saddr', 'daddr' or 'protocol' after 'ip'",
            Family::Ipv6 => "'saddr', 'daddr' or 'nexthdr' after 'ip6'",
        })?;
        self.imply_family(family, fcol)?;
        let dst = match (w, family) {
            ("saddr", _) => false,
            ("daddr", _) => true,
            ("protocol", Family::Ipv4) | ("nexthdr", Family::Ipv6) => {
                self.matches.push(Match::Family(family));
                return self.l4proto();
            }
            _ => {
                return Err(self.err(
                    col,
                    format!("unknown address match '{w}' (use saddr or daddr)"),
                ));
            }
        };
        let neg = self.op();
        let nets = self.values("an address or prefix", |p, t, c| p.net(family, t, c))?;
        self.matches.push(Match::Addr {
            dst,
            family,
            neg,
            nets,
        });
        Ok(())
    }

    fn net(&self, family: Family, t: &Tok<'_>, col: u32) -> R<Net> {
        let Tok::Word(w) = t else {
            return Err(self.err(col, format!("expected an address, found {}", describe(t))));
        };
        let (a, len) = match w.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (*w, None),
        };
        let (bytes, max) = match family {
            Family::Ipv4 => match a.parse::<Ipv4Addr>() {
                Ok(v) => {
                    let mut b = [0u8; 16];
                    b[..4].copy_from_slice(&v.octets());
                    (b, 32u32)
                }
                Err(_) if a.parse::<Ipv6Addr>().is_ok() => {
                    return Err(self.err(
                        col,
                        format!("'{a}' is an IPv6 address: use 'ip6 saddr/daddr'"),
                    ));
                }
                Err(_) => return Err(self.err(col, format!("'{a}' is not an IPv4 address"))),
            },
            Family::Ipv6 => match a.parse::<Ipv6Addr>() {
                Ok(v) => (v.octets(), 128u32),
                Err(_) if a.parse::<Ipv4Addr>().is_ok() => {
                    return Err(self.err(
                        col,
                        format!("'{a}' is an IPv4 address: use 'ip saddr/daddr'"),
                    ));
                }
                Err(_) => return Err(self.err(col, format!("'{a}' is not an IPv6 address"))),
            },
        };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u32>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(self.err(col, format!("prefix length '{l}' must be 0 to {max}")));
                }
            },
        };
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        let addr = u128::from_be_bytes(bytes);
        if addr & !mask != 0 {
            let net = addr & mask;
            let shown = match family {
                Family::Ipv4 => Ipv4Addr::from((net >> 96) as u32).to_string(),
                Family::Ipv6 => Ipv6Addr::from(net).to_string(),
            };
            return Err(self.err(
                col,
                format!("'{w}' has host bits set; did you mean {shown}/{len}?"),
            ));
        }
        Ok(Net { addr, mask })
    }

    fn proto_value(&self, t: &Tok<'_>, col: u32) -> R<u8> {
        let Tok::Word(w) = t else {
            return Err(self.err(col, format!("expected a protocol, found {}", describe(t))));
        };
        Ok(match *w {
            "tcp" => wire::IPPROTO_TCP,
            "udp" => wire::IPPROTO_UDP,
            "icmp" => wire::IPPROTO_ICMP,
            "icmpv6" | "ipv6-icmp" => wire::IPPROTO_ICMPV6,
            "gre" => wire::IPPROTO_GRE,
            "esp" => wire::IPPROTO_ESP,
            "ah" => wire::IPPROTO_AH,
            "sctp" => wire::IPPROTO_SCTP,
            "dccp" => 33,
            "udplite" => 136,
            n => n.parse::<u8>().map_err(|_| {
                self.err(col, format!("unknown protocol '{n}' (use a name such as tcp, udp, icmp, icmpv6, gre, esp or a number 0-255)"))
            })?,
        })
    }

    fn l4proto(&mut self) -> R<()> {
        let col = self.col();
        let neg = self.op();
        let protos = self.values("a protocol", |p, t, c| p.proto_value(t, c))?;
        let mut set = ByteSet::default();
        for p in &protos {
            set.insert(*p);
        }
        if let (false, Some(p)) = (neg, set.single()) {
            self.imply_proto(p, col)?;
        }
        self.matches.push(Match::L4Proto { neg, set });
        Ok(())
    }

    fn meta(&mut self) -> R<()> {
        let (w, col) = self.word("'l4proto' or 'nfproto' after 'meta'")?;
        match w {
            "l4proto" => self.l4proto(),
            "nfproto" => {
                let (v, c) = self.word("'ipv4' or 'ipv6'")?;
                let f = match v {
                    "ipv4" => Family::Ipv4,
                    "ipv6" => Family::Ipv6,
                    _ => return Err(self.err(c, format!("expected 'ipv4' or 'ipv6', found '{v}'"))),
                };
                self.imply_family(f, c)?;
                self.matches.push(Match::Family(f));
                Ok(())
            }
            _ => Err(self.err(
                col,
                format!("unknown 'meta' match '{w}' (use 'meta l4proto' or 'meta nfproto')"),
            )),
        }
    }

    fn port_value(&self, t: &Tok<'_>, col: u32) -> R<(u16, u16)> {
        let Tok::Word(w) = t else {
            return Err(self.err(col, format!("expected a port, found {}", describe(t))));
        };
        let num = |s: &str| {
            s.parse::<u16>()
                .map_err(|_| self.err(col, format!("'{s}' is not a port number (0-65535)")))
        };
        match w.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(
                        self.err(col, format!("port range {a}-{b} is empty; write {b}-{a}"))
                    );
                }
                Ok((a, b))
            }
            None => {
                let p = num(w)?;
                Ok((p, p))
            }
        }
    }

    fn tcp_flag(&self, w: &str, col: u32) -> R<u8> {
        Ok(match w {
            "fin" => wire::TCP_FIN,
            "syn" => wire::TCP_SYN,
            "rst" => wire::TCP_RST,
            "psh" => wire::TCP_PSH,
            "ack" => wire::TCP_ACK,
            "urg" => wire::TCP_URG,
            "ecn" | "ece" => wire::TCP_ECE,
            "cwr" => wire::TCP_CWR,
            _ => {
                return Err(self.err(
                    col,
                    format!("unknown TCP flag '{w}' (use fin, syn, rst, psh, ack, urg, ecn, cwr)"),
                ));
            }
        })
    }

    fn flag_list(&mut self) -> R<u8> {
        let flags = self.values("a TCP flag", |p, t, c| match t {
            Tok::Word(w) => p.tcp_flag(w, c),
            _ => Err(p.err(c, format!("expected a TCP flag, found {}", describe(t)))),
        })?;
        Ok(flags.into_iter().fold(0, |a, f| a | f))
    }

    /// `tcp flags [!=|==] f,f [/ f,f]`.
    fn tcp_flags(&mut self) -> R<()> {
        let (neg, exact) = match self.peek().map(|t| &t.tok) {
            Some(Tok::Ne) => {
                self.pos += 1;
                (true, false)
            }
            Some(Tok::EqEq) => {
                self.pos += 1;
                (false, true)
            }
            _ => (false, false),
        };
        let value = self.flag_list()?;
        let mask = if matches!(self.peek().map(|t| &t.tok), Some(Tok::Word("/"))) {
            self.pos += 1;
            let m = self.flag_list()?;
            if value & !m != 0 {
                let c = self.col();
                return Err(self.err(c, "flags before '/' must all be in the mask after it"));
            }
            m
        } else if exact {
            0xff
        } else {
            value
        };
        self.matches.push(Match::TcpFlags { mask, value, neg });
        Ok(())
    }

    fn transport(&mut self, kw: &str, kcol: u32) -> R<()> {
        let proto = match kw {
            "tcp" => Some(wire::IPPROTO_TCP),
            "udp" => Some(wire::IPPROTO_UDP),
            _ => None,
        };
        if let Some(p) = proto {
            self.imply_proto(p, kcol)?;
        }
        let (w, col) = self.word(if kw == "tcp" {
            "'sport', 'dport' or 'flags' after 'tcp'"
        } else {
            "'sport' or 'dport'"
        })?;
        let dst = match w {
            "sport" => false,
            "dport" => true,
            "flags" if kw == "tcp" => return self.tcp_flags(),
            _ => {
                return Err(self.err(
                    col,
                    format!("unknown '{kw}' match '{w}' (use sport or dport)"),
                ));
            }
        };
        let neg = self.op();
        let ranges = self.values("a port or port range", |p, t, c| p.port_value(t, c))?;
        self.matches.push(Match::Port {
            dst,
            proto,
            neg,
            ranges,
        });
        Ok(())
    }

    fn icmp_value(&self, v6: bool, t: &Tok<'_>, col: u32) -> R<u8> {
        let Tok::Word(w) = t else {
            return Err(self.err(col, format!("expected an ICMP type, found {}", describe(t))));
        };
        let v4_names: &[(&str, u8)] = &[
            ("echo-reply", 0),
            ("destination-unreachable", 3),
            ("source-quench", 4),
            ("redirect", 5),
            ("echo-request", 8),
            ("router-advertisement", 9),
            ("router-solicitation", 10),
            ("time-exceeded", 11),
            ("parameter-problem", 12),
            ("timestamp-request", 13),
            ("timestamp-reply", 14),
            ("info-request", 15),
            ("info-reply", 16),
            ("address-mask-request", 17),
            ("address-mask-reply", 18),
        ];
        let v6_names: &[(&str, u8)] = &[
            ("destination-unreachable", 1),
            ("packet-too-big", 2),
            ("time-exceeded", 3),
            ("parameter-problem", 4),
            ("echo-request", 128),
            ("echo-reply", 129),
            ("mld-listener-query", 130),
            ("mld-listener-report", 131),
            ("mld-listener-done", 132),
            ("mld-listener-reduction", 132),
            ("nd-router-solicit", 133),
            ("nd-router-advert", 134),
            ("nd-neighbor-solicit", 135),
            ("nd-neighbor-advert", 136),
            ("nd-redirect", 137),
            ("router-renumbering", 138),
            ("ind-neighbor-solicit", 141),
            ("ind-neighbor-advert", 142),
            ("mld2-listener-report", 143),
        ];
        let names = if v6 { v6_names } else { v4_names };
        if let Some((_, v)) = names.iter().find(|(n, _)| n == w) {
            return Ok(*v);
        }
        w.parse::<u8>().map_err(|_| {
            self.err(
                col,
                format!(
                    "unknown {} type '{w}' (use a name such as echo-request, destination-unreachable, or a number 0-255)",
                    if v6 { "ICMPv6" } else { "ICMP" }
                ),
            )
        })
    }

    fn icmp(&mut self, v6: bool, kcol: u32) -> R<()> {
        let family = if v6 { Family::Ipv6 } else { Family::Ipv4 };
        self.imply_family(family, kcol)?;
        self.imply_proto(
            if v6 {
                wire::IPPROTO_ICMPV6
            } else {
                wire::IPPROTO_ICMP
            },
            kcol,
        )?;
        let (w, col) = self.word("'type' or 'code'")?;
        let neg = self.op();
        let mut set = ByteSet::default();
        match w {
            "type" => {
                for v in self.values("an ICMP type", |p, t, c| p.icmp_value(v6, t, c))? {
                    set.insert(v);
                }
                self.matches.push(Match::IcmpType { v6, neg, set });
            }
            "code" => {
                for v in self.values("an ICMP code", |p, t, c| match t {
                    Tok::Word(w) => w
                        .parse::<u8>()
                        .map_err(|_| p.err(c, format!("'{w}' is not an ICMP code (0-255)"))),
                    _ => Err(p.err(c, format!("expected an ICMP code, found {}", describe(t)))),
                })? {
                    set.insert(v);
                }
                self.matches.push(Match::IcmpCode { v6, neg, set });
            }
            _ => return Err(self.err(col, format!("unknown ICMP match '{w}' (use type or code)"))),
        }
        Ok(())
    }

    /// Optional identity after `from-peer` / `to-peer`.
    fn peer_ident(&mut self, dst: bool) -> R<()> {
        let Some(Token {
            tok: Tok::Word(w), ..
        }) = self.peek()
        else {
            return Ok(());
        };
        match *w {
            "cn" => {
                self.pos += 1;
                let neg = self.op();
                let names = self.values("a common name in quotes", |p, t, c| match t {
                    Tok::Str(s) => Ok(s.clone().into_boxed_str()),
                    Tok::Word(w) => Ok((*w).into()),
                    _ => Err(p.err(c, format!("expected a common name, found {}", describe(t)))),
                })?;
                self.matches.push(Match::PeerCn { dst, neg, names });
            }
            "peer-id" => {
                self.pos += 1;
                let neg = self.op();
                let ranges = self.values("a peer id or range", |p, t, c| {
                    let Tok::Word(w) = t else {
                        return Err(p.err(c, format!("expected a peer id, found {}", describe(t))));
                    };
                    let num = |s: &str| {
                        s.parse::<u32>()
                            .ok()
                            .filter(|v| *v <= 0x00ff_ffff)
                            .ok_or_else(|| p.err(c, format!("'{s}' is not a peer id (0-16777215)")))
                    };
                    match w.split_once('-') {
                        Some((a, b)) => {
                            let (a, b) = (num(a)?, num(b)?);
                            if a > b {
                                return Err(p.err(c, format!("peer id range {a}-{b} is empty")));
                            }
                            Ok((a, b))
                        }
                        None => {
                            let v = num(w)?;
                            Ok((v, v))
                        }
                    }
                })?;
                self.matches.push(Match::PeerId { dst, neg, ranges });
            }
            _ => {}
        }
        Ok(())
    }

    fn reject_with(&mut self) -> R<RejectWith> {
        if !matches!(self.peek().map(|t| &t.tok), Some(Tok::Word("with"))) {
            return Ok(RejectWith::Auto);
        }
        self.pos += 1;
        let (w, col) = self.word("'tcp reset' or 'icmpx <code>' after 'reject with'")?;
        match w {
            "tcp" => {
                let (r, c) = self.word("'reset' after 'reject with tcp'")?;
                if r != "reset" {
                    return Err(self.err(c, format!("expected 'reset', found '{r}'")));
                }
                match self.implied.proto {
                    Some((wire::IPPROTO_TCP, _)) => Ok(RejectWith::TcpReset),
                    _ => Err(self.err(
                        col,
                        "'reject with tcp reset' needs a tcp match in the rule (e.g. 'meta l4proto tcp' or 'tcp dport 22')",
                    )),
                }
            }
            "icmpx" | "icmp" | "icmpv6" => {
                let (mut c, mut ccol) = self.word("an ICMP code name")?;
                if c == "type" {
                    (c, ccol) = self.word("an ICMP code name")?;
                }
                Ok(RejectWith::Icmpx(match c {
                    "port-unreachable" => IcmpxCode::PortUnreachable,
                    "host-unreachable" | "addr-unreachable" => IcmpxCode::HostUnreachable,
                    "no-route" | "net-unreachable" => IcmpxCode::NoRoute,
                    "admin-prohibited" => IcmpxCode::AdminProhibited,
                    _ => {
                        return Err(self.err(
                            ccol,
                            format!("unknown reject code '{c}' (use port-unreachable, host-unreachable, no-route or admin-prohibited)"),
                        ));
                    }
                }))
            }
            _ => Err(self.err(
                col,
                format!("expected 'tcp reset' or 'icmpx <code>', found '{w}'"),
            )),
        }
    }

    fn comment(&mut self) -> R<()> {
        match self.next() {
            Some(Token {
                tok: Tok::Str(_), ..
            }) => Ok(()),
            Some(t) => Err(self.err(
                t.col,
                format!("expected a quoted comment, found {}", describe(&t.tok)),
            )),
            None => Err(self.err(self.eol_col, "expected a quoted comment at end of line")),
        }
    }

    fn rule(mut self, text: &str) -> R<Rule> {
        let mut action = None;
        while let Some(t) = self.next() {
            let (w, col) = match t.tok {
                Tok::Word(w) => (w, t.col),
                ref other => {
                    return Err(self.err(
                        t.col,
                        format!("expected a match or an action, found {}", describe(other)),
                    ));
                }
            };
            if action.is_some() && w != "comment" && w != "counter" {
                return Err(self.err(
                    col,
                    format!("'{w}' after the verdict: matches go before accept/drop/reject"),
                ));
            }
            match w {
                "ct" => self.ct()?,
                "ip" => self.addr(Family::Ipv4, col)?,
                "ip6" => self.addr(Family::Ipv6, col)?,
                "meta" => self.meta()?,
                "tcp" | "udp" | "th" => self.transport(w, col)?,
                "icmp" => self.icmp(false, col)?,
                "icmpv6" => self.icmp(true, col)?,
                "from-peer" => {
                    self.imply_side(false, true, col)?;
                    self.peer_ident(false)?;
                }
                "to-peer" => {
                    self.imply_side(true, true, col)?;
                    self.peer_ident(true)?;
                }
                "between-peers" => {
                    self.imply_side(false, true, col)?;
                    self.imply_side(true, true, col)?;
                }
                "from-host" => self.imply_side(false, false, col)?,
                "to-host" => self.imply_side(true, false, col)?,
                "cn" | "peer-id" => {
                    return Err(self.err(
                        col,
                        format!(
                            "'{w}' needs a side: write 'from-peer {w} ...' or 'to-peer {w} ...'"
                        ),
                    ));
                }
                "counter" => {}
                "comment" => self.comment()?,
                "accept" => action = Some(Action::Accept),
                "drop" => action = Some(Action::Drop),
                "reject" => action = Some(Action::Reject(self.reject_with()?)),
                "policy" => {
                    return Err(self.err(
                        col,
                        "'policy' must be alone on its line: 'policy accept' or 'policy drop'",
                    ));
                }
                _ => {
                    return Err(self.err(
                        col,
                        format!("unknown keyword '{w}' (expected a match such as 'ct state', 'ip saddr', 'tcp dport', 'from-peer', or accept/drop/reject)"),
                    ));
                }
            }
        }
        Ok(Rule {
            matches: self.matches,
            action: action.unwrap_or(Action::Continue),
            line: self.line,
            text: text.into(),
        })
    }
}

/// Parse a whole ruleset.
pub(super) fn parse(text: &str) -> Result<RuleSet, RuleError> {
    let mut policy: Option<(Policy, u32)> = None;
    let mut rules = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let lineno = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let (toks, eol_col, code_end) = lex(raw, lineno)?;
        if toks.is_empty() {
            continue;
        }
        if let Tok::Word("policy") = toks[0].tok {
            let err = |col, msg: String| RuleError {
                line: lineno,
                col,
                msg,
            };
            if let Some((_, l)) = policy {
                return Err(err(toks[0].col, format!("policy already set on line {l}")));
            }
            let p = match toks.get(1).map(|t| &t.tok) {
                Some(Tok::Word("accept")) => Policy::Accept,
                Some(Tok::Word("drop")) => Policy::Drop,
                Some(t) => {
                    return Err(err(
                        toks[1].col,
                        format!(
                            "expected 'accept' or 'drop' after 'policy', found {}",
                            describe(t)
                        ),
                    ));
                }
                None => {
                    return Err(err(
                        eol_col,
                        "expected 'accept' or 'drop' after 'policy'".into(),
                    ));
                }
            };
            if let Some(t) = toks.get(2) {
                return Err(err(
                    t.col,
                    format!("unexpected {} after the policy", describe(&t.tok)),
                ));
            }
            policy = Some((p, lineno));
            continue;
        }
        let text = raw[..code_end].trim();
        let lp = LineParser {
            toks,
            pos: 0,
            line: lineno,
            eol_col,
            implied: Implied::default(),
            matches: Vec::new(),
        };
        rules.push(lp.rule(text)?);
    }
    let (policy, line) = policy.unwrap_or((Policy::Accept, 0));
    Ok(RuleSet::new(policy, line, rules))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> RuleError {
        parse(text).expect_err("should fail")
    }

    #[test]
    fn example_ruleset_parses() {
        let rs = parse(
            "policy drop\n\
             ct state established,related accept\n\
             ct state invalid drop\n\
             from-peer cn \"alice\" ip daddr 10.8.0.0/24 tcp dport 22 accept\n\
             between-peers tcp dport 80 reject\n\
             icmp type echo-request accept\n",
        )
        .expect("parses");
        assert_eq!(rs.policy(), Policy::Drop);
        assert_eq!(rs.len(), 5);
        assert_eq!(rs.rules()[3].action(), Action::Reject(RejectWith::Auto));
        assert_eq!(rs.rules()[0].line(), 2);
    }

    #[test]
    fn errors_have_line_and_column() {
        let e = err("policy drop\ntcp dport 22 acept\n");
        assert_eq!((e.line, e.col), (2, 14));
        assert!(e.msg.contains("unknown keyword 'acept'"), "{}", e.msg);

        let e = err("ip saddr 10.0.0.1/8 accept");
        assert_eq!((e.line, e.col), (1, 10));
        assert!(e.msg.contains("did you mean 10.0.0.0/8"), "{}", e.msg);

        let e = err("ct state established,relatd accept");
        assert_eq!(e.col, 22);

        let e = err("tcp dport 22 udp sport 53 accept");
        assert_eq!(e.col, 14);
        assert!(e.msg.contains("protocol udp"), "{}", e.msg);

        let e = err("ip saddr fd00::1 accept");
        assert!(e.msg.contains("use 'ip6"), "{}", e.msg);

        let e = err("udp dport 53 reject with tcp reset");
        assert!(e.msg.contains("needs a tcp match"), "{}", e.msg);

        let e = err("tcp dport { 22, 80 accept");
        assert!(e.msg.contains("expected ',' or '}'"), "{}", e.msg);

        let e = err("from-peer cn \"bob accept");
        assert_eq!(e.col, 14);
        assert!(e.msg.contains("unterminated"), "{}", e.msg);

        let e = err("policy drop\npolicy accept");
        assert_eq!(e.line, 2);

        let e = err("accept tcp dport 22");
        assert!(e.msg.contains("after the verdict"), "{}", e.msg);

        let e = err("from-host between-peers accept");
        assert!(e.msg.contains("contradicts"), "{}", e.msg);

        let e = err("tcp dport 70000 accept");
        assert!(e.msg.contains("not a port"), "{}", e.msg);

        let e = err("tcp dport 90-80 accept");
        assert!(e.msg.contains("write 80-90"), "{}", e.msg);
    }

    #[test]
    fn comments_sets_and_unicode_columns() {
        let rs = parse(
            "# header\n\n  tcp dport { 22, 80, 8000-8080, } accept # trailing\n\
             from-peer cn { \"älice\", bob } counter comment \"c#1\"\n",
        )
        .expect("parses");
        assert_eq!(rs.len(), 2);
        assert_eq!(rs.rules()[1].action(), Action::Continue);
        // Columns count characters, not bytes.
        let e = err("from-peer cn \"ä\" xx");
        assert_eq!(e.col, 18);
    }
}
