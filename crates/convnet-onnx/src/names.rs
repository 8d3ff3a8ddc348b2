//! The one bound on the length of names read from a model file (convnet's, so a name that
//! loads here fits everywhere else).

use crate::error::ErrorKind;

/// Refuses `name` when it is longer than [`convnet::names::MAX_NAME_CHARS`]; `what` says
/// which name it is ("a node name", "a tensor name", ...).
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), ErrorKind> {
    convnet::names::check_len(name).map_err(|reason| ErrorKind::NameTooLong { what, reason })
}
