//! The bounds every size read from a model file is checked against before anything is
//! allocated from it.

/// Bounds on what reading one model may take. The defaults fit every CNN of the ONNX model
/// zoo (VGG-19, the largest, is 548 MB) with room to spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest `.onnx` file read. Protobuf itself stops at 2 GiB, which is why larger
    /// models keep their weights in external data files.
    pub max_file_bytes: u64,
    /// The most memory the decoded protobuf may take, estimated before decoding (a file of
    /// empty messages takes far more memory than bytes).
    pub max_decoded_bytes: u64,
    /// The most memory all tensors (initializers and tensor attributes, inline or external)
    /// may take together once read; it also bounds each tensor's element count.
    pub max_tensor_bytes: u64,
    /// The most dimensions a tensor or a declared shape may have.
    pub max_rank: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_file_bytes: 2 << 30,
            max_decoded_bytes: 4 << 30,
            max_tensor_bytes: 4 << 30,
            max_rank: 32,
        }
    }
}
