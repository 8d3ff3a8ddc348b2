//! Layer names: kept from the graph where convnet's naming rules allow, changed only where
//! they do not (empty, with spaces, `input`, taken, too long).

use std::collections::HashSet;

use convnet::names::MAX_NAME_CHARS;
use convnet::spec::INPUT;

use crate::node::Node;

/// Hands out unique layer names.
#[derive(Debug, Default)]
pub(crate) struct Namer {
    taken: HashSet<String>,
}

impl Namer {
    /// The name of a layer made from `node`: `preferred` (its weight's `state_dict` prefix)
    /// when given, else the node's name, else its first output's, else the operator and
    /// the node's position; changed as little as convnet's rules need, and unique.
    pub(crate) fn layer_name(&mut self, preferred: Option<&str>, node: &Node) -> String {
        let fallback = format!("{}_{}", node.op_type.to_lowercase(), node.index);
        let candidates = [
            preferred.unwrap_or(""),
            node.name.as_str(),
            node.outputs.first().map_or("", String::as_str),
        ];
        let base = candidates
            .iter()
            .map(|n| sanitize(n))
            .find(|n| !n.is_empty() && !self.taken.contains(n))
            .unwrap_or_else(|| sanitize(&fallback));
        self.unique(base)
    }

    /// `base`, or `base_2`, `base_3`, ... when it is taken.
    fn unique(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut k = 2;
        while self.taken.contains(&name) {
            let suffix = format!("_{k}");
            let keep = base
                .char_indices()
                .nth(MAX_NAME_CHARS - suffix.len())
                .map_or(base.len(), |(i, _)| i);
            name = format!("{}{suffix}", &base[..keep]);
            k += 1;
        }
        self.taken.insert(name.clone());
        name
    }
}

/// `name` as convnet takes it: whitespace as `_`, at most [`MAX_NAME_CHARS`] characters, and
/// not the model input's name.
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .take(MAX_NAME_CHARS)
        .collect();
    if out == INPUT {
        out.push('_');
    }
    out
}

/// The `state_dict` prefix of a weight's initializer name (`layer1.0.conv1.weight` ->
/// `layer1.0.conv1`), when it ends in `.weight`.
pub(crate) fn weight_prefix(initializer: &str) -> Option<&str> {
    initializer
        .strip_suffix(".weight")
        .filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_changed_only_where_convnet_needs_it() {
        assert_eq!(sanitize("/layer1/Conv"), "/layer1/Conv");
        assert_eq!(sanitize("a b"), "a_b");
        assert_eq!(sanitize("input"), "input_");
        assert_eq!(sanitize(&"x".repeat(300)).len(), MAX_NAME_CHARS);
        let mut namer = Namer::default();
        assert_eq!(namer.unique("conv".into()), "conv");
        assert_eq!(namer.unique("conv".into()), "conv_2");
        let long = "y".repeat(MAX_NAME_CHARS);
        assert_eq!(namer.unique(long.clone()), long);
        assert_eq!(namer.unique(long).chars().count(), MAX_NAME_CHARS);
        assert_eq!(weight_prefix("fc.weight"), Some("fc"));
        assert_eq!(weight_prefix("onnx::Conv_12"), None);
    }
}
