//! The forms a layer's settings take in model files (serde, for the `...Config` structs) and
//! in the `convnet shape` shorthand.
//!
//! A value that may take several forms (an integer or a pair, a number or a word) is read as
//! a TOML value and then converted, so that an error says every form it may take
//! (`kernel: expected an integer or a pair [h, w] of integers, got [3, 3, 3]`). Floats are
//! written as the exact `f64` of their `f32`, so that every written file reads back to the
//! same bits.

use convnet_core::{ConvMode, Padding, PaddingMode};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serializer};

use crate::error::{Error, Result};
use crate::names;

/// A table's keys as the struct `T`: an error names the key (`kernel: expected ...`). A
/// message that begins with `=` (a word that is not one of the choices) follows the key
/// directly: `padding = "middle" is not one of: same, valid`.
pub(crate) fn fields<T: DeserializeOwned>(table: toml::Table) -> Result<T> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            let message = names::shorten(e.message(), 400);
            // The key path is only in the error's text: "<message>\nin `<key>`".
            let text = e.to_string();
            match text.trim_end().rsplit_once("\nin `") {
                Some((_, key)) => {
                    let key = names::shorten(key.trim_end_matches('`'), 64);
                    let sep = if message.starts_with('=') { " " } else { ": " };
                    Error::model(format!("{key}{sep}{message}"))
                }
                None => Error::model(message),
            }
        })
}

/// A value from a file as an error message shows it: at most 40 characters.
pub(crate) fn shown(v: &impl std::fmt::Display) -> String {
    names::shorten(&v.to_string(), 40).into_owned()
}

/// Read a TOML value and convert it with `convert`; `None` is an error saying what was
/// `expected` (the key is added by [`fields`]).
pub(crate) fn one_of<'de, D, T>(
    d: D,
    expected: &str,
    convert: impl FnOnce(&toml::Value) -> Option<T>,
) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let v = toml::Value::deserialize(d)?;
    convert(&v).ok_or_else(|| D::Error::custom(format!("expected {expected}, got {}", shown(&v))))
}

/// The choice named `value`, or an error listing the choices (`= "x" is not one of: a, b`).
pub(crate) fn word<T: Copy, E: serde::de::Error>(
    value: &str,
    choices: &[(&str, T)],
) -> std::result::Result<T, E> {
    choices
        .iter()
        .find(|(w, _)| *w == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
            E::custom(format!(
                "= \"{}\" is not one of: {}",
                shown(&value),
                names.join(", ")
            ))
        })
}

/// A TOML integer as a size (0 or more).
pub(crate) fn size(v: &toml::Value) -> Option<usize> {
    v.as_integer().and_then(|n| usize::try_from(n).ok())
}

/// `N` sizes in a TOML array of exactly `N` integers.
fn sizes<const N: usize>(v: &toml::Value) -> Option<[usize; N]> {
    let items = v.as_array().filter(|a| a.len() == N)?;
    let mut out = [0; N];
    for (o, item) in out.iter_mut().zip(items) {
        *o = size(item)?;
    }
    Some(out)
}

/// `[1, 1]`: the default stride and dilation.
pub(crate) fn ones() -> [usize; 2] {
    [1, 1]
}

/// `true`: the default of `bias`, `affine`, ...
pub(crate) fn yes() -> bool {
    true
}

