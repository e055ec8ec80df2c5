//! Vectorised `sigmoid` and `tanh` over slices, and the instruction-set dispatch of the kernels.
//!
//! The standard library's `f32::tanh` and `f32::exp` are scalar calls into libm; in an LSTM they
//! cost as much as the matrix products. These versions are branch-free, so the compiler turns
//! each loop into SIMD code, and they stay within a few units in the last place of the exact
//! result:
//!
//! - `exp` reduces `x = n ln 2 + r` with `|r| <= ln 2 / 2` and evaluates Cephes' degree-6
//!   polynomial for `exp(r)` (Moshier, *Methods and Programs for Mathematical Functions*, 1989);
//! - `sigmoid(x) = 1 / (1 + e)` for `x >= 0` and `e / (1 + e)` otherwise, with `e = exp(-|x|)`,
//!   so neither side loses precision to cancellation or overflow;
//! - `tanh(x)` is Cephes' odd polynomial for `|x| < 0.625` and `(1 - e) / (1 + e)` with
//!   `e = exp(-2|x|)` beyond, with the sign restored.
//!
//! NaN propagates; results below `1.2e-38` (the smallest normal `f32`) flush to zero. `f64` uses
//! the standard library (it serves gradient checks, not speed).
//!
//! # Instruction sets
//! Each elementwise kernel (these activations, and the fused cells' gate arithmetic forward and
//! backward) is compiled three times: for AVX-512 (F, BW, DQ, VL), for AVX2 with FMA, and for
//! the baseline of the target (SSE2 on x86-64, NEON on aarch64). [`isa`] picks one at the first
//! call, from what the CPU reports, and every kernel follows that choice. The three are the same
//! source with the same operations in the same order (Rust never fuses a multiply and an add on
//! its own), so they give the same bits; the tests compare them. The matrix products dispatch
//! the same way inside the `gemm` crate (its AVX-512 kernels are enabled).
//!
//! The environment variable `RECURRENT_ISA` (`avx512`, `avx2` or `portable`), read once, can
//! lower the choice, to measure one path against another; it never raises it above what the CPU
//! has.

use std::sync::atomic::{AtomicU8, Ordering};

/// The instruction sets the elementwise kernels have code paths for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// The target's baseline (SSE2 on x86-64, NEON on aarch64), for any CPU.
    Portable,
    /// AVX2 and FMA (x86-64 since Haswell and Zen 1).
    Avx2,
    /// AVX-512 F, BW, DQ and VL (x86-64 since Skylake-SP and Zen 4).
    Avx512,
}

impl Isa {
    /// The lower-case name (`"avx512"`, `"avx2"`, `"portable"`), as `RECURRENT_ISA` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the path.
    pub fn is_supported(self) -> bool {
        self <= detected()
    }

    /// Every path this CPU can run, lowest first.
    pub fn supported() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| i.is_supported())
            .collect()
    }
}

