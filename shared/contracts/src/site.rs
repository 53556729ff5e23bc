//! A site: a place with printers and a gateway of its own, whose name is a token of the
//! subjects of its printers (so a site's credentials can be limited to its own).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A site name: 1 to 32 of `a-z`, `0-9`, `-`, `_` (it becomes a subject token).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Site(String);

impl Site {
    pub fn parse(name: &str) -> Result<Site, InvalidSite> {
        let ok = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        ok.then(|| Site(name.to_owned())).ok_or(InvalidSite)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Site {
    fn default() -> Self {
        Site("default".into())
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a site is 1 to 32 characters of a-z, 0-9, '-' and '_'")]
pub struct InvalidSite;

impl TryFrom<String> for Site {
    type Error = InvalidSite;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Site::parse(&value)
    }
}

impl From<Site> for String {
    fn from(site: Site) -> String {
        site.0
    }
}
