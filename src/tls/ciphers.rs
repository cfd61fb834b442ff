//! `ssl_ciphers` (an OpenSSL cipher list) mapped onto the suites rustls offers.
//!
//! rustls has six TLS 1.2 suites and three TLS 1.3 suites, all AEAD with ECDHE. An OpenSSL
//! string is evaluated against that small set with OpenSSL's operators (`!` removes for good,
//! `-` removes, `+` only reorders, `A+B` intersects), so `HIGH:!aNULL` or an explicit suite
//! list keeps what it means. As in OpenSSL and PostgreSQL, `ssl_ciphers` governs TLS 1.2
//! only; TLS 1.3 suites are always offered.

use rustls::crypto::ring::cipher_suite as cs;
use rustls::SupportedCipherSuite;

/// One TLS 1.2 suite: its OpenSSL name and the OpenSSL aliases that select it.
struct Suite {
    openssl: &'static str,
    suite: SupportedCipherSuite,
    tags: &'static [&'static str],
}

const COMMON: &[&str] = &[
    "ALL", "DEFAULT", "HIGH", "ECDHE", "EECDH", "kECDHE", "kEECDH", "AEAD", "TLSv1.2",
];

fn suites() -> [Suite; 6] {
    [
        Suite {
            openssl: "ECDHE-ECDSA-AES256-GCM-SHA384",
            suite: cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            tags: &["aECDSA", "ECDSA", "AESGCM", "AES", "AES256", "SHA384"],
        },
        Suite {
            openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
            suite: cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            tags: &["aECDSA", "ECDSA", "AESGCM", "AES", "AES128", "SHA256"],
        },
        Suite {
            openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
            suite: cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            tags: &["aECDSA", "ECDSA", "CHACHA20", "SHA256"],
        },
        Suite {
            openssl: "ECDHE-RSA-AES256-GCM-SHA384",
            suite: cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            tags: &["aRSA", "AESGCM", "AES", "AES256", "SHA384"],
        },
        Suite {
            openssl: "ECDHE-RSA-AES128-GCM-SHA256",
            suite: cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            tags: &["aRSA", "AESGCM", "AES", "AES128", "SHA256"],
        },
        Suite {
            openssl: "ECDHE-RSA-CHACHA20-POLY1305",
            suite: cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            tags: &["aRSA", "CHACHA20", "SHA256"],
        },
    ]
}

/// OpenSSL aliases that are valid but name only ciphers rustls does not implement (so they
/// select nothing here, without a warning: the default string contains `MEDIUM` and `3DES`).
const KNOWN_EMPTY: &[&str] = &[
    "MEDIUM",
    "LOW",
    "EXP",
    "EXPORT",
    "aNULL",
    "eNULL",
    "NULL",
    "COMPLEMENTOFALL",
    "COMPLEMENTOFDEFAULT",
    "3DES",
    "DES",
    "RC4",
    "RC2",
    "IDEA",
    "SEED",
    "CAMELLIA",
    "ARIA",
    "MD5",
    "SHA1",
    "SHA",
    "PSK",
    "aPSK",
    "kPSK",
    "ECDHEPSK",
    "DHEPSK",
    "RSAPSK",
    "SRP",
    "kRSA",
    "RSA",
    "DH",
    "DHE",
    "EDH",
    "kDHE",
    "kEDH",
    "ADH",
    "AECDH",
    "aDSS",
    "DSS",
    "SSLv3",
    "TLSv1",
    "TLSv1.0",
    "AESCCM",
    "AESCCM8",
    "CCM",
    "kGOST",
    "aGOST",
    "GOST94",
    "GOST89MAC",
];

/// What `ssl_ciphers` selects among the TLS 1.2 suites.
#[derive(Debug)]
pub struct CipherChoice {
    pub tls12: Vec<SupportedCipherSuite>,
    /// OpenSSL names of the kept TLS 1.2 suites, for the log.
    pub kept: Vec<&'static str>,
    /// Tokens that name nothing rustls knows (suite names it lacks, typos).
    pub unsupported: Vec<String>,
}

/// Evaluates an OpenSSL cipher string against rustls' TLS 1.2 suites.
pub fn select(spec: &str) -> CipherChoice {
    let all = suites();
    let mut on = [false; 6];
    let mut banned = [false; 6];
    let mut unsupported = Vec::new();
    let tokens = spec
        .split([':', ',', ' ', ';'])
        .filter(|t| !t.is_empty() && !t.starts_with('@'));
    for token in tokens {
        let (op, body) = match token.as_bytes()[0] {
            b'!' | b'-' | b'+' => (token.as_bytes()[0], &token[1..]),
            _ => (0, token),
        };
        let Some(mask) = matches(&all, body) else {
            unsupported.push(token.to_string());
            continue;
        };
        for i in 0..all.len() {
            if !mask[i] {
                continue;
            }
            match op {
                b'!' => {
                    banned[i] = true;
                    on[i] = false;
                }
                b'-' => on[i] = false,
                b'+' => {}
                _ => on[i] = !banned[i],
            }
        }
    }
    let picked: Vec<&Suite> = all
        .iter()
        .zip(on)
        .filter(|(_, o)| *o)
        .map(|(s, _)| s)
        .collect();
    CipherChoice {
        tls12: picked.iter().map(|s| s.suite).collect(),
        kept: picked.iter().map(|s| s.openssl).collect(),
        unsupported,
    }
}

/// Which suites `A+B+…` selects; None when some part is no alias or suite name at all.
fn matches(all: &[Suite; 6], expr: &str) -> Option<[bool; 6]> {
    let mut mask = [true; 6];
    for part in expr.split('+') {
        let known_empty = KNOWN_EMPTY.contains(&part);
        let mut any_name = known_empty;
        for (i, s) in all.iter().enumerate() {
            let hit = s.openssl == part || s.tags.contains(&part) || COMMON.contains(&part);
            any_name |= hit;
            mask[i] &= hit && !known_empty;
        }
        if !any_name {
            return None;
        }
    }
    Some(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_strings_select_rustls_suites() {
        // (ssl_ciphers, kept TLS 1.2 suites, unsupported tokens)
        let cases: &[(&str, usize, &[&str])] = &[
            ("HIGH:MEDIUM:+3DES:!aNULL", 6, &[]),
            ("HIGH:!aRSA", 3, &[]),
            ("ECDHE-RSA-AES256-GCM-SHA384", 1, &[]),
            ("ECDHE+AESGCM", 4, &[]),
            ("ALL:-CHACHA20", 4, &[]),
            ("!CHACHA20:ALL", 4, &[]),
            (
                "AES256-SHA:DHE-RSA-AES128-SHA",
                0,
                &["AES256-SHA", "DHE-RSA-AES128-SHA"],
            ),
            ("MEDIUM:3DES", 0, &[]),
            ("HIGH:@STRENGTH", 6, &[]),
            ("HIGH:BOGUS", 6, &["BOGUS"]),
        ];
        for (spec, kept, unsupported) in cases {
            let c = select(spec);
            assert_eq!(c.tls12.len(), *kept, "{spec}: {:?}", c.kept);
            assert_eq!(c.kept.len(), *kept, "{spec}");
            assert_eq!(&c.unsupported, unsupported, "{spec}");
        }
    }
}