/// The best path the CPU supports.
fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
        {
            return Isa::Avx512;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// 0: not chosen yet; else `1 + Isa as u8`.
static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// The instruction set the kernels use: the best the CPU supports, lowered by
/// `RECURRENT_ISA` if that names a lower one. Chosen at the first call, then fixed.
pub fn isa() -> Isa {
    match CHOSEN.load(Ordering::Relaxed) {
        1 => Isa::Portable,
        2 => Isa::Avx2,
        3 => Isa::Avx512,
        _ => {
            let best = detected();
            let wanted = match std::env::var("RECURRENT_ISA").as_deref() {
                Ok("portable") => Isa::Portable,
                Ok("avx2") => Isa::Avx2,
                _ => Isa::Avx512,
            };
            let chosen = best.min(wanted);
            CHOSEN.store(chosen as u8 + 1, Ordering::Relaxed);
            chosen
        }
    }
}

/// Calls `$body(args)` compiled for the instruction set `isa`: one copy of the body per path, each
/// under its `#[target_feature]`, and the portable one. The body must be `#[inline(always)]`: only
/// inlined into those functions is it compiled for their features. `[$generics]` are the body's
/// generic parameters as declared (`T: Scalar, const S: usize`), all inferred from the arguments.
/// Panics, naming `$what`, if the CPU lacks that path.
///
/// [`isa_dispatch!`] builds on this for bodies generic over the element type; the optimizers'
/// passes (`optim/rule.rs`), also generic over their rule, call it directly. (A closure inlined
/// into one target-feature function was tried for those instead and not vectorised: Adam's step
/// took twice as long.)
macro_rules! on_isa {
    (
        $what:expr, $isa:expr,
        $body:ident[$($generics:tt)*]($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty
    ) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx512<$($generics)*>($($arg: $ty),*) -> $ret {
            $body($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx2<$($generics)*>($($arg: $ty),*) -> $ret {
            $body($($arg),*)
        }

        let isa: $crate::math::Isa = $isa;
        assert!(isa.is_supported(), "{}: this CPU has no {} path", $what, isa.name());
        match isa {
            // SAFETY: the CPU supports the features the function is compiled for (asserted).
            #[cfg(target_arch = "x86_64")]
            $crate::math::Isa::Avx512 => unsafe { avx512($($arg),*) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            $crate::math::Isa::Avx2 => unsafe { avx2($($arg),*) },
            _ => $body($($arg),*),
        }
    }};
}
pub(crate) use on_isa;

/// Defines `$name(args)`, which runs `$body` compiled for [`isa`]'s choice, and
/// `$name_on(isa, args)`, which runs it compiled for the given path (for tests that compare
/// paths; it panics if the CPU lacks that path). The body is generic over `T: Scalar`.
macro_rules! isa_dispatch {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident / $name_on:ident <T>($($arg:ident: $ty:ty),* $(,)?) $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name<T: $crate::Scalar>($($arg: $ty),*) {
            $name_on::<T>($crate::math::isa(), $($arg),*)
        }

        #[allow(dead_code, clippy::too_many_arguments)]
        $vis fn $name_on<T: $crate::Scalar>(isa: $crate::math::Isa, $($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body<T: $crate::Scalar>($($arg: $ty),*) $body

            $crate::kernels::math::on_isa!(
                stringify!($name), isa, body[T: $crate::Scalar]($($arg: $ty),*) -> ()
            )
        }
    };
}
pub(crate) use isa_dispatch;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split so that `n * LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding then subtracting 1.5 * 2^23 rounds an `f32` of magnitude below 2^22 to an integer.
const ROUND: f32 = 12_582_912.0;

/// What the activations compute on: one `f32` (in the loops over slices, which the compiler
/// vectorises), one AVX-512 vector (the tiled LSTM step's `V16`), or several values in lockstep
/// ([`Lockstep`]). Every method is the same IEEE operation on each lane (or an exact bit
/// operation or select), so every kind gives the same bits; the tests compare them.
pub(crate) trait Lanes:
    Copy
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    /// Every lane `v`.
    fn splat(v: f32) -> Self;
    /// `|x|` per lane.
    fn abs(self) -> Self;
    /// `-|x|` per lane.
    fn neg_abs(self) -> Self;
    /// [`f32::copysign`] per lane.
    fn copysign(self, sign: Self) -> Self;
    /// `self * 2^n` per lane for the integer `n` in `[-126, 0]` that `n` holds, and that
    /// `shifted` holds in its low mantissa bits as `shifted - ROUND` ([`exp`]'s range
    /// reduction): exact scaling by a power of two, rounded once.
    fn times_pow2(self, n: Self, shifted: Self) -> Self;
    /// Per lane: `then` where `self < bound`, else `otherwise` (so `otherwise` where `self` is
    /// NaN).
    fn where_below(self, bound: f32, then: Self, otherwise: Self) -> Self;
    /// [`flush_subnormal`] per lane: zero where `|x|` is below the smallest normal `f32`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // used by the AVX-512 tiles
    fn flush_subnormal(self) -> Self;
}

impl Lanes for f32 {
    #[inline(always)]
    fn splat(v: f32) -> Self {
        v
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32::abs(self)
    }
    #[inline(always)]
    fn neg_abs(self) -> Self {
        -f32::abs(self)
    }
    #[inline(always)]
    fn copysign(self, sign: Self) -> Self {
        f32::copysign(self, sign)
    }
    #[inline(always)]
    fn times_pow2(self, _n: Self, shifted: Self) -> Self {
        let n = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
        self * f32::from_bits(((n + 127) << 23) as u32)
    }
    #[inline(always)]
    fn where_below(self, bound: f32, then: Self, otherwise: Self) -> Self {
        if self < bound {
            then
        } else {
            otherwise
        }
    }
    #[inline(always)]
    fn flush_subnormal(self) -> Self {
        flush_subnormal(self)
    }
}

/// `K` values of lanes computed operation by operation: each step of an activation runs on all
/// `K` before the next step, so the compiler emits `K` independent instructions per step. The
/// activations are long chains of dependent operations: one vector at a time, they wait on
/// latency; in lockstep, several chains share the pipelines.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // used by the AVX-512 tiles
pub(crate) struct Lockstep<L, const K: usize>(pub [L; K]);

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl<L: Lanes, const K: usize> Lockstep<L, K> {
    // Plain loops over arrays: `std::array::from_fn` is not always inlined, and then nothing is
    // vectorised.
    #[inline(always)]
    fn map(mut self, f: impl Fn(L) -> L) -> Self {
        for v in self.0.iter_mut() {
            *v = f(*v);
        }
        self
    }
    #[inline(always)]
    fn zip(mut self, other: Self, f: impl Fn(L, L) -> L) -> Self {
        for (v, &w) in self.0.iter_mut().zip(&other.0) {
            *v = f(*v, w);
        }
        self
    }
}

macro_rules! lockstep_op {
    ($trait:ident, $method:ident, $op:tt) => {
        impl<L: Lanes, const K: usize> std::ops::$trait for Lockstep<L, K> {
            type Output = Self;
            #[inline(always)]
            fn $method(self, other: Self) -> Self {
                self.zip(other, |a, b| a $op b)
            }
        }
    };
}
lockstep_op!(Add, add, +);
lockstep_op!(Sub, sub, -);
lockstep_op!(Mul, mul, *);
lockstep_op!(Div, div, /);

impl<L: Lanes, const K: usize> Lanes for Lockstep<L, K> {
    #[inline(always)]
    fn splat(v: f32) -> Self {
        Lockstep([L::splat(v); K])
    }
    #[inline(always)]
    fn abs(self) -> Self {
        self.map(L::abs)
    }
    #[inline(always)]
    fn neg_abs(self) -> Self {
        self.map(L::neg_abs)
    }
    #[inline(always)]
    fn copysign(self, sign: Self) -> Self {
        self.zip(sign, L::copysign)
    }
    #[inline(always)]
    fn times_pow2(mut self, n: Self, shifted: Self) -> Self {
        for (l, v) in self.0.iter_mut().enumerate() {
            *v = v.times_pow2(n.0[l], shifted.0[l]);
        }
        self
    }
    #[inline(always)]
    fn where_below(mut self, bound: f32, then: Self, otherwise: Self) -> Self {
        for (l, v) in self.0.iter_mut().enumerate() {
            *v = v.where_below(bound, then.0[l], otherwise.0[l]);
        }
        self
    }
    #[inline(always)]
    fn flush_subnormal(self) -> Self {
        self.map(L::flush_subnormal)
    }
}

/// `exp(x)` for `x <= 0`; 0 below `-87.33`, where the result would be subnormal. (The callers
/// pass `-|y|` or `-2|y|`.)
#[inline(always)]
fn exp<L: Lanes>(x: L) -> L {
    let c = L::splat;
    let unclamped = x;
    // Raised to -87.34, so that 2^n below stays normal (n >= -126).
    let x = x.where_below(-87.336_55, c(-87.336_55), x);
    let shifted = x * c(LOG2E) + c(ROUND);
    let n = shifted - c(ROUND);
    let r = x - n * c(LN2_HI) - n * c(LN2_LO);
    let p = ((((c(1.987_569_1e-4) * r + c(1.398_199_9e-3)) * r + c(8.333_452e-3)) * r
        + c(4.166_579_6e-2))
        * r
        + c(1.666_666_5e-1))
        * r
        + c(0.5);
    let e = p * r * r + r + c(1.0);
    let result = e.times_pow2(n, shifted);
    unclamped.where_below(-87.336_55, c(0.0), result)
}

/// The logistic sigmoid, `1 / (1 + exp(-x))`.
#[inline(always)]
pub(crate) fn sigmoid<L: Lanes>(x: L) -> L {
    let e = exp(x.neg_abs());
    let s = L::splat(1.0) / (L::splat(1.0) + e);
    // `s` for x >= 0 and for NaN (which `s` carries), `e * s` below 0.
    x.where_below(0.0, e * s, s)
}

#[inline(always)]
pub(crate) fn sigmoid_f32(x: f32) -> f32 {
    sigmoid(x)
}

/// `tanh(x)`.
#[inline(always)]
pub(crate) fn tanh<L: Lanes>(x: L) -> L {
    let c = L::splat;
    let a = x.abs();
    let z = x * x;
    let small = ((((c(-5.704_988_7e-3) * z + c(2.063_908_8e-2)) * z - c(5.373_971_6e-2)) * z
        + c(1.333_144_2e-1))
        * z
        - c(3.333_328e-1))
        * z
        * x
        + x;
    let e = exp(c(-2.0) * a);
    let large = (c(1.0) - e) / (c(1.0) + e);
    // tanh is odd; copysign keeps -0.0 negative.
    a.where_below(0.625, small, large).copysign(x)
}

#[inline(always)]
pub(crate) fn tanh_f32(x: f32) -> f32 {
    tanh(x)
}

/// `x`, or zero when `x` is subnormal (below the smallest normal value in magnitude).
///
/// The fused kernels pass every state they carry from step to step and every gradient they
/// feed to a matrix product through this: an LSTM whose forget gate stays near 1 while its
/// input gate is near 0 keeps `c` and `h` in the subnormal range step after step, and on CPUs
/// that handle subnormal operands in microcode every product then runs many times slower. A
/// subnormal `f32` is below `1.2e-38`: flushing it changes no result that a normal value would
/// not swamp. This does what the flush-to-zero and denormals-are-zero modes of the floating-point
/// unit would, without changing the mode of the caller's threads.
#[inline(always)]
pub(crate) fn flush_subnormal<T: crate::Scalar>(x: T) -> T {
    if x.abs() < T::min_positive_value() {
        T::zero()
    } else {
        x
    }
}

isa_dispatch! {
    /// Applies the logistic sigmoid to every element in place (through [`crate::Scalar`]'s
    /// element function: the polynomial above for `f32`, the standard library's `exp` for `f64`).
    pub(crate) fn sigmoid_in_place / sigmoid_in_place_on<T>(xs: &mut [T]) {
        for x in xs.iter_mut() {
            *x = x.sigmoid_elem();
        }
    }
}

isa_dispatch! {
    /// Applies `tanh` to every element in place.
    pub(crate) fn tanh_in_place / tanh_in_place_on<T>(xs: &mut [T]) {
        for x in xs.iter_mut() {
            *x = x.tanh_elem();
        }
    }
}

/// Applies the logistic sigmoid to every element in place.
pub fn sigmoid_in_place_f32(xs: &mut [f32]) {
    sigmoid_in_place(xs)
}

/// Applies `tanh` to every element in place.
pub fn tanh_in_place_f32(xs: &mut [f32]) {
    tanh_in_place(xs)
}

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

    /// Lanes in lockstep give the scalar bits.
    #[test]
    fn lockstep_gives_the_scalar_bits() {
        let mut xs = sweep();
        xs.extend([f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
        while !xs.len().is_multiple_of(5) {
            xs.push(0.5);
        }
        for chunk in xs.chunks_exact(5) {
            let x = Lockstep::<f32, 5>(chunk.try_into().unwrap());
            let (s, t) = (sigmoid(x), tanh(x));
            for (l, &v) in chunk.iter().enumerate() {
                assert_eq!(s.0[l].to_bits(), sigmoid_f32(v).to_bits(), "sigmoid({v})");
                assert_eq!(t.0[l].to_bits(), tanh_f32(v).to_bits(), "tanh({v})");
            }
        }
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
    fn every_instruction_set_gives_the_same_bits() {
        let xs = sweep();
        for isa in Isa::supported() {
            let (mut s, mut t) = (xs.clone(), xs.clone());
            sigmoid_in_place_on(isa, &mut s);
            tanh_in_place_on(isa, &mut t);
            let (mut s0, mut t0) = (xs.clone(), xs.clone());
            sigmoid_in_place_on(Isa::Portable, &mut s0);
            tanh_in_place_on(Isa::Portable, &mut t0);
            for k in 0..xs.len() {
                assert_eq!(
                    s[k].to_bits(),
                    s0[k].to_bits(),
                    "sigmoid {} at {}",
                    isa.name(),
                    xs[k]
                );
                assert_eq!(
                    t[k].to_bits(),
                    t0[k].to_bits(),
                    "tanh {} at {}",
                    isa.name(),
                    xs[k]
                );
            }
        }
    }

    #[test]
    fn the_chosen_path_is_supported_and_fixed() {
        let chosen = isa();
        assert!(chosen.is_supported());
        assert_eq!(isa(), chosen);
        assert!(Isa::Portable.is_supported());
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
