//! `pool_hba.conf` (spec 4): which client may connect to which database as which user, and
//! with which authentication method. Parsing is all-or-nothing like Pgpool-II (one bad
//! line rejects the file, and the error names it); matching is first-match-wins with no
//! fall-through, and no match means reject.
//!
//! Host names, `samehost` and `samenet` parse but never match: they need DNS or the
//! interface list, which this sans-IO module does not have.

mod tokenize;

pub use tokenize::HbaToken;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use tokenize::TokLine;

/// Errors loading pool_hba.conf; line errors carry the line number.
#[derive(Debug, thiserror::Error)]
pub enum HbaError {
    #[error("could not open configuration file \"{path}\": {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{message} (line {line} of configuration file \"{file}\")")]
    Line {
        file: String,
        line: usize,
        message: String,
    },
    #[error("configuration file \"{file}\" contains no entries")]
    NoEntries { file: String },
}

/// The first column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnType {
    /// Unix-domain socket.
    Local,
    /// TCP, with or without TLS.
    Host,
    /// TCP with TLS only.
    HostSsl,
    /// TCP without TLS only.
    HostNoSsl,
}

/// The methods Pgpool-II supports without PAM/LDAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HbaMethod {
    Trust,
    Reject,
    Md5,
    ScramSha256,
    Password,
    Cert,
}

/// The address column of a host line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HbaAddress {
    /// `all`.
    All,
    /// `samehost` (never matches here).
    SameHost,
    /// `samenet` (never matches here).
    SameNet,
    /// An address and a mask of the same family (CIDR or separate mask column).
    Net { addr: IpAddr, mask: IpAddr },
    /// A host name (never matches here).
    Hostname(String),
}

/// One parsed record.
#[derive(Debug, Clone)]
pub struct HbaLine {
    pub line_no: usize,
    pub conn_type: ConnType,
    pub method: HbaMethod,
    /// Database list, left to right (`all`, `sameuser`, names).
    pub databases: Vec<HbaToken>,
    /// User list, left to right (`all`, names).
    pub users: Vec<HbaToken>,
    /// `None` for `local` lines.
    pub address: Option<HbaAddress>,
}

/// What is known about a connecting client when hba is checked.
#[derive(Debug, Clone, Copy)]
pub struct HbaRequest<'a> {
    /// Connected through the Unix socket.
    pub local: bool,
    /// TLS was negotiated.
    pub ssl: bool,
    /// Client address (TCP only).
    pub addr: Option<IpAddr>,
    pub database: &'a str,
    pub user: &'a str,
}

/// A parsed pool_hba.conf.
#[derive(Debug, Clone, Default)]
pub struct HbaFile {
    lines: Vec<HbaLine>,
}

impl HbaFile {
    /// Parses the text; `dir` resolves relative `@file` includes.
    pub fn parse(text: &str, dir: &Path) -> Result<HbaFile, HbaError> {
        Self::parse_named(text, dir, "pool_hba.conf")
    }

