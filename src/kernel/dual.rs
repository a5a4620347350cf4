//! Forward-mode dual numbers for the streaming path's adjoints ([`super::host`]): a small
//! nonlinear step `y = f(x)` of a few scalars (the Hill mechanics, the spindle) is written once,
//! generic over [`Scalar`], and evaluated with [`Dual`]`<N>` seeded on its N inputs to get the
//! exact Jacobian `∂y/∂x` of the step (to rounding). The reverse sweep then applies its transpose.
//!
//! `Dual<N> = (v, d)` with `d ∈ R^N` the derivatives with respect to the seeded inputs; every
//! operation applies the chain rule: `(a·b)' = a'·b + a·b'`, `exp(a)' = exp(a)·a'`, …
//! Branches (`max`, `min`, `abs`, comparisons) follow the value, as the tape's ops do.

use std::ops::{Add, Div, Mul, Neg, Sub};

/// A real number the generic host steps compute with: `f64`, or a [`Dual`].
pub trait Scalar:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Add<f64, Output = Self>
    + Sub<f64, Output = Self>
    + Mul<f64, Output = Self>
    + Div<f64, Output = Self>
{
    /// A constant.
    fn cst(v: f64) -> Self;
    /// The value.
    fn val(self) -> f64;
    /// `e^x`.
    fn exp(self) -> Self;
    /// `ln(1 + x)`.
    fn ln_1p(self) -> Self;
    /// `ln x`.
    fn ln(self) -> Self;
    /// `x^p` (constant p).
    fn powf(self, p: f64) -> Self;
    /// `√x`.
    fn sqrt(self) -> Self;
    /// `|x|` (derivative sign(x), +1 at 0).
    fn abs(self) -> Self {
        if self.val() >= 0.0 { self } else { -self }
    }
    /// `max(x, c)` (derivative 1 where `x > c`).
    fn max_c(self, c: f64) -> Self {
        if self.val() > c { self } else { Self::cst(c) }
    }
    /// `min(x, c)` (derivative 1 where `x < c`).
    fn min_c(self, c: f64) -> Self {
        if self.val() < c { self } else { Self::cst(c) }
    }
}

impl Scalar for f64 {
    #[inline(always)]
    fn cst(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn val(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        f64::ln_1p(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f64::ln(self)
    }
    #[inline(always)]
    fn powf(self, p: f64) -> Self {
        f64::powf(self, p)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f64::abs(self)
    }
    #[inline(always)]
    fn max_c(self, c: f64) -> Self {
        self.max(c)
    }
    #[inline(always)]
    fn min_c(self, c: f64) -> Self {
        self.min(c)
    }
}

/// A value and its derivatives with respect to N seeded inputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dual<const N: usize> {
    /// Value.
    pub v: f64,
    /// Derivatives.
    pub d: [f64; N],
}

impl<const N: usize> Dual<N> {
    /// Input `k` of N with value `v` (derivative 1 in direction k).
    pub fn var(v: f64, k: usize) -> Self {
        let mut d = [0.0; N];
        d[k] = 1.0;
        Self { v, d }
    }
    /// `self` with the derivatives scaled by `s` and the value replaced by `v`.
    #[inline(always)]
    fn chain(self, v: f64, s: f64) -> Self {
        let mut d = self.d;
        for x in &mut d {
            *x *= s;
        }
        Self { v, d }
    }
}

impl<const N: usize> Add for Dual<N> {
    type Output = Self;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        let mut d = self.d;
        for (x, y) in d.iter_mut().zip(o.d) {
            *x += y;
        }
        Self { v: self.v + o.v, d }
    }
}
impl<const N: usize> Sub for Dual<N> {
    type Output = Self;
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        let mut d = self.d;
        for (x, y) in d.iter_mut().zip(o.d) {
            *x -= y;
        }
        Self { v: self.v - o.v, d }
    }
}
impl<const N: usize> Mul for Dual<N> {
    type Output = Self;
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // several arrays share the index
    fn mul(self, o: Self) -> Self {
        let mut d = [0.0; N];
        for k in 0..N {
            d[k] = self.d[k] * o.v + self.v * o.d[k];
        }
        Self { v: self.v * o.v, d }
    }
}
impl<const N: usize> Div for Dual<N> {
    type Output = Self;
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // several arrays share the index
    fn div(self, o: Self) -> Self {
        let q = self.v / o.v;
        let mut d = [0.0; N];
        for k in 0..N {
            d[k] = (self.d[k] - q * o.d[k]) / o.v;
        }
        Self { v: q, d }
    }
}
impl<const N: usize> Neg for Dual<N> {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        self.chain(-self.v, -1.0)
    }
}
impl<const N: usize> Add<f64> for Dual<N> {
    type Output = Self;
    #[inline(always)]
    fn add(self, c: f64) -> Self {
        Self {
            v: self.v + c,
            d: self.d,
        }
    }
}
impl<const N: usize> Sub<f64> for Dual<N> {
    type Output = Self;
    #[inline(always)]
    fn sub(self, c: f64) -> Self {
        Self {
            v: self.v - c,
            d: self.d,
        }
    }
}
impl<const N: usize> Mul<f64> for Dual<N> {
    type Output = Self;
    #[inline(always)]
    fn mul(self, c: f64) -> Self {
        self.chain(self.v * c, c)
    }
}
impl<const N: usize> Div<f64> for Dual<N> {
    type Output = Self;
    #[inline(always)]
    fn div(self, c: f64) -> Self {
        self.chain(self.v / c, 1.0 / c)
    }
}

impl<const N: usize> Scalar for Dual<N> {
    fn cst(v: f64) -> Self {
        Self { v, d: [0.0; N] }
    }
    fn val(self) -> f64 {
        self.v
    }
    fn exp(self) -> Self {
        let e = self.v.exp();
        self.chain(e, e)
    }
    fn ln_1p(self) -> Self {
        self.chain(self.v.ln_1p(), 1.0 / (1.0 + self.v))
    }
    fn ln(self) -> Self {
        self.chain(self.v.ln(), 1.0 / self.v)
    }
    fn powf(self, p: f64) -> Self {
        self.chain(self.v.powf(p), p * self.v.powf(p - 1.0))
    }
    fn sqrt(self) -> Self {
        let r = self.v.sqrt();
        self.chain(r, 0.5 / r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `f(x, y) = exp(x·y) / (1 + √x) + ln_1p(y²) − |x − y|^0.3`, derivatives against central
    /// differences.
    fn f<S: Scalar>(x: S, y: S) -> S {
        (x * y).exp() / (x.sqrt() + 1.0) + (y * y).ln_1p() - (x - y).abs().powf(0.3)
    }

    #[test]
    fn dual_derivatives_match_central_differences() {
        let (x, y) = (0.7, 1.3);
        let d = f(Dual::<2>::var(x, 0), Dual::<2>::var(y, 1));
        assert_eq!(d.v, f(x, y));
        let h = 1e-6;
        let fx = (f(x + h, y) - f(x - h, y)) / (2.0 * h);
        let fy = (f(x, y + h) - f(x, y - h)) / (2.0 * h);
        assert!(
            (d.d[0] - fx).abs() < 1e-8 * fx.abs().max(1.0),
            "{} {fx}",
            d.d[0]
        );
        assert!(
            (d.d[1] - fy).abs() < 1e-8 * fy.abs().max(1.0),
            "{} {fy}",
            d.d[1]
        );
    }
}
