//! The five-level grid hierarchy and its codes.
//!
//! Codes follow the CJ/T 213 pattern used by Chinese city-management grids:
//! the 6-digit county-level division code, then 3 digits of street, 3 of
//! community, 4 of grid sequence, and for a micro-grid 3 more. The level of a
//! code is its length and its parent is a prefix, so both are derivable from
//! the code alone:
//!
//! | level       | digits | example               |
//! |-------------|--------|-----------------------|
//! | district 区 | 6      | `990102`              |
//! | street 街道 | 9      | `990102003`           |
//! | community   | 12     | `990102003014`        |
//! | grid 网格   | 16     | `9901020030140007`    |
//! | micro 微网格 | 19     | `9901020030140007002` |

use serde::{Deserialize, Serialize};
use std::fmt;

/// A level of the grid hierarchy, from the district down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GridLevel {
    District = 0,
    Street = 1,
    Community = 2,
    Grid = 3,
    Micro = 4,
}

impl GridLevel {
    pub const ALL: [GridLevel; 5] = [
        GridLevel::District,
        GridLevel::Street,
        GridLevel::Community,
        GridLevel::Grid,
        GridLevel::Micro,
    ];

    /// The number of digits in a code of this level.
    pub fn code_len(self) -> usize {
        match self {
            GridLevel::District => 6,
            GridLevel::Street => 9,
            GridLevel::Community => 12,
            GridLevel::Grid => 16,
            GridLevel::Micro => 19,
        }
    }

    pub fn from_code_len(n: usize) -> Option<GridLevel> {
        GridLevel::ALL.into_iter().find(|l| l.code_len() == n)
    }

    pub fn name(self) -> &'static str {
        match self {
            GridLevel::District => "district",
            GridLevel::Street => "street",
            GridLevel::Community => "community",
            GridLevel::Grid => "grid",
            GridLevel::Micro => "micro",
        }
    }

    /// The Chinese name users know.
    pub fn name_zh(self) -> &'static str {
        match self {
            GridLevel::District => "区",
            GridLevel::Street => "街道",
            GridLevel::Community => "社区",
            GridLevel::Grid => "网格",
            GridLevel::Micro => "微网格",
        }
    }

    pub fn parse(s: &str) -> Option<GridLevel> {
        GridLevel::ALL.into_iter().find(|l| l.name() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn parent(self) -> Option<GridLevel> {
        self.index().checked_sub(1).map(|i| GridLevel::ALL[i])
    }

    pub fn child(self) -> Option<GridLevel> {
        GridLevel::ALL.get(self.index() + 1).copied()
    }
}

impl fmt::Display for GridLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated grid code.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GridCode(String);

impl GridCode {
    /// Parses a code: ASCII digits only, of one of the five lengths.
    ///
    /// ```
    /// use onemap::model::{GridCode, GridLevel};
    /// let c = GridCode::parse("9901020030140007002").unwrap();
    /// assert_eq!(c.level(), GridLevel::Micro);
    /// assert_eq!(c.parent().unwrap().as_str(), "9901020030140007");
    /// assert_eq!(c.ancestor(GridLevel::Street).unwrap().as_str(), "990102003");
    /// assert!(GridCode::parse("99010").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<GridCode, String> {
        if !s.bytes().all(|b| b.is_ascii_digit()) || GridLevel::from_code_len(s.len()).is_none() {
            return Err(format!(
                "{s:?} is not a grid code: expected 6, 9, 12, 16 or 19 digits \
                 (district, street, community, grid, micro-grid)"
            ));
        }
        Ok(GridCode(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn level(&self) -> GridLevel {
        // Parsing guarantees one of the five lengths.
        GridLevel::from_code_len(self.0.len()).unwrap_or(GridLevel::District)
    }

    /// The parent's code (a prefix), or None for a district.
    pub fn parent(&self) -> Option<GridCode> {
        let p = self.level().parent()?;
        Some(GridCode(self.0[..p.code_len()].to_string()))
    }

    /// The ancestor at `level` (itself when `level` is its own).
    pub fn ancestor(&self, level: GridLevel) -> Option<GridCode> {
        (level <= self.level()).then(|| GridCode(self.0[..level.code_len()].to_string()))
    }

    /// The code of child number `seq` (1-based) under this one.
    pub fn child(&self, seq: u32) -> Option<GridCode> {
        let c = self.level().child()?;
        let width = c.code_len() - self.0.len();
        if seq == 0 || u64::from(seq) >= 10u64.pow(width as u32) {
            return None;
        }
        Some(GridCode(format!("{}{:0width$}", self.0, seq)))
    }
}

impl TryFrom<String> for GridCode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        GridCode::parse(&s)
    }
}

impl From<GridCode> for String {
    fn from(c: GridCode) -> String {
        c.0
    }
}

impl fmt::Display for GridCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_know_their_level_and_parent() {
        let m = GridCode::parse("9901020030140007002").unwrap();
        assert_eq!(m.level(), GridLevel::Micro);
        assert_eq!(m.parent().unwrap().as_str(), "9901020030140007");
        assert_eq!(m.ancestor(GridLevel::Street).unwrap().as_str(), "990102003");
        assert_eq!(GridCode::parse("990102").unwrap().parent(), None);
        assert!(GridCode::parse("99010").is_err());
        assert!(GridCode::parse("99010200a").is_err());
    }

    #[test]
    fn child_codes_are_zero_padded() {
        let g = GridCode::parse("990102003014").unwrap();
        assert_eq!(g.child(7).unwrap().as_str(), "9901020030140007");
        assert_eq!(g.child(10_000), None);
        assert_eq!(g.child(0), None);
    }
}
