//! pool_hba.conf
use std::path::Path;
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct HbaError;
pub enum ConnType {
    Local,
}
pub enum HbaMethod {
    Trust,
}
pub struct HbaLine;
pub struct HbaFile;
pub struct HbaRequest;
#[allow(dead_code)]
fn f(_: &Path) {}
