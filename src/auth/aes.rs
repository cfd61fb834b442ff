//! Pgpool-II's `AES…` pool_passwd entries (spec 3.4): OpenSSL `EVP_BytesToKey` with SHA-1,
//! no salt and one round turns the key text into an AES-256 key and IV; the password is
//! encrypted with AES-256-CBC and PKCS#7 padding and stored as `"AES" + base64`.
//! Identical passwords encrypt identically, which is what lets us compare with `pg_enc`.

use crate::auth::error::AuthError;
use aes::cipher::{block_padding::Pkcs7, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha1::{Digest, Sha1};

/// The prefix that marks an AES entry in pool_passwd.
pub const AES_PREFIX: &str = "AES";

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

/// `EVP_BytesToKey(aes-256-cbc, sha1, salt = NULL, key, count = 1)`: chain SHA-1 digests of
/// `previous || key` until 48 bytes exist; the first 32 are the key, the next 16 the IV.
pub fn derive_key_iv(key: &[u8]) -> ([u8; 32], [u8; 16]) {
    let mut material = [0u8; 60];
    let mut prev: Option<[u8; 20]> = None;
    for chunk in material.chunks_mut(20) {
        let mut h = Sha1::new();
        if let Some(p) = prev {
            h.update(p);
        }
        h.update(key);
        let digest: [u8; 20] = h.finalize().into();
        chunk.copy_from_slice(&digest);
        prev = Some(digest);
    }
    let mut k = [0u8; 32];
    let mut iv = [0u8; 16];
    k.copy_from_slice(&material[..32]);
    iv.copy_from_slice(&material[32..48]);
    (k, iv)
}

/// Encrypts like `pg_enc`: returns `"AES" + base64(ciphertext)`.
pub fn encrypt_password(password: &str, key: &str) -> String {
    let (k, iv) = derive_key_iv(key.as_bytes());
    let ct = Enc::new(&k.into(), &iv.into()).encrypt_padded_vec::<Pkcs7>(password.as_bytes());
    format!("{AES_PREFIX}{}", B64.encode(ct))
}

/// Decrypts a stored AES entry (with or without its `AES` prefix). A wrong key almost always
/// shows up as bad padding; the rare wrong key that pads correctly yields bytes that are
/// usually not UTF-8, and both are reported as [`AuthError::Decrypt`].
pub fn decrypt_password(stored: &str, key: &str) -> Result<String, AuthError> {
    let b64 = stored.strip_prefix(AES_PREFIX).unwrap_or(stored);
    let ct = B64.decode(b64.trim_end()).map_err(|_| AuthError::Base64)?;
    if ct.is_empty() {
        return Err(AuthError::Base64);
    }
    let (k, iv) = derive_key_iv(key.as_bytes());
    let pt = Dec::new(&k.into(), &iv.into())
        .decrypt_padded_vec::<Pkcs7>(&ct)
        .map_err(|_| AuthError::Decrypt)?;
    String::from_utf8(pt).map_err(|_| AuthError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::md5::to_hex;

    #[test]
    fn kdf_matches_evp_bytes_to_key() {
        let (k, iv) = derive_key_iv(b"mykey");
        assert_eq!(
            to_hex(&k),
            "816cc20437d859538736e1ef46558b7bda486c066d42ff28d8124bf893ff1e60"
        );
        assert_eq!(to_hex(&iv), "36397b6880a6982fef028c3beec074e3");
    }

    /// Spec 3.6 vectors, produced by Pgpool-II's own `pg_enc`.
    const PG_ENC_VECTORS: &[(&str, &str, &str)] = &[
        ("mykey", "postgres", "AESwIPGDiHZZw3JOa4HBKphsg=="),
        ("mykey", "secret", "AESV7IMV7YNworqqZU1Z46Wgw=="),
        ("mykey", "b0b:pa$$", "AESFxLxR9WzsfBRV0y2kY10hw=="),
        (
            "mykey",
            "a-much-longer-password-1234",
            "AESDsaNQxK1fpW94dpasK2dva5EboLROC2LWsiMWkoO64E=",
        ),
        (
            "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==",
            "postgres",
            "AESHqWdzWFXXjiSlqMGstYqhQ==",
        ),
        ("mykey", "secret_pw", "AESkL/l1u70bA/e42g1jr818Q=="),
    ];

    #[test]
    fn encrypt_matches_pg_enc_vectors() {
        for (key, pw, want) in PG_ENC_VECTORS {
            assert_eq!(encrypt_password(pw, key), *want, "{pw}");
        }
    }

    #[test]
    fn decrypt_round_trips_vectors_with_and_without_prefix() {
        for (key, pw, stored) in PG_ENC_VECTORS {
            assert_eq!(decrypt_password(stored, key).ok().as_deref(), Some(*pw));
            let bare = &stored[3..];
            assert_eq!(decrypt_password(bare, key).ok().as_deref(), Some(*pw));
        }
    }

    #[test]
    fn round_trip_handles_block_boundaries() {
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 100] {
            let pw: String = "x".repeat(len);
            let stored = encrypt_password(&pw, "k");
            assert_eq!(decrypt_password(&stored, "k").ok(), Some(pw), "len {len}");
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let cases: &[(&str, &str)] = &[
            ("AES!!notbase64", "mykey"),
            ("AES", "mykey"),
            ("AESAAAA", "mykey"), // 3 bytes: not a whole block
            ("AESV7IMV7YNworqqZU1Z46Wgw==", "wrong"), // wrong key
        ];
        for (stored, key) in cases {
            assert!(decrypt_password(stored, key).is_err(), "{stored} / {key}");
        }
    }
}
