//! Names that come from users and files (class names, layer names, tensor names): one bound on
//! their length, checked where they are read, and one way to shorten them for tables and
//! pictures.
//!
//! A name longer than [`MAX_NAME_CHARS`] is refused where it enters (a file or an option),
//! with an error naming the source; tables and pictures still shorten what they print
//! ([`shorten`]), so no column width or label size ever follows a name's length.

use std::borrow::Cow;

/// The longest name accepted from a file or the command line, in characters (file systems
/// allow 255 bytes per name; a class or layer name needs far less).
pub const MAX_NAME_CHARS: usize = 256;

/// `Err(reason)` when `name` is longer than [`MAX_NAME_CHARS`]; the caller says where the
/// name came from.
pub fn check_len(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        Err(format!(
            "a name of {chars} characters ('{}'); names may be at most {MAX_NAME_CHARS}",
            shorten(name, 40)
        ))
    } else {
        Ok(())
    }
}

/// `name` cut to at most `max` characters (`max >= 1`), ending in '…' when cut.
pub fn shorten(name: &str, max: usize) -> Cow<'_, str> {
    let max = max.max(1);
    match name.char_indices().nth(max) {
        None => Cow::Borrowed(name),
        Some(_) => {
            let keep: String = name.chars().take(max - 1).collect();
            Cow::Owned(keep + "…")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept_and_long_ones_cut_with_an_ellipsis() {
        assert_eq!(shorten("Ankle boot", 10), "Ankle boot");
        assert_eq!(shorten("Ankle boots", 10), "Ankle boo…");
        assert_eq!(shorten("Ankle boots", 10).chars().count(), 10);
        assert_eq!(shorten("héllo", 1), "…");
    }

    #[test]
    fn names_over_the_bound_are_refused() {
        assert!(check_len(&"a".repeat(MAX_NAME_CHARS)).is_ok());
        let err = check_len(&"é".repeat(MAX_NAME_CHARS + 1)).unwrap_err();
        assert!(err.contains("257 characters"), "{err}");
    }
}
