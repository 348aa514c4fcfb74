//! Tiers: named quotas users are assigned to, and the standard table.

use reliability_core::error::ConfigError;

use crate::quota::Quota;
use crate::respond::PolicyLabel;

/// One named tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    name: String,
    quota: Quota,
    label: PolicyLabel,
}

impl Tier {
    /// Longest tier name, in bytes.
    pub const MAX_NAME_LEN: usize = 64;

    /// A tier; names are 1 to [`Tier::MAX_NAME_LEN`] bytes of ASCII letters, digits, `_`
    /// and `-` (they appear in the `RateLimit-Policy` header as a token).
    pub fn new(name: impl Into<String>, quota: Quota) -> Result<Self, ConfigError> {
        let name = name.into();
        validate_name(&name)?;
        let label = PolicyLabel::new(&name, &quota);
        Ok(Self { name, quota, label })
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The quota.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }
    /// Its policy label (name and `RateLimit-Policy` value), built once.
    pub fn label(&self) -> &PolicyLabel {
        &self.label
    }
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > Tier::MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::new(
            "tier.name",
            format!(
                "must be 1 to {max} ASCII letters, digits, `_` or `-`, got {name:?}",
                max = Tier::MAX_NAME_LEN
            ),
        ));
    }
    Ok(())
}

/// The tiers a limiter knows and the one given to unknown users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierTable {
    tiers: Vec<Tier>,
    default: usize,
}

impl TierTable {
    /// A table; `default` must name one of `tiers`, names must be unique.
    pub fn new(tiers: Vec<Tier>, default: &str) -> Result<Self, ConfigError> {
        if tiers.is_empty() || tiers.len() > u16::MAX as usize {
            return Err(ConfigError::out_of_range(
                "tiers",
                "1 to 65535 tiers",
                tiers.len(),
            ));
        }
        for (i, t) in tiers.iter().enumerate() {
            if tiers[..i].iter().any(|o| o.name == t.name) {
                return Err(ConfigError::new(
                    "tiers",
                    format!("tier {:?} defined twice", t.name),
                ));
            }
        }
        let default = tiers
            .iter()
            .position(|t| t.name == default)
            .ok_or_else(|| {
                ConfigError::new("default_tier", format!("{default:?} is not a defined tier"))
            })?;
        Ok(Self { tiers, default })
    }

    /// The standard table, four tiers of four GCRA windows each; `free` is the default.
    ///
    /// | tier | per second | per minute | per hour | per day |
    /// |---|---|---|---|---|
    /// | free | 2 | 60 | 1,000 | 10,000 |
    /// | basic | 5 | 150 | 5,000 | 50,000 |
    /// | pro | 10 | 300 | 15,000 | 150,000 |
    /// | enterprise | 50 | 1,000 | 50,000 | 500,000 |
    pub fn standard() -> Self {
        let tier = |name: &str, s, m, h, d| {
            Tier::new(name, Quota::tiered(s, m, h, d).expect("valid table")).expect("valid name")
        };
        Self {
            tiers: vec![
                tier("free", 2, 60, 1_000, 10_000),
                tier("basic", 5, 150, 5_000, 50_000),
                tier("pro", 10, 300, 15_000, 150_000),
                tier("enterprise", 50, 1_000, 50_000, 500_000),
            ],
            default: 0,
        }
    }

    /// All tiers in order.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }
    /// The tier of users without one.
    pub fn default_tier(&self) -> &Tier {
        &self.tiers[self.default]
    }
    pub(crate) fn default_index(&self) -> u16 {
        self.default as u16
    }
    /// Index of a tier by name.
    pub fn index_of(&self, name: &str) -> Option<u16> {
        self.tiers
            .iter()
            .position(|t| t.name == name)
            .map(|i| i as u16)
    }
    /// Tier by index (falls back to the default tier).
    pub fn get(&self, index: u16) -> &Tier {
        self.tiers
            .get(index as usize)
            .unwrap_or(self.default_tier())
    }
}

impl Default for TierTable {
    fn default() -> Self {
        Self::standard()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_table_matches_the_mission() {
        let t = TierTable::standard();
        let limits: Vec<Vec<u64>> = t
            .tiers()
            .iter()
            .map(|t| t.quota().windows().iter().map(|w| w.limit()).collect())
            .collect();
        assert_eq!(limits[0], [2, 60, 1_000, 10_000]);
        assert_eq!(limits[3], [50, 1_000, 50_000, 500_000]);
        assert_eq!(t.default_tier().name(), "free");
    }
}
