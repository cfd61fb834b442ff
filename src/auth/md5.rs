use md5::{Digest, Md5};
pub fn md5_hex(data: &[u8]) -> String {
    let d = Md5::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}
pub fn pg_md5_password(user: &str, password: &str) -> String {
    format!("md5{}", md5_hex(format!("{password}{user}").as_bytes()))
}
pub fn md5_salted(md5_with_prefix: &str, salt: [u8; 4]) -> String {
    let h = md5_with_prefix
        .strip_prefix("md5")
        .unwrap_or(md5_with_prefix);
    let mut v = h.as_bytes().to_vec();
    v.extend_from_slice(&salt);
    format!("md5{}", md5_hex(&v))
}