    /// Reads and parses the file.
    pub fn load(path: &Path) -> Result<HbaFile, HbaError> {
        let text = std::fs::read_to_string(path).map_err(|source| HbaError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse_named(&text, dir, &path.display().to_string())
    }

    fn parse_named(text: &str, dir: &Path, file: &str) -> Result<HbaFile, HbaError> {
        let line_err = |(line, message): (usize, String)| HbaError::Line {
            file: file.to_string(),
            line,
            message,
        };
        let tok_lines = tokenize::tokenize(text, dir, 0).map_err(line_err)?;
        let lines = tok_lines
            .iter()
            .map(|l| parse_line(l).map_err(|m| line_err((l.line_no, m))))
            .collect::<Result<Vec<_>, _>>()?;
        if lines.is_empty() {
            return Err(HbaError::NoEntries {
                file: file.to_string(),
            });
        }
        Ok(HbaFile { lines })
    }

    /// The first line that matches the request; `None` means implicit reject.
    pub fn find(&self, req: &HbaRequest) -> Option<&HbaLine> {
        self.lines.iter().find(|l| l.matches(req))
    }

    /// All records in file order.
    pub fn lines(&self) -> &[HbaLine] {
        &self.lines
    }

    /// Whether both files admit exactly the same clients the same way (line numbers,
    /// comments and spacing aside).
    pub fn same_rules(&self, other: &HbaFile) -> bool {
        fn same(a: &HbaLine, b: &HbaLine) -> bool {
            (a.conn_type, a.method, &a.databases, &a.users, &a.address)
                == (b.conn_type, b.method, &b.databases, &b.users, &b.address)
        }
        self.lines.len() == other.lines.len()
            && self.lines.iter().zip(&other.lines).all(|(a, b)| same(a, b))
    }
}

/// Turns a tokenized line into a record; the message is Pgpool-II's wording.
fn parse_line(tl: &TokLine) -> Result<HbaLine, String> {
    let mut fields = tl.fields.iter();
    let conn_type = parse_conn_type(single(fields.next(), "connection type")?)?;
    let databases = fields
        .next()
        .ok_or("end-of-line before database specification")?
        .clone();
    let users = fields
        .next()
        .ok_or("end-of-line before role specification")?
        .clone();
    let address = match conn_type {
        ConnType::Local => None,
        _ => Some(parse_address(&mut fields)?),
    };
    let method_field = fields
        .next()
        .ok_or("end-of-line before authentication method")?;
    let method = parse_method(single(Some(method_field), "authentication type")?)?;
    if method == HbaMethod::Cert && conn_type != ConnType::HostSsl {
        return Err("cert authentication is only supported on hostssl connections".into());
    }
    if let Some(opt) = fields.flatten().next() {
        return Err(match opt.text.split_once('=') {
            Some((name, _)) => format!("unrecognized authentication option name: \"{name}\""),
            None => format!(
                "authentication option not in name=value format: {}",
                opt.text
            ),
        });
    }
    Ok(HbaLine {
        line_no: tl.line_no,
        conn_type,
        method,
        databases,
        users,
        address,
    })
}

fn single<'a>(field: Option<&'a Vec<HbaToken>>, what: &str) -> Result<&'a HbaToken, String> {
    match field.map(Vec::as_slice) {
        Some([one]) => Ok(one),
        Some(_) => Err(format!("multiple values specified for {what}")),
        None => Err(format!("end-of-line before {what}")),
    }
}

fn parse_conn_type(t: &HbaToken) -> Result<ConnType, String> {
    match t.text.as_str() {
        "local" => Ok(ConnType::Local),
        "host" => Ok(ConnType::Host),
        "hostssl" => Ok(ConnType::HostSsl),
        "hostnossl" => Ok(ConnType::HostNoSsl),
        other => Err(format!("invalid connection type \"{other}\"")),
    }
}

fn parse_method(t: &HbaToken) -> Result<HbaMethod, String> {
    match t.text.as_str() {
        "trust" => Ok(HbaMethod::Trust),
        "reject" => Ok(HbaMethod::Reject),
        "md5" => Ok(HbaMethod::Md5),
        "scram-sha-256" => Ok(HbaMethod::ScramSha256),
        "password" => Ok(HbaMethod::Password),
        "cert" => Ok(HbaMethod::Cert),
        m @ ("pam" | "ldap") => Err(format!(
            "invalid authentication method \"{m}\": not supported by this build"
        )),
        other => Err(format!("invalid authentication method \"{other}\"")),
    }
}