/// An integer or an `[h, w]` pair (kernel, stride, padding, dilation, output size); written
/// as `[h, w]`.
pub(crate) mod pair {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[usize; 2], s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(v, s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[usize; 2], D::Error> {
        one_of(d, "an integer or a pair [h, w] of integers", |v| {
            size(v).map(|n| [n, n]).or_else(|| sizes::<2>(v))
        })
    }

    /// The same for a pair that may be left out (`None`: a default that depends on another
    /// setting, as a pooling stride that defaults to the kernel).
    pub(crate) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            v: &Option<[usize; 2]>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            serde::Serialize::serialize(v, s)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<[usize; 2]>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// Conv padding: an integer, `[h, w]`, `[top, bottom, left, right]`, "same" or "valid".
pub(crate) mod padding {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &Padding, s: S) -> Result<S::Ok, S::Error> {
        match *v {
            Padding::Valid => s.serialize_str("valid"),
            Padding::Same => s.serialize_str("same"),
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => serde::Serialize::serialize(&[top, bottom, left, right], s),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Padding, D::Error> {
        enum Form {
            Amounts([usize; 4]),
            Word(String),
        }
        let form = one_of(
            d,
            "an integer, a pair [h, w], [top, bottom, left, right], \"same\" or \"valid\"",
            |v| {
                let symmetric = |[h, w]: [usize; 2]| [h, h, w, w];
                match v {
                    toml::Value::String(w) => Some(Form::Word(w.clone())),
                    _ => size(v)
                        .map(|n| symmetric([n, n]))
                        .or_else(|| sizes::<2>(v).map(symmetric))
                        .or_else(|| sizes::<4>(v))
                        .map(Form::Amounts),
                }
            },
        )?;
        match form {
            Form::Amounts([top, bottom, left, right]) => Ok(Padding::Explicit {
                top,
                bottom,
                left,
                right,
            }),
            Form::Word(w) => word(&w, &[("same", Padding::Same), ("valid", Padding::Valid)]),
        }
    }
}

/// A word naming one of `CHOICES`, written as that word.
macro_rules! words {
    ($module:ident, $ty:ty, [$(($word:literal, $value:expr)),+ $(,)?]) => {
        pub(crate) mod $module {
            use super::*;

            const CHOICES: &[(&str, $ty)] = &[$(($word, $value)),+];

            pub(crate) fn serialize<S: Serializer>(v: &$ty, s: S) -> Result<S::Ok, S::Error> {
                match CHOICES.iter().find(|(_, c)| c == v) {
                    Some((w, _)) => s.serialize_str(w),
                    None => Err(serde::ser::Error::custom(format!("no word for {v:?}"))),
                }
            }

            pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                let w = String::deserialize(d)?;
                word(&w, CHOICES)
            }
        }
    };
}

words!(
    padding_mode,
    PaddingMode,
    [
        ("zeros", PaddingMode::Zeros),
        ("reflect", PaddingMode::Reflect),
        ("replicate", PaddingMode::Replicate),
        ("circular", PaddingMode::Circular),
    ]
);

words!(
    conv_mode,
    ConvMode,
    [
        ("cross_correlation", ConvMode::CrossCorrelation),
        ("convolution", ConvMode::Convolution),
    ]
);

/// A finite number (model files may write `nan` and `inf`, and 1e39 is infinite as f32).
pub(crate) mod finite {
    use super::*;

    pub(crate) fn value(v: &toml::Value) -> Option<f32> {
        let x = match v {
            toml::Value::Float(x) => *x as f32,
            toml::Value::Integer(n) => *n as f32,
            _ => return None,
        };
        x.is_finite().then_some(x)
    }

    /// Written as the `f64` equal to it, which reads back to the same `f32`.
    pub(crate) fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(f64::from(*v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        one_of(d, "a finite number", value)
    }
}

/// Batch-norm momentum: a finite number, or "none" (a cumulative average).
pub(crate) mod momentum {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(m) => finite::serialize(m, s),
            None => s.serialize_str("none"),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
        enum Form {
            Value(f32),
            Word(String),
        }
        match one_of(d, "a number or \"none\"", |v| match v {
            toml::Value::String(w) => Some(Form::Word(w.clone())),
            _ => finite::value(v).map(Form::Value),
        })? {
            Form::Value(m) => Ok(Some(m)),
            Form::Word(w) => word(&w, &[("none", None)]),
        }
    }
}

// ---- the shorthand of `convnet shape` ------------------------------------------------------

/// `N` or `HxW` in the shorthand (`what` names the value in the error).
pub(crate) fn shorthand_pair(what: &str, s: &str) -> Result<[usize; 2]> {
    let parse = |v: &str| {
        v.parse::<usize>()
            .map_err(|_| Error::model(format!("{what} '{s}' is not N or HxW")))
    };
    match s.split_once('x') {
        Some((h, w)) => Ok([parse(h)?, parse(w)?]),
        None => {
            let n = parse(s)?;
            Ok([n, n])
        }
    }
}

/// A count in the shorthand (`what`: "a channel count", ...).
pub(crate) fn shorthand_count(what: &str, s: &str) -> Result<usize> {
    s.parse()
        .map_err(|_| Error::model(format!("'{s}' is not {what}")))
}
