use std::collections::HashMap;
use std::path::Path;
#[derive(Clone, Debug)]
pub enum StoredPassword {
    Md5(String),
    Plain(String),
    ScramVerifier(String),
    Undecryptable,
}
#[derive(Clone, Debug, Default)]
pub struct PoolPasswd {
    map: HashMap<String, StoredPassword>,
}
impl PoolPasswd {
    pub fn parse(text: &str, _key: Option<&str>) -> (PoolPasswd, Vec<String>) {
        let mut map = HashMap::new();
        for l in text.lines() {
            if let Some((u, p)) = l.split_once(':') {
                let sp = if p.starts_with("md5") && p.len() == 35 {
                    StoredPassword::Md5(p.into())
                } else if let Some(t) = p.strip_prefix("TEXT") {
                    StoredPassword::Plain(t.into())
                } else {
                    StoredPassword::Plain(p.into())
                };
                map.entry(u.to_string()).or_insert(sp);
            }
        }
        (PoolPasswd { map }, vec![])
    }
    pub fn load(
        path: &Path,
        key: Option<&str>,
    ) -> Result<(PoolPasswd, Vec<String>), std::io::Error> {
        Ok(Self::parse(&std::fs::read_to_string(path)?, key))
    }
    pub fn get(&self, user: &str) -> Option<&StoredPassword> {
        self.map.get(user)
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
