//! Vectorised `sigmoid` and `tanh` over slices.
//!
//! The standard library's `f32::tanh` and `f32::exp` are scalar calls into libm; in an LSTM they
//! cost as much as the matrix products. These versions are branch-free, so the compiler turns
//! each loop into SIMD code (AVX2 + FMA when the CPU has them, chosen at run time), and they stay
//! within a few units in the last place of the exact result:
//!
//! - `exp` reduces `x = n ln 2 + r` with `|r| <= ln 2 / 2` and evaluates Cephes' degree-6
//!   polynomial for `exp(r)` (Moshier, *Methods and Programs for Mathematical Functions*, 1989);
//! - `sigmoid(x) = 1 / (1 + e)` for `x >= 0` and `e / (1 + e)` otherwise, with `e = exp(-|x|)`,
//!   so neither side loses precision to cancellation or overflow;
//! - `tanh(x)` is Cephes' odd polynomial for `|x| < 0.625` and `(1 - e) / (1 + e)` with
//!   `e = exp(-2|x|)` beyond, with the sign restored.
//!
//! NaN propagates; results below `1.2e-38` (the smallest normal `f32`) flush to zero. `f64` uses the standard library (it serves gradient checks, not speed).

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split so that `n * LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding then subtracting 1.5 * 2^23 rounds an `f32` of magnitude below 2^22 to an integer.
const ROUND: f32 = 12_582_912.0;

/// `exp(x)` for `x <= 88`; 0 below `-87.33`, where the result would be subnormal. Callers only
/// pass non-positive arguments.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    let underflow = x < -87.336_55;
    let x = x.clamp(-87.336_55, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    // The integer n sits in the low mantissa bits of `shifted`.
    let n_int = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    let result = e * f32::from_bits(((n_int + 127) << 23) as u32);
    if underflow {
        0.0
    } else {
        result
    }
}

#[inline(always)]
fn sigmoid_f32(x: f32) -> f32 {
    let e = exp_f32(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 || x.is_nan() {
        s
    } else {
        e * s
    }
}

#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_908_8e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
            - 3.333_328e-1)
            * z
            * x
            + x;
    let e = exp_f32(-2.0 * a);
    let large = ((1.0 - e) / (1.0 + e)).copysign(x);
    if a < 0.625 {
        // tanh is odd; copysign keeps -0.0 negative.
        small.copysign(x)
    } else {
        large
    }
}

/// Whether this CPU has AVX2 and FMA, for which the vectorised kernels are compiled (the
/// answer is cached by the standard library after the first call).
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident, $avx:ident, $f:ident) => {
        $(#[$doc])*
        pub fn $name(xs: &mut [f32]) {
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx2_fma() {
                    // SAFETY: the CPU supports the features the function is compiled for.
                    unsafe { $avx(xs) };
                    return;
                }
            }
            for x in xs.iter_mut() {
                *x = $f(*x);
            }
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx(xs: &mut [f32]) {
            for x in xs.iter_mut() {
                *x = $f(*x);
            }
        }
    };
}

dispatch!(
    /// Applies the logistic sigmoid to every element in place.
    sigmoid_in_place_f32,
    sigmoid_avx2,
    sigmoid_f32
);
dispatch!(
    /// Applies `tanh` to every element in place.
    tanh_in_place_f32,
    tanh_avx2,
    tanh_f32
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The distance in units in the last place between an f32 and the exact (f64) value.
    fn ulps(got: f32, exact: f64) -> f64 {
        let rounded = exact as f32;
        let ulp = (f32::from_bits(rounded.abs().to_bits() + 1) - rounded.abs()) as f64;
        (got as f64 - exact).abs() / ulp.max(f32::MIN_POSITIVE as f64)
    }

    fn sweep() -> Vec<f32> {
        let mut xs: Vec<f32> = (-20_000..=20_000).map(|i| i as f32 * 1e-3).collect();
        xs.extend((-300..=300).map(|i| i as f32 * 0.37));
        xs.extend([
            0.0, -0.0, 1e-30, -1e-30, 1e-7, 0.624_999, 0.625, 88.5, -88.5, 1e30, -1e30,
        ]);
        xs
    }

    #[test]
    fn sigmoid_is_within_a_few_ulps() {
        let xs = sweep();
        let mut ys = xs.clone();
        sigmoid_in_place_f32(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            let exact = 1.0 / (1.0 + (-(x as f64)).exp());
            // Below ~1e-38 the exact value is subnormal in f32; an absolute bound serves there.
            let ok = ulps(y, exact) <= 4.0 || (exact < 1e-37 && (y as f64) < 1e-37);
            assert!(
                ok,
                "sigmoid({x}) = {y}, exact {exact}, {} ulps",
                ulps(y, exact)
            );
        }
    }

    #[test]
    fn tanh_is_within_a_few_ulps() {
        let xs = sweep();
        let mut ys = xs.clone();
        tanh_in_place_f32(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            let exact = (x as f64).tanh();
            assert!(
                ulps(y, exact) <= 4.0,
                "tanh({x}) = {y}, exact {exact}, {} ulps",
                ulps(y, exact)
            );
        }
        let mut signed_zero = [-0.0f32];
        tanh_in_place_f32(&mut signed_zero);
        assert!(signed_zero[0] == 0.0 && signed_zero[0].is_sign_negative());
    }

    #[test]
    fn nan_propagates_and_infinities_saturate() {
        let mut v = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        sigmoid_in_place_f32(&mut v);
        assert!(v[0].is_nan() && v[1] == 1.0 && v[2] == 0.0, "{v:?}");
        let mut v = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        tanh_in_place_f32(&mut v);
        assert!(v[0].is_nan() && v[1] == 1.0 && v[2] == -1.0);
    }
}
