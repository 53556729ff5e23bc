//! Scope: the sites and printers a key, a user or a role is limited to, and what a caller may
//! reach when several limits apply (a user's own and their role's).
//!
//! A scope with no sites and no printer ids is not limited. Otherwise a printer is in it when
//! its site is listed or its id is. A caller reaches a printer only when every one of its
//! limits allows it. What is out of reach answers as an unknown id would: the caller cannot
//! tell it exists.

use std::collections::HashSet;

use printyard_contracts::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

/// The sites and printers something is limited to; both empty: not limited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scope {
    /// Sites whose printers are in scope.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Printers in scope wherever they are.
    #[serde(default)]
    pub printer_ids: Vec<i64>,
}

impl Scope {
    pub fn is_unlimited(&self) -> bool {
        self.sites.is_empty() && self.printer_ids.is_empty()
    }

    /// Whether printer `id` at `site` is in this scope.
    pub fn allows(&self, id: i64, site: Option<&str>) -> bool {
        self.is_unlimited()
            || self.printer_ids.contains(&id)
            || site.is_some_and(|site| self.sites.iter().any(|s| s == site))
    }

    /// Checks the lists a client sent: sites 1 to 100 characters, at most 1,000 entries each;
    /// sorted and without repeats.
    pub fn validated(mut self) -> Result<Self, ApiError> {
        if self.sites.len() > 1000 || self.printer_ids.len() > 1000 {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                "Invalid scope: at most 1,000 sites and 1,000 printer ids",
            ));
        }
        if self
            .sites
            .iter()
            .any(|s| s.trim().is_empty() || s.chars().count() > 100 || s.contains('\0'))
        {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                "Invalid field `sites`: each site is 1 to 100 characters",
            ));
        }
        if self.printer_ids.iter().any(|&id| id <= 0) {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                "Invalid field `printer_ids`: ids are positive",
            ));
        }
        self.sites.sort();
        self.sites.dedup();
        self.printer_ids.sort_unstable();
        self.printer_ids.dedup();
        Ok(self)
    }
}

/// What a caller may reach: the printers every one of its limits allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    limits: Vec<Scope>,
}

impl Reach {
    /// Not limited at all.
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn new(limits: impl IntoIterator<Item = Scope>) -> Self {
        Self {
            limits: limits.into_iter().filter(|s| !s.is_unlimited()).collect(),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.limits.is_empty()
    }

    /// Whether printer `id` at `site` is within reach.
    pub fn allows(&self, id: i64, site: Option<&str>) -> bool {
        self.limits.iter().all(|scope| scope.allows(id, site))
    }

    /// Whether every printer at `site`, present and future, is within reach (where a limited
    /// caller may add a printer or send a job for "any printer").
    pub fn allows_whole_site(&self, site: &str) -> bool {
        self.limits
            .iter()
            .all(|scope| scope.is_unlimited() || scope.sites.iter().any(|s| s == site))
    }

    /// `Ok` when the whole of `site` is within reach; otherwise a refusal that names no
    /// printer.
    pub fn check_whole_site(&self, site: &str) -> Result<(), ApiError> {
        if self.allows_whole_site(site) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("You are not allowed at site {site:?}"),
            ))
        }
    }

    /// Whether printer `id` is within reach, by the site the registry knows it at.
    pub fn allows_printer(&self, state: &AppState, id: i64) -> bool {
        self.is_unlimited() || self.allows(id, state.known.site(id).as_deref())
    }

    /// `Ok` when printer `id` is within reach; otherwise the answer an unknown id gets. A
    /// printer this replica has not heard of yet is looked up in the registry.
    pub async fn check_printer(&self, state: &AppState, id: i64) -> Result<(), ApiError> {
        if self.is_unlimited() {
            return Ok(());
        }
        let site = match state.known.site(id) {
            Some(site) => Some(site),
            None => match state.registry.get(id).await {
                Ok(row) => Some(row.site),
                Err(_) => None,
            },
        };
        if self.allows(id, site.as_deref()) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!("Printer {id} not found")))
        }
    }

    /// The printers within reach (`None`: every printer), from the registry this replica
    /// follows.
    pub fn printer_ids(&self, state: &AppState) -> Option<Vec<i64>> {
        if self.is_unlimited() {
            return None;
        }
        let mut ids: Vec<i64> = state
            .known
            .sites()
            .into_iter()
            .filter(|(id, site)| self.allows(*id, Some(site)))
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        Some(ids)
    }

    /// The same as a set, for filtering streams.
    pub fn printer_set(&self, state: &AppState) -> Option<HashSet<i64>> {
        self.printer_ids(state).map(|ids| ids.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(sites: &[&str], ids: &[i64]) -> Scope {
        Scope {
            sites: sites.iter().map(|s| s.to_string()).collect(),
            printer_ids: ids.to_vec(),
        }
    }

    #[test]
    fn an_empty_scope_allows_everything_and_a_listed_site_or_id_its_printers() {
        assert!(Scope::default().allows(9, None));
        let s = scope(&["north"], &[7]);
        assert!(s.allows(1, Some("north")));
        assert!(s.allows(7, Some("south")));
        assert!(!s.allows(8, Some("south")));
        assert!(!s.allows(8, None));
    }

    #[test]
    fn a_reach_allows_only_what_every_limit_allows() {
        let reach = Reach::new([scope(&["north"], &[]), scope(&[], &[1, 2])]);
        assert!(reach.allows(1, Some("north")));
        assert!(!reach.allows(3, Some("north")));
        assert!(!reach.allows(2, Some("south")));
        assert!(Reach::new([Scope::default()]).is_unlimited());
    }
}
