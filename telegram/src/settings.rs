//! What each chat hears: every notice kind on, silent (delivered without sound) or off.

use std::collections::BTreeMap;
use std::fmt;

use mtml_core::NoticeKind;

/// How a chat hears one kind of notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Delivered with sound.
    On,
    /// Delivered without sound (`disable_notification`).
    Silent,
    /// Not delivered.
    Off,
}

impl Level {
    /// The setting's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::On => "on",
            Self::Silent => "silent",
            Self::Off => "off",
        }
    }

    /// The level named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "on" => Some(Self::On),
            "silent" => Some(Self::Silent),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

/// A chat's levels, one per notice kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Levels(BTreeMap<NoticeKind, Level>);

impl Default for Levels {
    /// What a trader wants to hear out of the box: trades, refusals, risk, terminals, stores,
    /// models and drift with sound; signals, latency and service starts silently; the summary
    /// with sound.
    fn default() -> Self {
        let level = |kind| match kind {
            NoticeKind::Signal | NoticeKind::Latency | NoticeKind::Service => Level::Silent,
            _ => Level::On,
        };
        Self(NoticeKind::ALL.into_iter().map(|kind| (kind, level(kind))).collect())
    }
}

impl Levels {
    /// The level of `kind`.
    pub fn get(&self, kind: NoticeKind) -> Level {
        self.0.get(&kind).copied().unwrap_or(Level::On)
    }

    /// Sets the level of `kind`.
    pub fn set(&mut self, kind: NoticeKind, level: Level) {
        self.0.insert(kind, level);
    }

    /// The defaults changed by `overrides`, `kind = level` pairs as the configuration gives them.
    pub fn with_overrides<'a>(overrides: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut levels = Self::default();
        for (kind_name, level_name) in overrides {
            let kind = NoticeKind::from_name(kind_name).ok_or_else(|| unknown_kind(kind_name))?;
            let level = Level::from_name(level_name)
                .ok_or_else(|| format!("notice level {level_name:?} for {kind_name}: it is on, silent or off"))?;
            levels.set(kind, level);
        }
        Ok(levels)
    }
}

/// The error for a kind that does not exist, listing those that do.
pub(crate) fn unknown_kind(name: &str) -> String {
    let kinds: Vec<&str> = NoticeKind::ALL.iter().map(|kind| kind.name()).collect();
    format!("unknown notice kind {}: the kinds are {}", mtml_core::text::quote(name), kinds.join(", "))
}

impl fmt::Display for Levels {
    /// One line per kind, for `/notify`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for kind in NoticeKind::ALL {
            writeln!(f, "{:<9} {}", kind.name(), self.get(kind).name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_overridden_by_name_and_bad_names_are_named() {
        let levels = Levels::with_overrides([("fill", "silent"), ("latency", "off")]).unwrap();
        assert_eq!(levels.get(NoticeKind::Fill), Level::Silent);
        assert_eq!(levels.get(NoticeKind::Latency), Level::Off);
        assert_eq!(levels.get(NoticeKind::Rejected), Level::On);
        let error = Levels::with_overrides([("fills", "on")]).unwrap_err();
        assert!(error.contains("unknown notice kind \"fills\"") && error.contains("fill, signal"), "{error}");
        let error = Levels::with_overrides([("fill", "loud")]).unwrap_err();
        assert!(error.contains("on, silent or off"), "{error}");
    }
}
