//! The states and kinds the store records as text, each an enum with one spelling: the spelling is
//! what the `state` columns hold (and what `admin status` and `admin provider ls` print), so it never
//! changes; a value the enum does not know read from the database is corruption.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// The state of one copy of a chunk on one provider (`placements.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlacementState {
    /// Written, or found good by the last read of it.
    Stored,
    /// The provider answered that it does not have it.
    Missing,
    /// The provider's bytes do not hash to the address.
    Corrupt,
}

/// The state of a provider in the registry (`providers.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderState {
    /// Takes new chunks and serves reads.
    Active,
    /// Takes no new chunk; its chunks are being moved to the others.
    Draining,
    /// Holds no chunk the index knows; it may be removed.
    Drained,
    /// Taken out of the registry (`nuage admin provider remove`); a name that may be added
    /// again.
    Removed,
}

/// The kind of one change of an account's feed (`changes.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// A version written (a put, a restore, a copy).
    Put,
    /// A key deleted (a tombstone version).
    Delete,
    /// A bucket created.
    BucketCreate,
    /// A bucket deleted.
    BucketDelete,
}

/// Spelled in one place: the text form of each state, and its parse.
macro_rules! spelled {
    ($ty:ident, $what:literal, $($variant:ident = $text:literal),+ $(,)?) => {
        impl $ty {
            /// Every state.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The stored spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    other => Err(Error::Corrupt(format!(concat!("unknown ", $what, " {:?}"), other))),
                }
            }
        }
    };
}

spelled!(PlacementState, "placement state", Stored = "stored", Missing = "missing", Corrupt = "corrupt");
spelled!(
    ProviderState,
    "provider state",
    Active = "active",
    Draining = "draining",
    Drained = "drained",
    Removed = "removed",
);

spelled!(
    ChangeKind,
    "change kind",
    Put = "put",
    Delete = "delete",
    BucketCreate = "bucket-create",
    BucketDelete = "bucket-delete",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_as_itself_and_nothing_else_reads() {
        for s in PlacementState::ALL {
            assert_eq!(s.as_str().parse::<PlacementState>().unwrap(), *s);
        }
        for s in ProviderState::ALL {
            assert_eq!(s.as_str().parse::<ProviderState>().unwrap(), *s);
        }
        // The spellings the migrations and the SQL of this crate write.
        let placements: Vec<&str> = PlacementState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(placements, ["stored", "missing", "corrupt"]);
        let providers: Vec<&str> = ProviderState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(providers, ["active", "draining", "drained", "removed"]);
        for s in ChangeKind::ALL {
            assert_eq!(s.as_str().parse::<ChangeKind>().unwrap(), *s);
        }
        let changes: Vec<&str> = ChangeKind::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(changes, ["put", "delete", "bucket-create", "bucket-delete"]);
        assert!("Stored".parse::<PlacementState>().is_err());
        assert!("".parse::<ProviderState>().is_err());
    }
}
