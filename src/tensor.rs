//! Tensor helpers with TensorFlow semantics (to be written).
