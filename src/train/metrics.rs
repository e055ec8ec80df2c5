//! Evaluation metrics.

use ndarray::{ArrayBase, Data, Dimension, Ix2};

use crate::{Error, Result, Scalar};

/// The index of the largest value of each row (`tf.argmax(x, 1)`); ties go to the first, and
/// so does the first NaN ([`tensor::argmax`](crate::tensor::argmax), of which this is the
/// matrix case). An empty row gives 0.
pub fn argmax_rows<T: Scalar, S: Data<Elem = T>>(x: &ArrayBase<S, Ix2>) -> Vec<usize> {
    if x.ncols() == 0 {
        return vec![0; x.nrows()];
    }
    crate::tensor::argmax(x)
        .map(|a| a.into_iter().collect())
        .unwrap_or_else(|_| vec![0; x.nrows()])
}

/// The fraction of rows of `logits` `[batch, classes]` whose largest entry is at the label.
///
/// `logits` may be an array of any dimension type (a tape's `ArrayD` value as it is) but must
/// be of rank 2.
///
/// ```
/// use ndarray::array;
/// let logits = array![[0.1, 2.0], [3.0, -1.0], [0.0, 1.0]];
/// let acc = recurrent::metrics::accuracy(&logits, &[1, 0, 0]).unwrap();
/// assert!((acc - 2.0 / 3.0).abs() < 1e-12);
/// assert!(recurrent::metrics::accuracy(&logits.into_dyn(), &[1, 0, 0]).is_ok());
/// ```
pub fn accuracy<T: Scalar, S: Data<Elem = T>, D: Dimension>(
    logits: &ArrayBase<S, D>,
    labels: &[usize],
) -> Result<f64> {
    let logits = logits
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| Error::shape("accuracy", "logits [batch, classes]", logits.shape()))?;
    if logits.nrows() != labels.len() {
        return Err(Error::Shape {
            op: "accuracy",
            expected: format!("logits with {} rows", labels.len()),
            got: format!("{:?}", logits.shape()),
        });
    }
    if labels.is_empty() {
        return Err(Error::invalid("accuracy of an empty batch"));
    }
    let correct = argmax_rows(&logits)
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok(correct as f64 / labels.len() as f64)
}
