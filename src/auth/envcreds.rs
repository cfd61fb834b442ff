//! env
pub struct EnvCredentials;
pub fn apply_env_credentials() {}
