//! Shape ids: untrusted bytes, checked at the door and printed safely.

use crate::{Error, Result};

/// The longest shape id (a log file's header holds it: see docs/format.md).
pub const MAX_ID: usize = 64 << 10;

/// Refuses an empty or too long id.
pub(crate) fn check(id: &[u8]) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID {
        return Err(Error::BadShapeId {
            len: id.len(),
            max: MAX_ID,
        });
    }
    Ok(())
}

/// A printable form of an untrusted shape id for messages and traces:
/// UTF-8 text is shown as is (escaped), anything else as hex, and long ids
/// are cut.
pub(crate) fn display(id: &[u8]) -> String {
    const MAX: usize = 64;
    let cut = &id[..id.len().min(MAX)];
    let mut s = match std::str::from_utf8(cut) {
        Ok(t) => t.escape_debug().to_string(),
        Err(_) => cut.iter().map(|b| format!("{b:02x}")).collect(),
    };
    if id.len() > MAX {
        s.push_str(&format!("...({} bytes)", id.len()));
    }
    s
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_printed_safely() {
        assert!(check(b"").is_err());
        assert!(check(&vec![b'x'; MAX_ID + 1]).is_err());
        assert!(check(&vec![0u8; MAX_ID]).is_ok());
        assert_eq!(display(b"a\nb"), "a\\nb");
        assert_eq!(display(&[0xff, 0x00]), "ff00");
        assert!(display(&[b'y'; 100]).ends_with("...(100 bytes)"));
    }
}
