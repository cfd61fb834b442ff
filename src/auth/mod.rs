//! TEMPORARY stand-in until the real auth module lands.
pub mod md5;
pub mod passwd;
