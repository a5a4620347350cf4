//! The host loops' arithmetic: the [`Real`] float trait (f32/f64), the exact and the fast `exp`
//! (glibc `expf` replica, f64 polynomial) and the gate-rate helpers.

/// A float the host loops run in: f32 or f64, with the standard-library and the fast
/// transcendental functions.
pub(super) trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Default
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + burn::tensor::Element
    + 'static
{
    fn c(v: f64) -> Self;
    fn f(self) -> f64;
    fn exp_std(self) -> Self;
    fn exp_fast(self) -> Self;
    fn finite(self) -> bool;
}

impl Real for f32 {
    #[inline(always)]
    fn c(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn f(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp_std(self) -> Self {
        self.exp()
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        expf_glibc(self)
    }
    #[inline(always)]
    fn finite(self) -> bool {
        self.is_finite()
    }
}

impl Real for f64 {
    #[inline(always)]
    fn c(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn f(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp_std(self) -> Self {
        self.exp()
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        exp_f64(self)
    }
    #[inline(always)]
    fn finite(self) -> bool {
        self.is_finite()
    }
}

/// Branch-free `e^x` in f64 ([`crate::kernel::fastexp::exp_vec`]).
pub(super) use crate::kernel::fastexp::exp_vec as exp_f64;

/// glibc's `expf` (since 2.28; the ARM optimized-routines algorithm, FMA build), branch-free:
/// `x·32/ln2 = k + r`, `2^{k/32}` from a 32-entry table, `2^{r/32}` by a cubic, all in f64,
/// rounded once to f32. Checked against the standard library over all 2³² f32 inputs on this
/// machine kind (glibc 2.36, FMA CPU): identical, so the fast f32 path reproduces the tape bit
/// for bit. (On a CPU without FMA glibc's non-FMA build differs on 2 of the 4.3·10⁹ inputs.)
#[inline(always)]
fn expf_glibc(x: f32) -> f32 {
    const N: u64 = 32;
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 0x1.8p52
    const INVLN2N: f64 = std::f64::consts::LOG2_E * 32.0; // 0x1.71547652b82fep+0 · N
    const C0: f64 = f64::from_bits(0x3FAC_6AF8_4B91_2394) / (32.0 * 32.0 * 32.0); // 0x1.c6af84b912394p-5 / N³
    const C1: f64 = f64::from_bits(0x3FCE_BFCE_50FA_C4F3) / (32.0 * 32.0); // 0x1.ebfce50fac4f3p-3 / N²
    const C2: f64 = f64::from_bits(0x3FE6_2E42_FF0C_52D6) / 32.0; // 0x1.62e42ff0c52d6p-1 / N
    let over = x > f32::from_bits(0x42b1_7217); // 0x1.62e42ep6: overflow to +inf
    let under = x < -f32::from_bits(0x42cf_f1b4); // -0x1.9fe368p6: underflow to 0
    let nan = x.is_nan();
    let xd = if over || under || nan { 0.0 } else { x as f64 };
    let kd = INVLN2N.mul_add(xd, SHIFT);
    let ki = kd.to_bits();
    let kd = kd - SHIFT;
    let r = INVLN2N.mul_add(xd, -kd);
    let t = EXP2F_TAB[(ki % N) as usize].wrapping_add(ki << 47);
    let s = f64::from_bits(t);
    let z = C0.mul_add(r, C1);
    let r2 = r * r;
    let y = C2.mul_add(r, 1.0);
    let y = (z.mul_add(r2, y) * s) as f32;
    if nan {
        x
    } else if over {
        f32::INFINITY
    } else if under {
        0.0
    } else {
        y
    }
}

/// glibc's `__exp2f_data.tab`: `bits(2^{i/32}) − (i << 47)`.
const EXP2F_TAB: [u64; 32] = [
    0x3ff0000000000000,
    0x3fefd9b0d3158574,
    0x3fefb5586cf9890f,
    0x3fef9301d0125b51,
    0x3fef72b83c7d517b,
    0x3fef54873168b9aa,
    0x3fef387a6e756238,
    0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715,
    0x3feef1a7373aa9cb,
    0x3feedea64c123422,
    0x3feece086061892d,
    0x3feebfdad5362a27,
    0x3feeb42b569d4f82,
    0x3feeab07dd485429,
    0x3feea47eb03a5585,
    0x3feea09e667f3bcd,
    0x3fee9f75e8ec5f74,
    0x3feea11473eb0187,
    0x3feea589994cce13,
    0x3feeace5422aa0db,
    0x3feeb737b0cdc5e5,
    0x3feec49182a3f090,
    0x3feed503b23e255d,
    0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47,
    0x3fef199bdd85529c,
    0x3fef3720dcef9069,
    0x3fef5818dcfba487,
    0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da,
    0x3fefd0765b6e4540,
];

#[inline(always)]
fn ex<R: Real, const FAST: bool>(x: R) -> R {
    if FAST { x.exp_fast() } else { x.exp_std() }
}

/// `x³` as the tape computes it: `(x·x)·x`.
#[inline(always)]
pub(super) fn pw3<R: Real>(x: R) -> R {
    x * x * x
}

/// `x⁴` as the tape computes it: `(x·x)·(x·x)`.
#[inline(always)]
pub(super) fn pw4<R: Real>(x: R) -> R {
    let x2 = x * x;
    x2 * x2
}

#[inline(always)]
pub(super) fn sel<R: Real>(c: bool, a: R, b: R) -> R {
    if c { a } else { b }
}

/// Flex's sigmoid: `1/(1 + e^{−x})` for `x ≥ 0`, `e^x/(1 + e^x)` otherwise.
#[inline(always)]
pub(super) fn sigm<R: Real, const FAST: bool>(x: R) -> R {
    let one = R::c(1.0);
    let pos = x >= R::c(0.0);
    let e = ex::<R, FAST>(sel(pos, -x, x));
    sel(pos, one / (one + e), e / (one + e))
}

/// The tape's `vtrap(x, y)` (series where `|x/y| < 1e-3`).
#[inline(always)]
fn vtrap<R: Real, const FAST: bool>(x: R, y: f64) -> R {
    let one = R::c(1.0);
    let z = x * R::c(1.0 / y);
    let az = sel(z < R::c(0.0), -z, z);
    let small = az < R::c(1e-3);
    let zs = sel(small, one, z);
    let direct = zs / (ex::<R, FAST>(zs) - one);
    let series = (z * R::c(1.0 / 12.0) - R::c(0.5)) * z + one;
    sel(small, series, direct) * R::c(y)
}

/// Rates `(α, β)` of m, h, p, n and `α_r` at `v2` (tape op order).
#[inline(always)]
pub(super) fn rates<R: Real, const FAST: bool>(v2: R) -> ([(R, R); 4], R) {
    let nv = -v2;
    let one = R::c(1.0);
    (
        [
            (
                vtrap::<R, FAST>(nv + R::c(15.0), 4.0) * R::c(0.64),
                vtrap::<R, FAST>(v2 - R::c(40.0), 5.0) * R::c(0.56),
            ),
            (
                ex::<R, FAST>((nv + R::c(17.0)) * R::c(1.0 / 18.0)) * R::c(0.928),
                one / (ex::<R, FAST>((nv + R::c(40.0)) * R::c(1.0 / 5.0)) + one) * R::c(9.0),
            ),
            (
                vtrap::<R, FAST>(nv + R::c(5.0), 4.0) * R::c(0.64),
                vtrap::<R, FAST>(v2 - R::c(30.0), 5.0) * R::c(0.56),
            ),
            (
                vtrap::<R, FAST>(nv + R::c(15.0), 7.0) * R::c(0.08),
                ex::<R, FAST>((nv + R::c(10.0)) * R::c(1.0 / 40.0)) * R::c(2.0),
            ),
        ],
        one / (ex::<R, FAST>((nv + R::c(55.0)) * R::c(1.0 / 4.0)) + one) * R::c(3.5),
    )
}

/// Exponential Euler in the tape's op order.
#[inline(always)]
pub(super) fn exp_euler<R: Real, const FAST: bool>(x: R, a: R, b: R, neg_dt: R) -> R {
    let k = a + b;
    let f = -ex::<R, FAST>(k * neg_dt) + R::c(1.0);
    x + f * (a / k - x)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expf_replica_matches_the_standard_library() {
        // every 61st f32 in [−110, 100] plus the special values (the full 2³² sweep, run once
        // by hand, also gave no mismatch)
        let mut n = 0;
        let mut x = -110.0f32;
        while x < 100.0 {
            assert_eq!(expf_glibc(x).to_bits(), x.exp().to_bits(), "exp({x})");
            n += 1;
            let b = x.to_bits();
            x = if x < 0.0 {
                if b - 0x8000_0000 <= 61 {
                    0.0
                } else {
                    f32::from_bits(b - 61)
                }
            } else {
                f32::from_bits(b + 61)
            };
        }
        assert!(n > 10_000_000);
        for x in [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            88.8,
            -104.0,
            1e-30,
            -1e-30,
        ] {
            assert_eq!(expf_glibc(x).to_bits(), x.exp().to_bits(), "exp({x})");
        }
        assert!(expf_glibc(f32::NAN).is_nan());
    }

    #[test]
    fn exp_f64_is_within_a_few_ulp() {
        let mut x = -700.0f64;
        while x < 700.0 {
            let (a, b) = (exp_f64(x), x.exp());
            assert!(
                (a - b).abs() <= 4.0 * f64::EPSILON * b,
                "exp({x}): {a} vs {b}"
            );
            x += 0.013_7;
        }
    }
}