/// Reads the address field, and the mask field after it when the address has no `/len`.
fn parse_address<'a>(
    fields: &mut impl Iterator<Item = &'a Vec<HbaToken>>,
) -> Result<HbaAddress, String> {
    let t = single(fields.next(), "IP address specification")?;
    for (kw, addr) in [
        ("all", HbaAddress::All),
        ("samehost", HbaAddress::SameHost),
        ("samenet", HbaAddress::SameNet),
    ] {
        if t.is_keyword(kw) {
            return Ok(addr);
        }
    }
    let (host, cidr) = match t.text.split_once('/') {
        Some((h, len)) => (h, Some(len)),
        None => (t.text.as_str(), None),
    };
    let Ok(addr) = host.parse::<IpAddr>() else {
        if cidr.is_some() {
            return Err(format!(
                "specifying both host name and CIDR mask is invalid: \"{}\"",
                t.text
            ));
        }
        return Ok(HbaAddress::Hostname(host.to_string()));
    };
    let mask = match cidr {
        Some(len) => cidr_mask(addr, len)
            .ok_or_else(|| format!("invalid CIDR mask in address \"{}\"", t.text))?,
        None => {
            let m = single(fields.next(), "netmask specification")?;
            let mask: IpAddr = m
                .text
                .parse()
                .map_err(|_| format!("invalid IP mask \"{}\"", m.text))?;
            if mask.is_ipv4() != addr.is_ipv4() {
                return Err("IP address and mask do not match".into());
            }
            mask
        }
    };
    Ok(HbaAddress::Net { addr, mask })
}

/// The mask for a `/len` suffix: digits only, at most 32 (IPv4) or 128 (IPv6).
fn cidr_mask(addr: IpAddr, len: &str) -> Option<IpAddr> {
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u32 = len.parse().ok()?;
    match addr {
        IpAddr::V4(_) if bits <= 32 => Some(IpAddr::V4(
            u32::MAX.checked_shl(32 - bits).unwrap_or(0).into(),
        )),
        IpAddr::V6(_) if bits <= 128 => Some(IpAddr::V6(
            u128::MAX.checked_shl(128 - bits).unwrap_or(0).into(),
        )),
        _ => None,
    }
}

impl HbaLine {
    /// Connection type, TLS state, address, database and user all have to match.
    pub fn matches(&self, req: &HbaRequest) -> bool {
        let type_ok = match self.conn_type {
            ConnType::Local => req.local,
            ConnType::Host => !req.local,
            ConnType::HostSsl => !req.local && req.ssl,
            ConnType::HostNoSsl => !req.local && !req.ssl,
        };
        type_ok
            && self
                .address
                .as_ref()
                .is_none_or(|a| address_matches(a, req.addr))
            && database_matches(&self.databases, req.database, req.user)
            && user_matches(&self.users, req.user)
    }
}

fn address_matches(line: &HbaAddress, client: Option<IpAddr>) -> bool {
    match (line, client.map(|a| a.to_canonical())) {
        (HbaAddress::All, _) => true,
        (HbaAddress::Net { addr, mask }, Some(c)) => match (addr, mask, c) {
            (IpAddr::V4(a), IpAddr::V4(m), IpAddr::V4(c)) => {
                a.to_bits() & m.to_bits() == c.to_bits() & m.to_bits()
            }
            (IpAddr::V6(a), IpAddr::V6(m), IpAddr::V6(c)) => {
                a.to_bits() & m.to_bits() == c.to_bits() & m.to_bits()
            }
            _ => false,
        },
        _ => false,
    }
}

/// Left to right; an unsupported group keyword ends the search without a match.
fn database_matches(tokens: &[HbaToken], database: &str, user: &str) -> bool {
    for t in tokens {
        if t.is_keyword("samegroup") || t.is_keyword("samerole") {
            tracing::warn!(
                "group tokens \"samegroup\" and \"samerole\" are not supported by Pgpool-II"
            );
            return false;
        }
        let hit = if t.is_keyword("all") {
            true
        } else if t.is_keyword("sameuser") {
            database == user
        } else {
            t.text == database
        };
        if hit {
            return true;
        }
    }
    false
}

/// Left to right; a `+group` token ends the search without a match.
fn user_matches(tokens: &[HbaToken], user: &str) -> bool {
    for t in tokens {
        if !t.quoted && t.text.starts_with('+') {
            tracing::warn!("group token \"+\" is not supported by Pgpool-II");
            return false;
        }
        if t.is_keyword("all") || t.text == user {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests;
